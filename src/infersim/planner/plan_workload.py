"""The workload `infersim plan` sizes and simulates: a trace (shipped name or file; optionally its
first N requests by arrival) or a synthetic Poisson stream at a rate, and the figures the screen
needs from it: mean lengths, the offered load, and per-request prompt tokens a prefix cache cannot
serve (the lower bound on prefill work that the TTFT bound uses).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from infersim.errors import InputError

DEFAULT_SYNTHETIC_REQUESTS = 1000
SYNTHETIC_SEED = 0


@dataclass(frozen=True)
class PlanWorkload:
    """Requests to simulate and their summary figures. Lengths in tokens; rates per second of the
    workload's own clock (offered: arrivals over the span from the first to the last)."""
    requests: object                 # workload.traces.Requests
    name: str                        # the trace's name, or a description of the synthetic stream
    trace: Optional[str]             # the trace's name (sweep store column), None for synthetic
    mean_input: float
    mean_output: float
    offered_req_s: float
    offered_output_tok_s: float
    uncached_input: np.ndarray       # per request: prompt tokens not in a perfect per-prefix cache
    window: str                      # what part of the source is simulated, for the output

    @property
    def input_len(self) -> int:
        from infersim.sweep.spec import whole_tokens
        return whole_tokens(self.mean_input)

    @property
    def output_len(self) -> int:
        from infersim.sweep.spec import whole_tokens
        return whole_tokens(self.mean_output)

    def input_quantile(self, pct: float, *, uncached: bool = False) -> int:
        """The `pct`-th percentile (0-100) of prompt tokens (whole prompts, or only the uncached part)."""
        v = self.uncached_input if uncached else self.requests.input_tokens
        return max(1, int(math.ceil(np.percentile(v, pct))))


def _uncached(reqs) -> np.ndarray:
    """Prompt tokens each request must prefill even with an unbounded prefix cache: its leading
    prefix blocks seen in any earlier request are free (the best a cache can do), the rest not."""
    inp = np.asarray(reqs.input_tokens, dtype=np.int64)
    if reqs.prefix_hash_ids is None:
        return inp.copy()
    seen: set[int] = set()
    out = np.empty_like(inp)
    for i, ids in enumerate(reqs.prefix_hash_ids):
        c = 0
        while c < len(ids) and ids[c] in seen:
            c += 1
        seen.update(ids)
        out[i] = max(1, int(inp[i]) - c * reqs.prefix_block_tokens)
    return out


def _positive(flag: str, v, integer: bool) -> None:
    if v is None:
        return
    bad = isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0
    if bad or (integer and int(v) != v):
        raise InputError(f"{flag} must be a positive {'whole number' if integer else 'number'}; got {v}")


def plan_workload(trace: Optional[str], *, input_len: Optional[int] = None, output_len: Optional[int] = None,
                  rate: Optional[float] = None, requests: Optional[int] = None,
                  rate_scale: Optional[float] = None) -> PlanWorkload:
    """Exactly one source: `trace` (its first `requests` by arrival when given; arrival times divided
    by `rate_scale`, > 1 = more traffic), or a Poisson stream at `rate` requests/s of `requests`
    (default 1000) prompts of `input_len` and responses of `output_len` tokens (fixed lengths, seed 0)."""
    from infersim.workload.synthetic import poisson
    from infersim.workload.traces import read_trace
    synthetic = [f for f, v in (("--input-len", input_len), ("--output-len", output_len), ("--rate", rate))
                 if v is not None]
    if trace is not None and synthetic or trace is None and not synthetic:
        got = " and ".join(["--trace"] * (trace is not None) + synthetic) or "no workload"
        raise InputError(f"{got}: give exactly one workload source: --trace NAME, or --input-len N --output-len N "
                         "--rate R (a Poisson stream)")
    if trace is None and len(synthetic) < 3:
        missing = [f for f in ("--input-len", "--output-len", "--rate") if f not in synthetic]
        raise InputError(f"a synthetic workload needs --input-len, --output-len and --rate; add {' and '.join(missing)} "
                         "(or give --trace NAME instead)")
    _positive("--requests", requests, True)
    _positive("--rate-scale", rate_scale, False)
    if rate_scale is not None and trace is None:
        raise InputError("--rate-scale compresses a trace's arrival times; use it with --trace (or change --rate)")
    if trace is not None:
        reqs = read_trace(trace, max_requests=requests, rate_scale=1.0 if rate_scale is None else rate_scale)
        name = str(trace) + ("" if rate_scale is None else f" at {rate_scale:g}x its rate")
        window = (f"the first {len(reqs):,} requests by arrival" if requests is not None
                  else f"all {len(reqs):,} requests")
    else:
        _positive("--input-len", input_len, True)
        _positive("--output-len", output_len, True)
        _positive("--rate", rate, False)
        n = DEFAULT_SYNTHETIC_REQUESTS if requests is None else requests
        reqs = poisson(float(rate), n, int(input_len), int(output_len), SYNTHETIC_SEED)
        name = f"Poisson {rate:g} req/s, {input_len} in / {output_len} out"
        window = f"{n:,} requests (seed {SYNTHETIC_SEED})"
    span = float(reqs.arrival_s[-1] - reqs.arrival_s[0])
    if trace is None:
        req_s = float(rate)
    elif span > 0:
        req_s = (len(reqs) - 1) / span
    else:
        raise InputError(f"--trace '{name}': every request arrives at once, so it has no rate to size for; "
                         "give a trace with arrival times or a synthetic --rate")
    mean_out = float(np.mean(reqs.output_tokens))
    store_name = None if trace is None else reqs.source + ("" if requests is None else f"[:{len(reqs)}]") + (
        "" if rate_scale is None else f" x{rate_scale:g}")
    return PlanWorkload(reqs, name, store_name, float(np.mean(reqs.input_tokens)),
                        mean_out, req_s, req_s * mean_out, _uncached(reqs), window)
