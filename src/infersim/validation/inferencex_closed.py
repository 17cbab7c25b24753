"""Closed forms of the InferenceX benchmark client for the points scenarios.py cannot express:
disaggregated (P/D) points and MTP points. Both broadcast over efficiency arrays (a fit's parameter
grid), like scenarios.py's, and are built from the step timers the simulator runs (the point's plan,
inferencex_plan.map_point), re-made with the efficiency being tried; no step formula lives here.

A decode step of the decoding pool: `decode_step_seconds` = the pool timer's step at batch b and the
batch's mean context (a plain pool: scenarios' step_time; a speculative pool: SpecDecodeCost.cycle,
k drafted tokens + one verify step of k + 1 tokens), yielding `tokens_per_decode_step` tokens per
sequence (1, or the acceptance vector's expected E).

- MTP, aggregated: scenarios.closed_loop, the aggregated closed loop, with a step of E tokens
  (TPOT = cycle / E, stretched by the share of engine time spent prefilling).
- P/D (with or without MTP): clients wait for a prefill worker (alone: t_pre1; batched, the pool
  serves P / t_pre requests/s), the KV hand-over (kv_transfer_seconds; transfers to one decode
  worker queue, so D / t_kv requests/s at most), then decode out - 1 tokens in a decode worker
  that never prefills (TPOT = its step / E). The closed loop of C clients runs at
  X = min(C / latency, prefill rate, transfer rate, decode capacity at the engine's max batch),
  and each decode worker holds b = X (out - 1) TPOT / D sequences (Little's law): damped fixed point.
  TTFT (not fitted) = prefill alone + transfer + half a decode step; no prefill queueing.
Not modelled: waves of the closed loop's first rounds (the harness's ramp-up), the length spread
(mean lengths), a prefill worker's chunking of one long prompt over several steps.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from infersim.calibration.efficiency import Efficiency
from infersim.costmodel.kvtransfer import kv_transfer_seconds
from infersim.costmodel.memory import max_sequences
from infersim.costmodel.specdec import SpecDecodeCost
from infersim.costmodel.step import StepCost, step_time
from infersim.deployments.plan import Plan
from infersim.estimate import prefill_times
from infersim.mapping.deployment import Deployment
from infersim.validation.scenarios import FIXED_POINT_ITERATIONS, closed_loop


def _timer_with(timer, dep: Deployment, eff: Efficiency):
    """The pool's timer re-made on `dep` with efficiency `eff` (arrays broadcast)."""
    if isinstance(timer, SpecDecodeCost):
        return SpecDecodeCost(dep, replace(timer.draft, eff=eff), timer.k, timer.acceptance, timer.link, compiled=False)
    if isinstance(timer, StepCost):
        return None  # plain steps: scenarios' step_time on dep
    raise TypeError(f"no closed form for a {type(timer).__name__} decode pool")


def decode_step_seconds(timer, dep: Deployment, batch, past: float, span: float):
    """(seconds of one decode step of `batch` sequences per replica, tokens it yields per sequence);
    contexts from `past` over the next `span` tokens (averaged). `timer` None = a plain step."""
    if timer is None:
        return step_time(dep, batch, 1, past, span).total, 1.0
    return timer.cycle(batch, past + span / 2, 1.0), timer.tokens_per_decode_step


def closed_loop_values(plan: Plan, concurrency: int, input_len: int, output_len: int, max_batch: int,
                       eff: Efficiency) -> dict[str, np.ndarray]:
    """{output_tok_s (the whole plan), tok_s_per_user, ttft_ms, tpot_ms} of a closed loop of
    `concurrency` clients on `plan` at mean lengths, with efficiency `eff` on every pool."""
    pools = plan.serving_pools()
    decode_pool = pools[-1]
    dec = replace(decode_pool.deployment, eff=eff)
    timer = _timer_with(decode_pool.timer, dec, eff)
    inp, out = float(input_len), float(output_len)
    span = max(out - 1, 1.0)
    b_max = np.minimum(max_batch, max_sequences(dec, inp + out, inp))
    shape = np.ones(np.broadcast_shapes(*(np.shape(getattr(eff, f)) for f in eff.__dataclass_fields__)))
    if len(pools) == 1:  # aggregated, MTP: prefill and decode share the engine
        b = np.minimum(max(concurrency / dec.par.replicas, 1.0), b_max) * shape
        t_pre1, t_pre = prefill_times(dec, inp)
        t_step, per_step = decode_step_seconds(timer, dec, b, inp, span)
        x, ttft, tpot = closed_loop(b, t_pre1, t_pre, out, t_step, per_step)
        x = x * dec.par.replicas
    else:
        x, ttft, tpot = _disaggregated(plan, replace(pools[0].deployment, eff=eff), dec, timer, concurrency, inp,
                                       out, span, b_max, shape)
    return {"output_tok_s": out * x, "tok_s_per_user": 1.0 / tpot, "ttft_ms": ttft * 1e3, "tpot_ms": tpot * 1e3}


def _disaggregated(plan: Plan, pre: Deployment, dec: Deployment, timer, concurrency: int, inp: float, out: float,
                   span: float, b_max, shape):
    """(requests/s of the plan, ttft_s, tpot_s) of a closed loop on a P/D plan (module docstring)."""
    reps = dec.par.replicas
    t_pre1, t_pre = prefill_times(pre, inp)
    t_kv = kv_transfer_seconds(pre, dec, plan.kv_link, inp) * shape
    t_max, per_step = decode_step_seconds(timer, dec, b_max, inp, span)
    cap = np.minimum(np.minimum(pre.par.replicas / t_pre, reps / t_kv),
                     reps * b_max / ((out - 1) * t_max / per_step + 1e-30))
    b = np.minimum(max(concurrency / reps, 1.0), b_max) * shape
    for _ in range(FIXED_POINT_ITERATIONS):
        t_step, per_step = decode_step_seconds(timer, dec, b, inp, span)
        tpot = t_step / per_step
        ttft = t_pre1 + t_kv + t_step / 2
        x = np.minimum(concurrency / (ttft + (out - 1) * tpot), cap)
        b = 0.5 * b + 0.5 * np.clip(x * (out - 1) * tpot / reps, 1.0, b_max)
    return x, ttft, tpot
