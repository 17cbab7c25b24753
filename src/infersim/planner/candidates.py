"""`infersim plan`'s candidates: every family's deployments (planner.families) at several copies of
their unit up to the budget, built once, then sized analytically for the workload's offered load.

Scaling: copy `m` of a deployment multiplies its rack field (`gpu.racks`, or `lpu.racks` for LPU-only
and CS-3) and its prefill replicas by `m`: m identical units side by side, m = 1, 2, 4, ... up to the
racks budget (MAX_COPIES without one).

Sizing (estimate.estimate_plan at the workload's mean lengths): the smallest batch per decode replica
in 1, 2, 4, ... whose steady-state output tok/s serves the offered output tok/s; when none does
(the KV cache stops fitting, or MAX_BATCH), the deployment is short of the offered load and its
analytical figures are those of its largest batch that fits. Being short is not a prune: the
closed form prefills whole prompts, which overstates the work when a prefix cache serves most of
each prompt (agent traces), so it only orders finalists; the simulation decides.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Optional

from infersim.errors import InputError
from infersim.planner.budget import Budget, Footprint, footprint

MAX_COPIES = 8          # copies of a unit tried when no racks budget bounds them
MAX_BATCH = 512         # largest batch per decode replica tried while sizing
_SCALED_PATHS = (("gpu", "racks"), ("gpu", "prefill_replicas"))


@dataclass
class Candidate:
    """One deployment (a family's grid point at `copies` units) and what the screen learns about it.
    `sized`: estimate_plan at `batch` (tok_s_per_user, output_tok_s, ttft_s, tpot_s, prefill_share;
    seconds and tokens/s); `serves`: whether that output tok/s reaches the offered load."""
    family: str
    label: str
    deployment: dict
    copies: int
    plan: object = field(repr=False, default=None)
    fp: Optional[Footprint] = None
    batch: Optional[int] = None
    sized: Optional[dict] = field(repr=False, default=None)
    serves: bool = False
    error: Optional[str] = None      # why the plan does not build or run at batch 1

    @property
    def racks(self) -> float:
        return self.fp.racks if self.fp else float("nan")


def scaled(dep: dict, copies: int) -> dict:
    """`dep` at `copies` units (see the module docstring)."""
    out = copy.deepcopy(dep)
    if "gpu" in out:
        for section, key in _SCALED_PATHS:
            if out[section].get(key) is not None:
                out[section][key] = out[section][key] * copies
        if out["gpu"].get("racks") is None:
            out["gpu"]["racks"] = copies
    else:
        out["lpu"]["racks"] = out["lpu"].get("racks", 1) * copies
    return out


def copies_for(budget: Budget) -> list[int]:
    """1, 2, 4, ... up to the racks budget (every unit is at least one rack), or MAX_COPIES."""
    top = int(budget.racks) if budget.racks is not None else MAX_COPIES
    out, m = [], 1
    while m <= max(top, 1):
        out.append(m)
        m *= 2
    return out


def enumerate_candidates(model, catalog, calibration, budget: Budget, only: Optional[list[str]] = None):
    """(candidates, skipped families {name: why}): every family's deployments at every copy count,
    deduplicated by deployment (a family's 2-rack point and its 1-rack point doubled are one)."""
    from infersim.planner.families import families, only_families
    from infersim.sweep.spec import canonical_json
    fams = only_families(families(model, catalog, calibration), only)
    seen, out = set(), []
    for fam in fams:
        for label, dep in fam.deployments:
            for m in copies_for(budget):
                d = scaled(dep, m)
                key = canonical_json(d)
                if key in seen:
                    continue
                seen.add(key)
                out.append(Candidate(fam.name, label if m == 1 else f"{m}x {label}", d, m))
    return out, {f.name: f.skipped for f in fams if f.skipped}


def build(c: Candidate, model, catalog, calibration, prices) -> None:
    """Build `c`'s plan and footprint; a plan that does not build keeps the reason in `c.error`."""
    from infersim.deployments.spec import DeploymentSpec
    from infersim.modes import build_plan
    try:
        c.plan = build_plan(DeploymentSpec.model_validate({"name": c.label, **c.deployment}), model, catalog, calibration)
    except InputError as e:
        c.error = str(e)
        return
    c.fp = footprint(c.plan, catalog, prices)


def size(c: Candidate, input_len: int, output_len: int, offered_output_tok_s: float) -> None:
    """Set `c.batch`, `c.sized`, `c.serves` (module docstring); `c.error` when even batch 1 does not run."""
    from infersim.estimate import estimate_plan
    b, last = 1, None
    while b <= MAX_BATCH:
        try:
            d = estimate_plan(c.plan, batch=b, input_len=input_len, output_len=output_len)
        except InputError as e:
            if last is None:
                c.error = str(e)
            break
        last = (b, d)
        if d["output_tok_s"] >= offered_output_tok_s:
            c.serves = True
            break
        b *= 2
    if last is not None:
        c.batch, c.sized = last
