"""Trace confirmation for `infersim frontier --trace`: each family's Pareto-frontier points, first
screened analytically at the trace's mean lengths, replayed through the serving simulator.

A point (a deployment at `batch` sequences per decode replica) is replayed closed loop at
concurrency C = batch x decode replicas: C users, think time 0, sending the trace's requests in
arrival order (arrival times ignored, as `simulate --trace T --concurrency C` does). The replay
uses the trace's first max(REQUESTS_PER_USER x C, MIN_REQUESTS) requests (all of them when it is
shorter): every user sends several requests, and the replay's cost stays bounded so that a whole
frontier keeps to its time budget. A trace with fewer requests than C never holds C sequences in
flight: such a point is marked `underloaded` (its figures are that burst's, not a steady state).
The engine is the deployment's (`engine_of`), its max batch raised to `batch` where lower, so the
replay may hold the batch the screen assumed (the KV cache still limits it: preemption).

Figures from the replay: tok/s per user = 1 / median TPOT; output tok/s while every user still had
a request to send (`sending_window_tok_s`: the drain after the last request is sent would dilute a
short replay's rate; the whole run's where every request is sent at once); TTFT p50 and p99; tok/s
per MW (rated: the plan's power; facility: economics' utilisation-dependent draw x PUE) and cost
per million output tokens (economics, capex), both at that output rate and at the replicas'
utilisation over the whole replay (the drain included, which likely understates the window's
draw). The simulator does not split an aggregated replica's time into prefill and decode, so
confirmed points charge all the hardware to output tokens in every family (P/D too, so that
families compare alike); the analytical twins kept alongside are costed the same way (the
screen's rows in the store keep its split, prefill's share charged to input tokens).

At most `max_per_family` points of a family's frontier are replayed (evenly spread over tok/s per
user, both ends kept); the others are counted and left out of the confirmed fronts.
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from infersim.errors import InputError, shown

REQUESTS_PER_USER = 4     # trace requests replayed per closed-loop user (the prefix's length)
MIN_REQUESTS = 200        # ... and at least this many, so a small concurrency still sees a sample
MAX_SIMULATED_PER_FAMILY = 16
POOL_MIN_TASKS = 8      # fewer replays than this run in this process: starting workers costs ~1 s each
EVALUATION = "trace-simulation"


@dataclass
class TraceWorkload:
    """A trace for the frontier: its file `name` (the store's `trace` column), its mean input and
    output lengths rounded (the screen's workload) and the path it was read from."""
    name: str
    path: Path
    requests: int
    input_len: int
    output_len: int

    def body(self) -> dict:
        return {"input_len": self.input_len, "output_len": self.output_len, "trace": self.name}


def load_trace(trace: str | Path) -> TraceWorkload:
    """The trace named as `simulate --trace` takes it (a path, or a bare name of a shipped trace),
    with its mean lengths as a sweep's trace workload computes them (sweep.spec.trace_mean_lengths),
    the file read once."""
    from infersim.inputs import os_problem, path_kind
    from infersim.sweep.spec import trace_mean_lengths
    from infersim.workload.traces import read_trace, resolve_trace_path
    if path_kind(trace, "--trace") == "dir":
        raise InputError(f"--trace '{shown(trace)}' is a directory; give a trace file (.csv or .jsonl) inside it")
    try:
        path = resolve_trace_path(trace)
        reqs = read_trace(path)
    except (OSError, UnicodeDecodeError) as e:
        why = os_problem(e) if isinstance(e, OSError) else "not UTF-8 text"
        raise InputError(f"--trace '{shown(trace)}': cannot read the trace ({why}); check the path and that it is "
                         "a text file") from None
    return TraceWorkload(path.name, path, len(reqs), *trace_mean_lengths(reqs))


def pick(front: list, most: Optional[int]) -> list:
    """At most `most` points of `front` (sorted by tok/s per user), evenly spread, ends kept."""
    pts = sorted(front, key=lambda p: p.tok_s_per_user)
    if most is None or len(pts) <= most:
        return pts
    if most == 1:
        return [pts[-1]]
    idx = sorted({round(i * (len(pts) - 1) / (most - 1)) for i in range(most)})
    return [pts[i] for i in idx]


class Confirmer:
    """Replays points of one trace; the trace prefixes are read once per length."""

    def __init__(self, trace: TraceWorkload, catalog, prices, power_basis: str):
        self.trace, self.catalog, self.prices, self.basis = trace, catalog, prices, power_basis
        self._prefixes: dict[int, object] = {}

    def _prefix(self, n: int):
        from infersim.workload.traces import read_trace
        if n not in self._prefixes:
            self._prefixes[n] = read_trace(self.trace.path, max_requests=n if n < self.trace.requests else None)
        return self._prefixes[n]

    def figures(self, plan, batch: int) -> dict:
        """The replay of `plan` at `batch` sequences per decode replica: what it ran (`concurrency`,
        `requests`, `underloaded`, `wall_s`, `cpu_s`) and, when it completed a request with a TPOT (`ok`),
        the simulated figures (see the module docstring)."""
        from infersim.deployments.run import engine_of, simulate_plan
        from infersim.economics import plan_economics, throughput_of_simulation
        from infersim.workload.synthetic import ClosedLoop
        c = batch * plan.decode_pool.replicas
        n = min(self.trace.requests, max(REQUESTS_PER_USER * c, MIN_REQUESTS))
        engine = engine_of(plan)
        engine = replace(engine, max_batch=max(engine.max_batch, batch))
        start, cpu = time.perf_counter(), time.process_time()
        res = simulate_plan(plan, ClosedLoop(c, self._prefix(n)), engine=engine)
        s = res.summary
        ran = {"concurrency": c, "requests": n, "underloaded": n < c, "wall_s": time.perf_counter() - start,
               "cpu_s": time.process_time() - cpu}
        tpot = s["tpot_s"]["p50"]
        if not tpot or not s.get("output_tok_s"):
            return {**ran, "ok": False}
        steady = sending_window_tok_s(res.records)
        if steady is not None:  # the whole run's rates, scaled to the sending window's output rate
            k = steady / s["output_tok_s"]
            s = {**s, "output_tok_s": steady, "input_tok_s": s["input_tok_s"] * k,
                 "output_tok_s_per_mw": None if s.get("output_tok_s_per_mw") is None else s["output_tok_s_per_mw"] * k}
        ran["whole_run_output_tok_s"] = res.summary["output_tok_s"]
        thr = replace(throughput_of_simulation(s, plan), prefill_share=0.0)  # all hardware to output (docstring)
        try:
            econ = plan_economics(plan, thr, self.catalog, self.prices, "capex")
        except InputError:
            econ = None
        per_mw = s.get("output_tok_s_per_mw") if self.basis == "rated" else (
            econ.output_tok_s_per_facility_mw if econ is not None else None)
        return {**ran, "ok": True, "tok_s_per_user": 1.0 / tpot, "output_tok_s": s["output_tok_s"],
                "ttft_s": s["ttft_s"]["p50"], "ttft_p99_s": s["ttft_s"]["p99"], "tpot_s": tpot, "tok_s_per_mw": per_mw,
                "cost_per_mtok_usd": econ.cost_per_mtok_output_usd if econ is not None else None,
                "utilisation": thr.utilisation,
                # the store's columns: tok/s per MW of rated power whatever the basis (its schema)
                "rated_tok_s_per_mw": s.get("output_tok_s_per_mw"), "power_w": s.get("power_w"),
                "output_tok_per_usd": econ.output_tok_per_usd if econ is not None else None}


def sending_window_tok_s(records) -> Optional[float]:
    """Output tokens/s while every closed-loop user still had a request to send: from t = 0 to the
    last request's send time T, each request's tokens counted from its first token (1) and spread
    evenly up to its completion. After T users run out of requests and the deployment drains at a
    falling concurrency; a short replay's whole-run rate is mostly that drain (DeepSeek-V3 on VR
    NVL72 at 36 users: 3.0k tok/s over 200 requests, 5.1k over 360, against 6.4k and 6.8k in the
    window). None when T is 0 (every request sent at once: an underloaded replay)."""
    import numpy as np
    sent = records.arrival_s
    t_end = float(np.nanmax(sent)) if len(sent) else 0.0
    if not t_end > 0:
        return None
    first, done, out = records.first_token_s, records.completion_s, records.output_tokens.astype(float)
    span = np.where(done > first, done - first, np.inf)
    share = np.clip((t_end - first) / span, 0.0, 1.0)
    tokens = np.where(first <= t_end, 1.0 + (out - 1.0) * np.nan_to_num(share, nan=0.0), 0.0)
    return float(tokens.sum()) / t_end


@functools.lru_cache(maxsize=4)
def _worker_state(trace: tuple, basis: str, model: str):
    """A pool worker's confirmer and model, built on its first task (spawned workers share nothing)."""
    from infersim.calibration.efficiency import load_calibration
    from infersim.catalog.hardware import load_catalog
    from infersim.catalog.models import load_model
    from infersim.economics import load_prices
    catalog = load_catalog()
    return Confirmer(TraceWorkload(*trace), catalog, load_prices(), basis), load_model(model), catalog, \
        load_calibration(None)


def replay_task(task: dict) -> dict:
    """One replay as a pool task (sweep.runner.pool_results calls it with a picklable dict: the
    trace's fields, the power basis, the model, the deployment and the batch)."""
    from infersim.deployments.spec import DeploymentSpec
    from infersim.modes import build_plan
    confirmer, arch, catalog, calibration = _worker_state(tuple(task["trace"]), task["basis"], task["model"])
    spec = DeploymentSpec.model_validate({"name": "frontier", **task["deployment"]})
    return confirmer.figures(build_plan(spec, arch, catalog, calibration), task["batch"])


def replay_all(tasks: list[dict], jobs: int) -> list[dict]:
    """`replay_task` of every task, in order: in this process, or in `jobs` spawned workers (the
    sweep's local pool) when there is enough work to pay for starting them."""
    if jobs <= 1 or len(tasks) < POOL_MIN_TASKS:
        return [replay_task(t) for t in tasks]
    from infersim.sweep.report import SweepReport
    from infersim.sweep.runner import pool_results
    out: dict[int, dict] = {}
    chunks = [[(i, t)] for i, t in enumerate(tasks)]
    for rows in pool_results(replay_task, chunks, SweepReport(total=len(tasks)), jobs):
        out.update(rows)
    return [out[i] for i in range(len(tasks))]


def task_of(point, trace: TraceWorkload, basis: str) -> dict:
    return {"trace": [trace.name, str(trace.path), trace.requests, trace.input_len, trace.output_len],
            "basis": basis, "model": point.body["model"], "deployment": point.body["deployment"],
            "batch": point.batch}


def store_body(point, trace: TraceWorkload, figures: dict) -> dict:
    """The configuration a confirmed point's row is keyed by: the screened one's model, deployment
    and workload, at the replay's closed-loop concurrency, marked as a trace simulation of the
    trace's first `requests` requests (so its config_id never collides with an analytical row)."""
    body = point.body
    return {"model": body["model"], "deployment": body["deployment"], "workload": trace.body(),
            "load": {"kind": "concurrency", "value": figures["concurrency"]},
            "evaluation": {"method": EVALUATION, "requests": figures["requests"], "batch": point.batch}}
