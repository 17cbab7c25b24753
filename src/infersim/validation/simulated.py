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
- server: SERVER_REQUESTS Poisson arrivals per replica at the row's rate / replicas; throughput and
  latencies are measured between the arrival of request SERVER_WARMUP x n and the last arrival
  (the warm-up and the drain left out: an MLPerf server run lasts >= 10 minutes, making both small).
- offline on a dataset's lengths (MLPerf, >= 10-minute runs): throughput until the last request
  starts (the drain of the longest requests left out; fixed-length rows keep tokens / makespan,
  as trtllm-bench reports a finite run).
- a row measured on a dataset (MLPerf) replays its per-sample lengths (workload/datasets.py): a
  seeded permutation of the samples (SEED), cycled, outputs rescaled to the row's mean.
- concurrency: each replica serves concurrency / replicas closed-loop clients for
  CLOSED_LOOP_ROUNDS requests each; throughput and latencies are measured in the steady window
  between the first and last round (the ramp-up and drain are left out).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from infersim.calibration.efficiency import Efficiency
from infersim.mapping.deployment import Deployment
from infersim.serving.config import EngineConfig
from infersim.serving.simulate import simulate
from infersim.validation.scenarios import ENGINE_MAX_BATCH, RowPlan, predict_layout
from infersim.workload.datasets import LengthMix
from infersim.workload.synthetic import closed_loop, poisson

SIMULATED_SCENARIOS = ("offline", "server", "concurrency")
OFFLINE_WAVES = 3
SERVER_REQUESTS = 2000
CLOSED_LOOP_ROUNDS = 10
SERVER_WARMUP = 0.25
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


@dataclass(frozen=True)
class SimulationJob:
    """One serving simulation a row needs: a replica of the chosen layout, the engine and the
    load on that replica. Rows (and in-sample / held-out predictions) asking for equal jobs share
    one run: the simulator is deterministic."""

    replica: Deployment          # one replica of the layout
    replicas: int                # of the row's deployment (the load splits evenly across them)
    engine: EngineConfig
    scenario: str
    input_len: int
    output_len: int
    requests: int                # offline / server: requests per replica; concurrency: all of them
    rate_per_s: float = 0.0      # server: Poisson arrivals per second per replica
    users: int = 0               # concurrency: closed-loop clients per replica
    lengths: LengthMix | None = None  # replay this dataset's lengths (input_len / output_len are its means)

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens the run prefills: its cost rises with them (prefill steps interrupt the
        closed-form decode runs), so the longest jobs are started first."""
        return self.requests * self.input_len

    def request_lengths(self):
        """(input, output) per request: the fixed lengths, or the dataset's replayed (seeded)."""
        if self.lengths is None:
            return self.input_len, self.output_len
        return self.lengths.sample(self.requests, SEED)


def simulation_job(plan: RowPlan, eff: Efficiency | None = None) -> SimulationJob:
    """The simulation predicting the row (eff overrides the deployment's efficiency)."""
    r = plan.row
    dep = _best_layout(plan, eff)
    reps = dep.par.replicas
    one = replace(dep, par=replace(dep.par, replicas=1))
    cfg, _ = engine_for(r.software)
    job = SimulationJob(one, reps, cfg, r.scenario, plan.input_len, plan.output_len, 0, lengths=plan.lengths)
    if r.scenario == "offline":
        return replace(job, requests=OFFLINE_WAVES * cfg.max_batch)
    if r.scenario == "server":
        return replace(job, requests=SERVER_REQUESTS, rate_per_s=(r.request_rate or 0.0) / reps)
    users = max(1, int(round((r.concurrency or 1) / reps)))
    return replace(job, requests=users * CLOSED_LOOP_ROUNDS, users=users)


def run_job(job: SimulationJob) -> tuple[float, float, float]:
    """(output tok/s of one replica, mean TTFT s, mean TPOT s) simulated."""
    inp, out = job.request_lengths()
    if job.scenario == "concurrency":
        res = simulate(closed_loop(job.users, job.requests, inp, out), job.replica, engine=job.engine)
        return _steady_window(res.records, job.users)
    if job.scenario == "offline":
        res = simulate(closed_loop(job.requests, job.requests, inp, out), job.replica, engine=job.engine)
        if job.lengths is not None:
            return _windowed(res.records, 0.0, float(np.nanmax(res.records.first_token_s)))
        s = res.summary
        return s["output_tok_s"], s["ttft_s"]["mean"], s["tpot_s"]["mean"]
    res = simulate(poisson(job.rate_per_s, job.requests, inp, out, SEED), job.replica, engine=job.engine)
    arrival = res.records.arrival_s
    return _windowed(res.records, float(arrival[int(SERVER_WARMUP * len(arrival))]), float(arrival[-1]))


def row_value(plan: RowPlan, job: SimulationJob, simulated: tuple[float, float, float]) -> float:
    """The row's metric from its job's simulated (replica tok/s, TTFT s, TPOT s)."""
    thr, ttft, tpot = simulated
    reps = job.replicas
    value = {"output_tok_s": thr * reps, "output_tok_s_per_chip": thr * reps / plan.n_chips,
             "tok_s_per_user": 1.0 / tpot, "ttft_ms": ttft * 1e3, "tpot_ms": tpot * 1e3, "itl_ms": tpot * 1e3}
    return float(value[plan.row.metric])


def simulate_row(plan: RowPlan, eff: Efficiency | None = None) -> float:
    """The row's metric predicted by simulation (eff overrides the deployment's efficiency)."""
    job = simulation_job(plan, eff)
    return row_value(plan, job, run_job(job))


def _windowed(records, t0: float, t1: float) -> tuple[float, float, float]:
    """(output tok/s generated between t0 and t1, mean TTFT s, mean TPOT s of the requests arriving
    in [t0, t1], or of all when none does). A request's first token counts at its first-token time,
    the rest evenly spread until its completion (decode steps are near-uniform within a request)."""
    first, done, out = records.first_token_s, records.completion_s, records.output_tokens.astype(float)

    def generated(t: float) -> float:
        started = first <= t
        frac = np.clip((t - first) / np.maximum(done - first, 1e-12), 0.0, 1.0)
        return float(np.sum(np.where(started, 1.0 + (out - 1.0) * frac, 0.0)))
    inside = (records.arrival_s >= t0) & (records.arrival_s <= t1)
    if not np.any(inside) or t1 <= t0:
        inside = np.ones(len(first), dtype=bool)
    if t1 <= t0:
        t0, t1 = 0.0, float(np.nanmax(done))
    with np.errstate(invalid="ignore"):
        thr = (generated(t1) - generated(t0)) / (t1 - t0)
    return thr, float(np.nanmean(records.ttft_s()[inside])), float(np.nanmean(records.tpot_s()[inside]))


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
