"""The InferenceX benchmark client, simulated: a closed loop measured the way the client measures it.

The client (README of the InferenceX points) keeps `concurrency` requests in flight with no think
time and sends `num_prompts` prompts (10 x concurrency unless the point says otherwise). Its
warm-up requests (2 x concurrency) finish before the timed run starts, and the prompts are random
token ids, so they leave no state behind (no prefix-cache reuse): the timed run starts from an idle
server and the warm-up is not simulated. Prompt and output lengths are drawn uniformly from
[LENGTH_LOW x nominal, nominal] (whole tokens, both ends included); outputs ignore EOS, so every
request generates exactly its drawn length.

What the client reports, and what `measure` computes from simulated request records:
- output tok/s = all output tokens / the run's duration (first request sent to last completion):
  the whole-run window, ramp-up and drain included, as the client times it;
- TPOT per request = (completion - first token) / (output tokens - 1); tok/s/user = 1 / its median
  (or mean); TTFT median.

Shortcut: a closed loop at steady state repeats itself, so a long run need not be simulated
prompt by prompt. We simulate the first SHORTCUT_ROUNDS - 1 rounds (round = `concurrency` prompts
in send order) and the run's last round (the drain) and let the last simulated middle round stand
in for the rounds left out: each of its requests counts for that many in the medians and means,
and the duration grows by the left-out requests times its time per request (Little's law: mean
latency / concurrency). The first rounds are simulated whole because they are not steady: the
clients start together, so early completions, and the prefills they trigger, come in waves that
take a few rounds to spread out (long prompts at high concurrency queue behind each other there).
Runs of at most SHORTCUT_MIN_PROMPTS prompts are simulated whole (cheap, and a median over a few
stand-ins is noisy). A test checks the shortcut against simulating every prompt.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from infersim.serving.metrics import RequestRecords
from infersim.workload.synthetic import ClosedLoop, closed_loop

PROMPTS_PER_CLIENT = 10       # num_prompts = 10 x concurrency when the point does not say (README)
LENGTH_LOW = 0.8              # lengths uniform in [0.8, 1.0] x nominal (README: random-range-ratio 0.8)
SHORTCUT_ROUNDS = 6           # rounds simulated: four from the start, one standing in for the rest, the drain
SHORTCUT_MIN_PROMPTS = 256    # shorter runs are simulated whole
SEED = 0                      # the length draw; same seed, same prediction


@dataclass(frozen=True)
class HarnessRun:
    """What the client would report (seconds; tok/s over the whole run)."""

    output_tok_s: float
    tpot_median_s: float
    tpot_mean_s: float
    ttft_median_s: float
    requests_measured: int
    requests_simulated: int


def harness_lengths(nominal: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """n lengths uniform on the integers [floor(LENGTH_LOW x nominal), nominal]."""
    return rng.integers(max(1, int(LENGTH_LOW * nominal)), nominal + 1, size=n, dtype=np.int64)


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The median of `values` where value i counts weights[i] times; equal weights give np.median
    (the two middle values averaged when the total weight splits exactly between them)."""
    order = np.argsort(values, kind="stable")
    v, cw = values[order], np.cumsum(weights[order])
    half = cw[-1] / 2.0
    i = int(np.searchsorted(cw, half * (1 - 1e-12)))
    if np.isclose(cw[i], half, rtol=1e-12) and i + 1 < len(v):
        return float((v[i] + v[i + 1]) / 2)
    return float(v[i])


def measure(records: RequestRecords, concurrency: int, measured: int, output_tokens_total: float) -> HarnessRun:
    """The client's figures for a run of `measured` prompts from the records of the simulated ones
    (in send order: all of them, or the shortcut's first rounds followed by the run's last round).
    `output_tokens_total`: output tokens of all `measured` prompts."""
    n = len(records)
    done = np.sort(records.completion_s)
    duration = float(done[-1])
    weights = np.ones(n)
    if measured > n:
        c = concurrency
        rep = slice(n - 2 * c, n - c)  # the last simulated middle round stands in for the left-out ones
        if n < 3 * c:
            raise ValueError(f"the shortcut needs at least 3 rounds of {c} simulated requests, got {n}")
        # Little's law: `c` requests always in flight, so one is sent every mean latency / c seconds
        duration += (measured - n) * float(np.mean(records.e2e_s()[rep])) / c
        weights[rep] = (measured - n + c) / c
    tpot = records.tpot_s()
    has_tpot = np.isfinite(tpot)
    t, w = tpot[has_tpot], weights[has_tpot]
    return HarnessRun(output_tok_s=float(output_tokens_total) / duration,
                      tpot_median_s=weighted_median(t, w) if len(t) else float("nan"),
                      tpot_mean_s=float(np.sum(t * w) / np.sum(w)) if len(t) else float("nan"),
                      ttft_median_s=weighted_median(records.ttft_s(), weights),
                      requests_measured=measured, requests_simulated=n)


def run_harness(simulate_loop: Callable[[ClosedLoop], RequestRecords], concurrency: int, isl: int, osl: int,
                prompts: int | None = None, shortcut: bool = True, seed: int = SEED) -> HarnessRun:
    """Simulate the client against a server (`simulate_loop` runs a ClosedLoop and returns its
    records) and measure it. prompts: None = PROMPTS_PER_CLIENT x concurrency. shortcut: simulate
    SHORTCUT_ROUNDS x concurrency prompts when the run has more than that and more than
    SHORTCUT_MIN_PROMPTS (see the module docstring)."""
    n = prompts if prompts is not None else PROMPTS_PER_CLIENT * concurrency
    rng = np.random.default_rng(seed)
    inp, out = harness_lengths(isl, n, rng), harness_lengths(osl, n, rng)
    keep = SHORTCUT_ROUNDS * concurrency
    if shortcut and n > max(keep, SHORTCUT_MIN_PROMPTS):
        # the first ones in send order, then the last `concurrency` (the drain), as sent
        idx = np.concatenate([np.arange(keep - concurrency), np.arange(n - concurrency, n)])
    else:
        idx = np.arange(n)
    records = simulate_loop(closed_loop(concurrency, len(idx), inp[idx], out[idx], seed))
    return measure(records, concurrency, n, float(np.sum(out)))
