"""`infersim plan`'s prune step: checks that remove candidates before any simulation.

A check is any callable `(candidates, context) -> list[Prune | None]` (one entry per candidate,
None = keep) with a `name`: the `PruneCheck` protocol. It takes the whole list at once so that a
vectorised bound (a roofline over the grid as arrays) plugs in as one more check; the planner runs
`DEFAULT_CHECKS` in order, each on what the previous ones kept.

The SLO checks prune only on bounds that queueing cannot improve, each compared to its target with
a margin (BOUND_MARGIN): a bound must miss by more than that factor. The margin absorbs the gap
between the closed form (estimate.estimate_plan) and the simulator's step-by-step timing of the same
work; queueing only adds to the simulated figures, so it needs no margin.
Both bounds come from one vectorised screen over all candidates (planner.screen: the hard-roofline
floor of each plan's own step timers, never above estimate_plan's figure), not an estimate each.
- per-user decode speed (tpot_*, tok_s_per_user_*): every request's TPOT is at least the TPOT of
  batch 1 at its own context, which grows with the context; so TPOT's q-th percentile is at least
  batch 1's TPOT at the q-th percentile prompt (for tok_s_per_user_p10, TPOT's p90);
- ttft_*: a request's TTFT is at least the time an empty system takes to prefill the part of its
  prompt that a perfect prefix cache leaves (plan_workload.uncached_input; the whole prompt when
  the engine caches no prefixes), and that time grows with the tokens; so TTFT's q-th percentile is
  at least the empty system's TTFT at the q-th percentile of those tokens.
e2e and itl targets have no bound here; the simulation checks them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

from infersim.planner.budget import Budget, over_budget

BOUND_MARGIN = 1.25  # a bound must miss its target by more than 25% to prune (module docstring)


@dataclass(frozen=True)
class Prune:
    """Why a candidate was pruned: `kind` groups the counts (e.g. "budget:racks", "slo:ttft_p99"),
    `detail` says by how much."""
    kind: str
    detail: str
    factor: float = float("inf")  # the bound over its target (>= 1: how far it misses), for "closest"


@dataclass
class ScreenContext:
    """What the checks see besides the candidates."""
    workload: object                 # plan_workload.PlanWorkload
    slo: object                      # serving.metrics.SLO or None
    budget: Budget
    margin: float = BOUND_MARGIN


class PruneCheck(Protocol):
    name: str

    def __call__(self, cands: Sequence, ctx: ScreenContext) -> list[Optional[Prune]]: ...


def _first(checks) -> Optional[Prune]:
    return next((p for p in checks if p is not None), None)


class BudgetCheck:
    """Over the budget (exact: no margin)."""
    name = "budget"

    def __call__(self, cands, ctx):
        out = []
        for c in cands:
            hit = over_budget(ctx.budget, c.fp)
            out.append(None if hit is None else Prune(f"budget:{hit[0]}", hit[1]))
        return out


def _pct(t) -> float:
    """The percentile (0-100) of the time metric a target bounds: tok_s_per_user_p10 is TPOT's p90."""
    from infersim.serving.metrics import RATE_PERCENTILES, SLO_PERCENTILES
    if t.is_rate:
        return 100.0 - RATE_PERCENTILES[t.percentile]
    return SLO_PERCENTILES[t.percentile]  # callers leave means out: a mean has no percentile bound


class _Batch1Bounds:
    """Batch 1's TPOT and TTFT lower bounds of every candidate at the prompt lengths asked for, from
    one vectorised screen (planner.screen: hard-roofline floors of the plan's own step timers, never
    above estimate_plan's figures) over (candidate, batch 1, lengths, the workload's output length)."""

    def __init__(self, cands: Sequence, input_lens: set[int], output_len: int):
        from infersim.planner.screen import screen
        self.lens = sorted(input_lens)
        self.res = screen([c.plan for c in cands], [1], self.lens, [output_len]) if cands and self.lens else None

    def at(self, k: int, input_len: int) -> Optional[tuple[float, float]]:
        """(TPOT, TTFT) floors in seconds of candidate `k` at `input_len`; None when batch 1 at
        that context does not fit (no bound: the simulation will tell)."""
        i = self.lens.index(input_len)
        if not self.res.fits[k, 0, i, 0]:
            return None
        return 1.0 / float(self.res.tok_s_per_user[k, 0, i, 0]), float(self.res.ttft_s[k, 0, i, 0])


class DecodeSpeedBound:
    """tpot_* and tok_s_per_user_* against batch 1's TPOT floor at the percentile's prompt length."""
    name = "decode speed at batch 1"

    def __call__(self, cands, ctx):
        targets = [t for t in (ctx.slo.targets if ctx.slo else ()) if t.is_rate or t.metric == "tpot"]
        targets = [t for t in targets if t.percentile != "mean"]  # a mean has no percentile bound
        w = ctx.workload
        lens = {t: w.input_quantile(_pct(t)) for t in targets}
        floors = _Batch1Bounds(cands, set(lens.values()), w.output_len)
        return [_first(self._one(floors.at(k, lens[t]), t, ctx.margin) for t in targets) for k in range(len(cands))]

    @staticmethod
    def _one(bound, t, margin) -> Optional[Prune]:
        if bound is None or bound[0] <= t.seconds * margin:
            return None
        tpot = bound[0]
        if t.is_rate:
            return Prune(f"slo:{t.key}", f"at most {1 / tpot:.4g} tok/s per user even alone (batch 1), "
                         f"against {t.tok_s:g}", tpot / t.seconds)
        return Prune(f"slo:{t.key}", f"TPOT at least {tpot * 1e3:.4g} ms even alone (batch 1), against "
                     f"{t.seconds * 1e3:g} ms", tpot / t.seconds)


class EmptyTTFTBound:
    """ttft_* against an empty system's TTFT floor for the percentile's uncached prompt tokens."""
    name = "TTFT of an empty system"

    def __call__(self, cands, ctx):
        targets = [t for t in (ctx.slo.targets if ctx.slo else ()) if t.metric == "ttft" and t.percentile != "mean"]
        w = ctx.workload
        lens = [{t: w.input_quantile(_pct(t), uncached=c.plan.spec.engine.prefix_caching) for t in targets}
                for c in cands]
        floors = _Batch1Bounds(cands, {n for d in lens for n in d.values()}, w.output_len)
        return [_first(self._one(floors.at(k, lens[k][t]), t, c, ctx.margin) for t in targets)
                for k, c in enumerate(cands)]

    @staticmethod
    def _one(bound, t, c, margin) -> Optional[Prune]:
        if bound is None or bound[1] <= t.seconds * margin:
            return None
        what = "uncached " if c.plan.spec.engine.prefix_caching else ""
        return Prune(f"slo:{t.key}", f"TTFT at least {bound[1]:.3g} s on an empty system for the "
                     f"p{_pct(t):g} {what}prompt, against {t.seconds:g} s", bound[1] / t.seconds)


DEFAULT_CHECKS: tuple[PruneCheck, ...] = (BudgetCheck(), DecodeSpeedBound(), EmptyTTFTBound())
