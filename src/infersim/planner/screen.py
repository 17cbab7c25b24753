"""The analytical screen: bounds for every (plan, batch, input length, output length) at once, so a
planner can drop what cannot fit or cannot meet an SLO before it estimates or simulates anything.

`screen(plans, batches, input_lens, output_lens)` returns a `ScreenResult` of arrays shaped
(plan, batch, input, output); `batch` is sequences per decode replica, lengths are tokens. For each
configuration, against `estimate.estimate_plan(plan, batch, input_len, output_len)` (the steady
state: every decode replica running `batch` sequences):

- `fits`: the batch's weights + KV cache / state + activations fit the decode deployment's memory,
  by the cost model's own rule (costmodel.memory.memory_fit at batch x context step tokens, as
  estimate_plan's check via max_sequences); with a premium routing path both paths must fit.
  Exactly estimate_plan's verdict: it refuses a configuration iff `fits` is False.
- `tok_s_per_user` (tokens/s per user, = 1 / TPOT) and `output_tok_s` (output tokens/s of the
  whole deployment): upper bounds. `ttft_s` (seconds): a lower bound.

"Bound" means: for every configuration, estimate_plan's figure is never better than the bound
(tok/s <= bound, TTFT >= bound), whether or not it fits. The bounds come from the plan's own step
timers with every GPU kernel at its hard roofline, max(FLOPs / rate, bytes / bandwidth) at the
calibrated rates, instead of the smoothed corner (planner/screen_floor.py): the cost model's per-op
coefficients, collectives, kernel launches, host work, LPU pipeline latency, AFD bounds and
speculative cycle all enter unchanged, so the only slack is the roofline smoothing (none on LPU /
wafer pipelines, whose bounds equal the estimate). Prefill (TTFT, and the batched prefill time per
prompt that caps throughput) is bounded the same way. Every time bound is lowered by
ROUNDING_MARGIN (relative) so that float rounding between the cost model's two evaluation paths
(compiled table vs per-op) cannot put the estimate a hair above a bound. They are bounds on the
*model*, not on hardware: queueing, prefill interference and preemption (which `simulate` adds)
only make the served figures worse, but a faster real system than the calibrated model is not
excluded. A plan whose decode timer has no floor (none of the shipped modes) is bounded with a decode
step of 0 s (per-user speed unbounded; throughput still capped by prefill), and `unbounded` says so.

Cost: per plan, one evaluation of its floor timers over the (batch, input, output) grid with numpy
broadcasting (bench/bench_screen.py: about a million configurations in seconds on one core).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from infersim.costmodel.memory import memory_fit
from infersim.deployments.plan import Plan
from infersim.errors import InputError
from infersim.estimate import decode_span, prefill_times, request_rate
from infersim.planner.screen_floor import decode_seconds, floor_deployment, floor_timer

# Relative margin taken off every time bound: far above the ~1e-12 relative disagreement of the
# cost model's compiled and per-op evaluation paths (tests/test_dataflow_physics.py), far below
# anything a screen decides on.
ROUNDING_MARGIN = 1e-9


@dataclass(frozen=True)
class Candidate:
    """One configuration that passed a screen, with its bounds (units as in ScreenResult)."""
    plan_index: int
    deployment: str
    batch: int
    input_len: int
    output_len: int
    tok_s_per_user: float
    output_tok_s: float
    ttft_s: float


@dataclass
class ScreenResult:
    """Arrays shaped (plan, batch, input, output) (ttft_s is a broadcast view: it depends on the
    plan and input length only). `tok_s_per_user`, `output_tok_s`: upper bounds (tokens/s);
    `ttft_s`: lower bound (s); `fits`: memory verdict (see the module docstring). `deployments`:
    each plan's name; `unbounded`: per plan, why its decode step has no floor (None: it has one);
    `seconds`: wall time of preparing the floor timers ('coefficients': building them and compiling
    their per-op tables) and of evaluating the grid ('evaluation')."""
    deployments: list[str]
    batches: np.ndarray
    input_lens: np.ndarray
    output_lens: np.ndarray
    fits: np.ndarray
    tok_s_per_user: np.ndarray
    output_tok_s: np.ndarray
    ttft_s: np.ndarray
    unbounded: list[Optional[str]] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return int(self.fits.size)

    def mask(self, min_tok_s_per_user: float | None = None, max_ttft_s: float | None = None,
             min_output_tok_s: float | None = None) -> np.ndarray:
        """Configurations that fit and whose bounds meet every threshold given (tokens/s per user
        at least, TTFT in seconds at most, output tokens/s at least): the ones that may meet them.
        Those outside the mask cannot meet them under the cost model."""
        keep = self.fits.copy()
        for name, value, arr, op in (("min_tok_s_per_user", min_tok_s_per_user, self.tok_s_per_user, np.greater_equal),
                                     ("max_ttft_s", max_ttft_s, self.ttft_s, np.less_equal),
                                     ("min_output_tok_s", min_output_tok_s, self.output_tok_s, np.greater_equal)):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
                raise InputError(f"screen threshold {name} must be a finite number >= 0, got {value!r}")
            keep &= op(arr, value)
        return keep

    def candidates(self, min_tok_s_per_user: float | None = None, max_ttft_s: float | None = None,
                   min_output_tok_s: float | None = None) -> list[Candidate]:
        """The configurations in `mask(...)`, in (plan, batch, input, output) order."""
        out = []
        for p, b, i, o in np.argwhere(self.mask(min_tok_s_per_user, max_ttft_s, min_output_tok_s)):
            out.append(Candidate(int(p), self.deployments[p], int(self.batches[b]), int(self.input_lens[i]),
                                 int(self.output_lens[o]), float(self.tok_s_per_user[p, b, i, o]),
                                 float(self.output_tok_s[p, b, i, o]), float(self.ttft_s[p, b, i, o])))
        return out


@dataclass
class _Floors:
    """One plan's floor timers, prepared once: the decode timer's floor (None: no floor), and the
    deployments prefill and the memory check use."""
    plan: Plan
    decode_floor: object
    prefill_floor_dep: object
    premium: Optional["_Floors"]


def _prepare(plan: Plan) -> _Floors:
    decode = plan.decode_pool
    floor = floor_timer(decode.timer)
    if floor is not None:  # compile the per-op coefficient tables now (StepCost builds them on first use)
        decode_seconds(floor, 1.0, 1.0, 1.0)
    return _Floors(plan, floor, floor_deployment(plan.prefill_pool.deployment),
                   None if plan.premium is None else _prepare(plan.premium))


def _evaluate(f: _Floors, batch, inp, out) -> tuple:
    """(fits, tok/s per user bound, output tok/s bound, TTFT bound) of one plan; batch, inp and out
    are float arrays shaped (B, 1, 1), (1, I, 1), (1, 1, O)."""
    plan = f.plan
    prefill, decode = plan.prefill_pool, plan.decode_pool
    context = inp + out
    fits = memory_fit(decode.deployment, batch, context, batch * context).free >= 0
    ttft, per_prompt = (np.asarray(t, dtype=float) * (1 - ROUNDING_MARGIN) for t in prefill_times(f.prefill_floor_dep, inp))
    if f.decode_floor is None:
        tpot = 0.0 * (batch + inp + out)
    else:
        step = decode_seconds(f.decode_floor, batch, inp, decode_span(out))
        tpot = np.asarray(step, dtype=float) * (1 - ROUNDING_MARGIN) / decode.timer.tokens_per_decode_step
    disaggregated = prefill.role == "prefill"
    with np.errstate(divide="ignore"):
        req_s = request_rate(prefill.replicas if disaggregated else None, decode.replicas, per_prompt, tpot, batch, out)
        per_user = 1.0 / tpot
    tok_s = req_s * out
    if f.premium is not None:  # both paths at `batch` per decode replica; per-user figures are the standard path's
        p_fits, _, p_tok_s, _ = _evaluate(f.premium, batch, inp, out)
        fits = fits & p_fits
        tok_s = tok_s + p_tok_s
    return fits, per_user, tok_s, ttft


def _lengths(values, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.size == 0:
        raise InputError(f"screen: {what} must be a non-empty list of whole numbers, got {values!r}")
    if not np.issubdtype(arr.dtype, np.integer) or np.any(arr < 1):
        raise InputError(f"screen: {what} must be whole numbers, each at least 1; got {list(np.asarray(values).tolist())}")
    return arr.astype(np.int64)


def screen(plans: list[Plan], batches, input_lens, output_lens) -> ScreenResult:
    """Bounds for every plan at every batch (sequences per decode replica) x input length x output
    length (tokens); see the module docstring for what they bound and how."""
    if not plans:
        raise InputError("screen: no plans given; build at least one with modes.build_plan")
    b = _lengths(batches, "batches")
    i = _lengths(input_lens, "input lengths")
    o = _lengths(output_lens, "output lengths")
    start = time.perf_counter()
    floors = [_prepare(p) for p in plans]
    prepared = time.perf_counter()
    shape = (len(plans), b.size, i.size, o.size)
    fits = np.empty(shape, dtype=bool)
    per_user, tok_s, ttft = np.empty(shape), np.empty(shape), np.empty((len(plans), 1, i.size, 1))
    grid = (b.astype(float)[:, None, None], i.astype(float)[None, :, None], o.astype(float)[None, None, :])
    for k, f in enumerate(floors):
        fits[k], per_user[k], tok_s[k], ttft[k] = _evaluate(f, *grid)
    done = time.perf_counter()
    unbounded = [None if f.decode_floor is not None else
                 f"no floor for the decode timer {type(f.plan.decode_pool.timer).__name__}: decode bounded by 0 s"
                 for f in floors]
    return ScreenResult([p.spec.name for p in plans], b, i, o, fits, per_user, tok_s, np.broadcast_to(ttft, shape),
                        unbounded, {"coefficients": prepared - start, "evaluation": done - prepared})
