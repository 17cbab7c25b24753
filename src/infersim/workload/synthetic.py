"""Synthetic workloads: seeded open-loop arrivals, a closed-loop description, and length sampling.

* `poisson(rate_per_s, n, input_len, output_len, seed)`: exponential inter-arrival gaps, mean 1/rate.
* `gamma_arrivals(rate_per_s, cv, n, input_len, output_len, seed)`: gamma inter-arrival gaps with mean
  1/rate and coefficient of variation `cv` (shape 1/cv^2); cv = 1 is Poisson, cv > 1 is bursty.
* `closed_loop(concurrency, n, input_len, output_len)`: a `ClosedLoop` of `concurrency` users with
  think time 0 over n requests (arrival times all 0.0 and ignored).
* `sampled_lengths(mean, n, seed, dist)`: token lengths to pass as `input_len` / `output_len`:
  "fixed" (the int `mean`), "exponential" (geometric on 1, 2, ..., mean `mean`) or "uniform"
  (integers uniform on [1, 2*mean - 1], mean `mean`).

Lengths: an int (every request has that length) or an array of n positive integers used as-is.
The first request arrives at t = 0.0; the arrival of request i is the sum of the first i gaps.
Same arguments and seed give the same `Requests` (numpy `default_rng(seed)`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from infersim.errors import InputError
from infersim.workload.traces import Requests


def _lengths(name: str, value, n: int) -> np.ndarray:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value < 1:
            raise InputError(f"{name} {value} must be a positive integer; give a token count >= 1")
        return np.full(n, int(value), dtype=np.int64)
    arr = np.asarray(value)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(f"{name} must be an int or an array of n={n} lengths (got shape {arr.shape}); "
                         "pass one length per request")
    if not np.issubdtype(arr.dtype, np.number) or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
        raise InputError(f"{name} must hold whole numbers; round the lengths to integers")
    if np.any(arr < 1):
        raise InputError(f"{name} has a length < 1 at index {int(np.argmax(arr < 1))}; every length must be >= 1")
    return arr.astype(np.int64)


def _check_n(n: int) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise InputError(f"n {n!r} must be a positive integer; give the number of requests")


def _check(rate_per_s: float, n: int) -> None:
    if not (isinstance(rate_per_s, (int, float)) and math.isfinite(rate_per_s) and rate_per_s > 0):
        raise InputError(f"rate_per_s {rate_per_s!r} must be a positive number; give requests per second > 0")
    _check_n(n)


def _build(gaps: np.ndarray, n: int, input_len, output_len, source: str, assumptions: tuple[str, ...]) -> Requests:
    arrival = np.concatenate(([0.0], np.cumsum(gaps[: n - 1]))).astype(np.float64)
    return Requests(arrival_s=arrival, input_tokens=_lengths("input_len", input_len, n),
                    output_tokens=_lengths("output_len", output_len, n), session_id=None,
                    prefix_hash_ids=None, source=source, assumptions=assumptions)


def _len_desc(v) -> str:
    return str(int(v)) if isinstance(v, (int, np.integer)) else "array"


def poisson(rate_per_s: float, n: int, input_len, output_len, seed: int) -> Requests:
    """n requests with Poisson arrivals at `rate_per_s` (exponential gaps)."""
    _check(rate_per_s, n)
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate_per_s, size=max(n - 1, 0))
    src = f"poisson(rate={rate_per_s:g}/s, n={n}, in={_len_desc(input_len)}, out={_len_desc(output_len)}, seed={seed})"
    return _build(gaps, n, input_len, output_len, src,
                  ("synthetic: Poisson arrivals, no sessions, no prefix sharing",))


def gamma_arrivals(rate_per_s: float, cv: float, n: int, input_len, output_len, seed: int) -> Requests:
    """n requests with gamma inter-arrival gaps: mean 1/rate, coefficient of variation `cv`."""
    _check(rate_per_s, n)
    if not (isinstance(cv, (int, float)) and math.isfinite(cv) and cv > 0):
        raise InputError(f"cv {cv!r} must be a positive number; use 1 for Poisson, > 1 for bursty arrivals")
    shape = 1.0 / (cv * cv)
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(shape, 1.0 / (rate_per_s * shape), size=max(n - 1, 0))
    src = (f"gamma(rate={rate_per_s:g}/s, cv={cv:g}, n={n}, in={_len_desc(input_len)}, "
           f"out={_len_desc(output_len)}, seed={seed})")
    return _build(gaps, n, input_len, output_len, src,
                  (f"synthetic: gamma inter-arrivals (shape {shape:g}), no sessions, no prefix sharing",))


_LENGTH_DISTS = ("fixed", "exponential", "uniform")


def sampled_lengths(mean: int, n: int, seed: int, dist: str = "fixed") -> int | np.ndarray:
    """Token lengths with mean `mean`, to pass as `input_len` / `output_len` of the generators.

    "fixed": returns the int `mean` itself (every request that length). "exponential": n int64 draws
    from a geometric distribution on 1, 2, ... with p = 1/mean (the discrete exponential; mean exactly
    `mean`, `mean` = 1 gives all 1). "uniform": n int64 draws uniform on [1, 2*mean - 1] (mean `mean`).
    Seeded with numpy `default_rng(seed)`; same arguments give the same lengths.
    """
    if isinstance(mean, bool) or not isinstance(mean, (int, np.integer)) or mean < 1:
        raise InputError(f"mean {mean!r} must be a positive integer; give a mean token count >= 1")
    _check_n(n)
    if dist not in _LENGTH_DISTS:
        raise InputError(f"dist {dist!r} is unknown; use one of {', '.join(_LENGTH_DISTS)}")
    mean = int(mean)
    if dist == "fixed":
        return mean
    rng = np.random.default_rng(seed)
    if dist == "exponential":
        return rng.geometric(1.0 / mean, size=int(n)).astype(np.int64)
    return rng.integers(1, 2 * mean, size=int(n), dtype=np.int64)  # high is exclusive: [1, 2*mean - 1]


@dataclass(frozen=True)
class ClosedLoop:
    """A closed-loop workload: `concurrency` users replay `requests` with think time 0.

    Each user sends its next request the moment its previous one completes (think time 0, as benchmark
    clients such as vLLM's benchmark_serving with --max-concurrency do), so at most `concurrency`
    requests are in flight. Requests are taken in the order of `requests` (the first `concurrency`
    start at t = 0, then each completion releases the next one); their `arrival_s` is ignored.
    """

    concurrency: int
    requests: Requests

    def __post_init__(self) -> None:
        c = self.concurrency
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
            raise InputError(f"concurrency {c!r} must be a positive integer; give the number of users >= 1")
        if not isinstance(self.requests, Requests):
            raise InputError(f"requests must be a Requests workload (got {type(self.requests).__name__}); "
                             "build one with read_trace or a generator")


def closed_loop(concurrency: int, n: int, input_len, output_len, seed: int = 0) -> ClosedLoop:
    """`concurrency` users, think time 0, over n requests (lengths an int or an array, as in `poisson`).

    Nothing is drawn at random here: `seed` is only recorded in the source, for symmetry with the
    other generators; use `sampled_lengths(..., seed)` for random lengths. Arrival times are all 0.0.
    """
    _check_n(n)
    src = (f"closed_loop(concurrency={concurrency}, n={n}, in={_len_desc(input_len)}, "
           f"out={_len_desc(output_len)}, seed={seed})")
    reqs = Requests(arrival_s=np.zeros(int(n), dtype=np.float64),
                    input_tokens=_lengths("input_len", input_len, int(n)),
                    output_tokens=_lengths("output_len", output_len, int(n)), session_id=None,
                    prefix_hash_ids=None, source=src,
                    assumptions=(f"synthetic: closed loop, {concurrency} user(s), think time 0; arrival_s all 0.0 "
                                 "(ignored, requests taken in order), no sessions, no prefix sharing",))
    return ClosedLoop(concurrency=concurrency, requests=reqs)


def with_premium_share(reqs: Requests, fraction: float, seed: int) -> Requests:
    """Mark a seeded `fraction` of the requests premium (priority 0, the rest 1): the SLO classes
    the `priority` queue order, the `lowest-priority` preemption victim and the `slo-class` router
    act on. No trace carries a class, so the split is an assumption and says so."""
    if not (math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
        raise InputError(f"--premium-fraction must be in [0, 1] (the share of requests in the premium class), "
                         f"got {fraction}")
    premium = np.random.default_rng(seed).random(len(reqs)) < fraction
    note = (f"SLO classes: {int(premium.sum()):,} of {len(reqs):,} requests ({fraction:.0%} drawn with seed {seed}) "
            "are premium (priority 0), the rest standard (priority 1)")
    return replace(reqs, priority=np.where(premium, 0, 1).astype(np.int64), assumptions=(*reqs.assumptions, note))
