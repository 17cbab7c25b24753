"""Lower bounds on a plan's step times: the same step timers with every GPU kernel at its hard
roofline (planner/screen.py evaluates them over a whole grid at once).

The cost model times a GPU kernel as a smoothed roofline, (t_compute^p + t_memory^p)^(1/p) with
t_compute = FLOPs / (peak x compute_eff) and t_memory = bytes / (bandwidth x mem_eff) (costmodel/
execution.py); for every p >= 1 that is at least max(t_compute, t_memory), the p -> infinity limit.
A *floor* timer is the plan's own timer with its GPU deployments' `blend_p` set to infinity, which
the roofline formula evaluates to exactly that max (each op's larger term times (1 + r)^0 = 1). Nothing
else changes: the FLOP and byte counts (costmodel/work.py, compiled into each StepCost's affine
table of per-op coefficients), the collectives, kernel launches and host work (costmodel/overhead.py),
the LPU / wafer layer pipeline (already a hard max, plus its fixed per-layer latency and hops), the
AFD bounds (chain, GPU, link, LPU pool) and the speculative cycle (draft + link + verify). Every one
of those is non-decreasing in the kernels' times, so the floor timer never exceeds the timer.

Timers: StepCost (modes gpu, pd, lpu and cs3), AFDStepCost (afd), SpecDecodeCost (MTP / EAGLE heads
and draft models on GPUs or SRAM chips, AFD + MTP / draft). Any other timer has no floor here
(`floor_timer` returns None; the screen then bounds its decode step by 0 seconds, the weakest sound
bound, and says so).
"""
from __future__ import annotations

import copy
import math
from dataclasses import replace

import numpy as np

from infersim.costmodel.afd import AFDStepCost
from infersim.costmodel.specdec import SpecDecodeCost
from infersim.costmodel.step import StepCost
from infersim.costmodel.work import Batch, batch_shape
from infersim.mapping.deployment import Deployment


def floor_deployment(dep: Deployment) -> Deployment:
    """`dep` with its kernels at the hard roofline (blend_p = inf); a dataflow (LPU / wafer)
    deployment as it is (its ops already take the hard max)."""
    if dep.dataflow:
        return dep
    return replace(dep, eff=replace(dep.eff, blend_p=math.inf))


def floor_timer(timer):
    """The floor of a step timer (see the module docstring), or None for a timer kind without one."""
    if type(timer) is StepCost:
        if timer.dep.dataflow:
            return timer
        return StepCost(floor_deployment(timer.dep), host=timer.host, sides=timer.sides)
    if type(timer) is AFDStepCost:
        out = _copy(timer)
        out.gpu, out.lpu = floor_timer(timer.gpu), floor_timer(timer.lpu)
        return out
    if type(timer) is SpecDecodeCost:
        verify, draft = floor_timer(timer.target_cost), floor_timer(timer.draft_cost)
        if verify is None or draft is None:
            return None
        out = _copy(timer)
        out.target_cost, out.draft_cost = verify, draft
        return out
    return None


def _copy(timer):
    """A shallow copy that shares no memo of step times with the original."""
    out = copy.copy(timer)
    out.__dict__.pop("_step_memo", None)
    return out


def decode_seconds(timer, batch, past, span) -> np.ndarray:
    """Seconds of one decode step (a speculative cycle for SpecDecodeCost) of `batch` sequences per
    replica at context `past`, averaged over `span` steps, as each timer's `decode_step` takes it
    (estimate.estimate_plan), for arrays that broadcast."""
    if isinstance(timer, SpecDecodeCost):
        return timer.cycle(batch, past, span)
    shape = batch_shape(Batch(seqs=np.asarray(batch, dtype=float), new=np.float64(1),
                              past=np.asarray(past, dtype=float), span=np.maximum(np.asarray(span, dtype=float), 1.0)),
                        timer.windows)
    return timer.total(shape)
