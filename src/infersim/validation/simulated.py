"""Predict serving measurements (offline, server, concurrency) by running the serving simulator.

The published row gives a deployment (chips, precision, lengths) and a load; we simulate one
replica of the best layout and scale by the number of replicas (replicas are independent and
the load splits evenly across them; a random split of a Poisson stream is Poisson).

Assumptions, each also listed on the row:
- Engine settings follow the row's software: TensorRT-LLM (and NIM, which runs it) batches up to
  2048 sequences and reserves a request's whole KV cache at admission (GUARANTEED_NO_EVICT);
  vLLM and others batch up to 256 and admit eagerly (preempting when blocks run out). Both take
  8192 tokens per step with chunked prefill.
- The layout (tp x ep split) is the one the analytical model rates best for the row's objective;
  simulating every candidate would multiply the cost for little change.
- offline: OFFLINE_WAVES x max_batch identical requests all queued at t = 0; throughput = output
  tokens / makespan (as a throughput benchmark reports it).
- server: SERVER_REQUESTS Poisson arrivals per replica at the row's rate / replicas.
- concurrency: each replica serves concurrency / replicas closed-loop clients for
  CLOSED_LOOP_ROUNDS requests each; throughput and latencies are measured in the steady window
  between the first and last round (the ramp-up and drain are left out).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from infersim.calibration.efficiency import Efficiency
from infersim.mapping.deployment import Deployment, Parallelism
from infersim.serving.config import EngineConfig
from infersim.serving.simulate import simulate
from infersim.validation.scenarios import ENGINE_MAX_BATCH, RowPlan, predict_layout
from infersim.workload.synthetic import ClosedLoop, closed_loop, poisson

SIMULATED_SCENARIOS = ("offline", "server", "concurrency")
OFFLINE_WAVES = 3
SERVER_REQUESTS = 2000
CLOSED_LOOP_ROUNDS = 10
SEED = 0


def engine_for(software: str) -> tuple[EngineConfig, str]:
    """Engine settings for the row's serving software, and the assumption as text."""
    s = software.lower()
    if "tensorrt" in s or "nim" in s:
        cfg = EngineConfig(max_batch=ENGINE_MAX_BATCH, admission="reserve")
        return cfg, (f"engine: TensorRT-LLM defaults (max batch {cfg.max_batch}, KV reserved at admission, "
                     f"{cfg.max_tokens_per_step} tokens per step)")
    cfg = EngineConfig(admission="eager")  # EngineConfig's defaults are vLLM v1's
    return cfg, (f"engine: vLLM defaults (max batch {cfg.max_batch}, eager admission with preemption, "
                 f"{cfg.max_tokens_per_step} tokens per step)")


def _best_layout(plan: RowPlan, eff: Efficiency | None) -> Deployment:
    best, best_obj = None, -np.inf
    for dep in plan.layouts:
        d = replace(dep, eff=eff) if eff is not None else dep
        with np.errstate(all="ignore"):
            _, obj = predict_layout(plan, d)
        if best is None or float(obj) > best_obj:
            best, best_obj = d, float(obj)
    return best


def simulate_row(plan: RowPlan, eff: Efficiency | None = None) -> float:
    """The row's metric predicted by simulation (eff overrides the deployment's efficiency)."""
    r, inp, out = plan.row, plan.input_len, plan.output_len
    dep = _best_layout(plan, eff)
    reps = dep.par.replicas
    one = replace(dep, par=Parallelism(tp=dep.par.tp, pp=dep.par.pp, ep=dep.par.ep, replicas=1))
    cfg, _ = engine_for(r.software)
    if r.scenario in ("offline", "server"):
        if r.scenario == "offline":
            n = OFFLINE_WAVES * cfg.max_batch
            res = simulate(closed_loop(n, n, inp, out), one, engine=cfg)
        else:
            res = simulate(poisson((r.request_rate or 0.0) / reps, SERVER_REQUESTS, inp, out, SEED), one, engine=cfg)
        s = res.summary
        thr, ttft, tpot = s["output_tok_s"], s["ttft_s"]["mean"], s["tpot_s"]["mean"]
    else:
        users = max(1, int(round((r.concurrency or 1) / reps)))
        wl: ClosedLoop = closed_loop(users, users * CLOSED_LOOP_ROUNDS, inp, out)
        res = simulate(wl, one, engine=cfg)
        thr, ttft, tpot = _steady_window(res.records, users)
    value = {"output_tok_s": thr * reps, "output_tok_s_per_chip": thr * reps / plan.n_chips,
             "tok_s_per_user": 1.0 / tpot, "ttft_ms": ttft * 1e3, "tpot_ms": tpot * 1e3, "itl_ms": tpot * 1e3}
    return float(value[r.metric])


def _steady_window(records, users: int) -> tuple[float, float, float]:
    """(output tok/s, mean TTFT s, mean TPOT s) of requests completing between the first and the
    last round of a closed loop, leaving out ramp-up and drain."""
    done = np.sort(records.completion_s)
    n = len(done)
    lo, hi = done[min(users, n - 1)], done[max(n - users - 1, 0)]
    inside = (records.completion_s > lo) & (records.completion_s <= hi)
    if hi <= lo or not np.any(inside):
        inside = np.ones(n, dtype=bool)
        lo, hi = 0.0, float(done[-1])
    thr = float(np.sum(records.output_tokens[inside])) / (hi - lo)
    ttft = float(np.mean(records.ttft_s()[inside]))
    tpot = float(np.nanmean(records.tpot_s()[inside]))
    return thr, ttft, tpot
