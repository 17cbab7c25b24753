"""Which stage binds an AFD decode step, and at which LPX : NVL72 ratio each stops (or starts) binding.

Of the bounds of `costmodel.afd.afd_bounds`, only the LPU pool's depends on the ratio r
(lpu.racks_per_gpu_rack): the pools have a fixed size (p chips, modes/afd.py), so r gives
u(r) = floor(round(r k) / p) pools, k = LPU chips per unit of ratio (GPU racks x chips per LPU rack),
and the pool bound is R / u x m x F_busy / L_ffn with R attention replicas. The chain, GPU, link and
host bounds do not move with r (the link is each attention replica's own path). So, over the ratios
that hold at least one pool (r >= p / k):
- the LPU pool binds below the smallest ratio whose u makes its bound fall below the largest other
  bound, u* = floor(R m F_busy / (L_ffn B_next)) + 1, at r* = u* p / k ('never binds' if u* = 1);
- any other stage binds at no ratio if another fixed bound is larger ('never binds'), else at every
  ratio from the one where the pool falls to or below it ('binds at any ratio' from there on: more
  LPX racks never relieve it).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass


def binding_stage(bounds: dict[str, float]) -> str:
    """The bound that sets the step: the largest (the first listed on a tie)."""
    return max(bounds, key=bounds.get)


@dataclass(frozen=True)
class StageBinding:
    """One bound of the step: its seconds at the deployment's ratio, whether it binds there, and
    over all ratios: status 'never binds', 'binds at any ratio' (from `ratio` on) or 'stops binding'
    (at `ratio`: the LPU pool, whose bound falls as racks are added)."""

    stage: str
    bound_s: float
    binds: bool
    status: str
    ratio: float | None


@dataclass(frozen=True)
class AFDBinding:
    """The binding stage at the deployment's ratio and each stage's binding over LPX : NVL72 ratios
    (min_ratio: the fewest racks per GPU rack that hold one FFN pool)."""

    binding: str
    ratio: float
    min_ratio: float
    stages: dict[str, StageBinding]

    def as_dict(self) -> dict:
        return {"binding": self.binding, "ratio": self.ratio, "min_ratio": self.min_ratio,
                "stages": {k: asdict(v) for k, v in self.stages.items()}}


def afd_binding(bounds: dict[str, float], replicas: int, pools: int, pool_chips: int, ratio: float,
                chips_per_ratio: float) -> AFDBinding:
    """The binding stage among `bounds` (seconds, `costmodel.afd.afd_bounds` of one scalar step) of a
    deployment at LPX : NVL72 ratio `ratio` with `pools` FFN pools of `pool_chips` LPU chips serving
    `replicas` attention replicas, whose every unit of ratio adds `chips_per_ratio` LPU chips; and per
    stage the ratio at which it stops binding (the LPU pool) or from which it binds at any ratio."""
    one_replica = bounds["lpu"] * pools / replicas   # the pool bound's share of one attention replica
    fixed = {k: v for k, v in bounds.items() if k != "lpu"}

    def ratio_below(level: float, strict: bool) -> float:
        """The smallest ratio whose pools bring the pool bound below `level` (or to at most it)."""
        x = replicas * one_replica / level
        if math.isclose(x, round(x), rel_tol=1e-9):   # a tie in exact arithmetic stays a tie
            x = round(x)
        u = max(1, math.floor(x) + 1 if strict else math.ceil(x))
        return u * pool_chips / chips_per_ratio

    min_ratio = pool_chips / chips_per_ratio
    binding = binding_stage(bounds)
    stages = {}
    for k, v in bounds.items():
        others = [b for j, b in fixed.items() if j != k]
        if k == "lpu":
            r = ratio_below(max(others), strict=True)
            status = "never binds" if r <= min_ratio else "stops binding"
        elif others and v < max(others):
            status, r = "never binds", None
        else:
            status, r = "binds at any ratio", ratio_below(v, strict=False)
        stages[k] = StageBinding(k, v, k == binding, status, None if status == "never binds" else r)
    return AFDBinding(binding, float(ratio), min_ratio, stages)
