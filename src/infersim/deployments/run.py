"""Simulate a plan: every mode through the one serving simulator.

The plan's serving pools (one `both` pool, or a `prefill` and a `decode` pool joined by the plan's
KV link) run with their step timers; the mode's summary figures are added to the result. With SLO
routing a seeded share of requests (the premium class) goes to the premium plan, the rest to the
main one; both run side by side and the summary reports each class and the whole.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from infersim.deployments.plan import Plan
from infersim.serving.config import EngineConfig
from infersim.serving.metrics import SLO, LatencyHistogram, RequestRecords, summarize
from infersim.serving.simulate import SimResult, simulate
from infersim.workload.synthetic import ClosedLoop
from infersim.workload.traces import Requests

ROUTING_SEED = 0


def engine_of(plan: Plan) -> EngineConfig:
    e = plan.spec.engine
    return EngineConfig(max_batch=e.max_batch, max_tokens_per_step=e.max_tokens_per_step, chunk_tokens=e.chunk_tokens,
                        block_tokens=e.block_tokens, prefix_caching=e.prefix_caching, admission=e.admission,
                        queue_order=e.queue_order, preemption=e.preemption)


def _run_one(plan: Plan, workload, engine: EngineConfig, router: str, slo, progress, debug) -> SimResult:
    res = simulate(workload, plan.serving_pools(), kv_link=plan.kv_link, engine=engine, router=router, slo=slo,
                   progress=progress, debug=debug)
    res.summary.update(plan.summary)
    return res


def _subset(reqs: Requests, mask: np.ndarray, label: str) -> Requests:
    ids = None if reqs.prefix_hash_ids is None else [h for h, k in zip(reqs.prefix_hash_ids, mask) if k]
    return replace(reqs, arrival_s=reqs.arrival_s[mask], input_tokens=reqs.input_tokens[mask],
                   output_tokens=reqs.output_tokens[mask],
                   session_id=None if reqs.session_id is None else reqs.session_id[mask], prefix_hash_ids=ids,
                   priority=None if reqs.priority is None else reqs.priority[mask],
                   source=f"{reqs.source} [{label}]")


def simulate_plan(plan: Plan, workload: Requests | ClosedLoop, *, engine: EngineConfig | None = None,
                  router: str | None = None, slo: SLO | None = None, progress=None, debug: bool = False) -> SimResult:
    engine = engine or engine_of(plan)
    router = router or plan.spec.engine.router
    if plan.premium is None:
        res = _run_one(plan, workload, engine, router, slo, progress, debug)
        res.summary["racks"], res.summary["power_w"] = dict(plan.racks), plan.power_w
        _per_rack(res.summary, plan)
        return res
    closed = workload.concurrency if isinstance(workload, ClosedLoop) else None
    reqs = workload.requests if isinstance(workload, ClosedLoop) else workload
    frac = plan.spec.routing.premium_fraction
    premium = np.random.default_rng(ROUTING_SEED).random(len(reqs)) < frac
    parts, results = {}, {}
    for label, mask, p in (("standard", ~premium, plan), ("premium", premium, plan.premium)):
        if not mask.any():
            continue
        sub = _subset(reqs, mask, label)
        wl = ClosedLoop(max(1, round(closed * mask.mean())), sub) if closed else sub
        results[label] = _run_one(p, wl, engine, router, slo, progress, debug)
        parts[label] = np.flatnonzero(mask)
    return _merge(plan, reqs, parts, results, slo)


def _merge(plan: Plan, reqs: Requests, parts: dict, results: dict, slo) -> SimResult:
    """One record per request of the whole trace (ids in trace order; premium replicas numbered
    after the standard ones) and a summary of the whole plus one per class."""
    n = len(reqs)
    cols = {c: np.full(n, np.nan) for c in ("arrival_s", "first_token_s", "completion_s")}
    ints = {c: np.full(n, -1, dtype=np.int64) for c in ("replica", "prefill_replica")}
    cached = np.zeros(n, dtype=np.int64)
    pre = np.zeros(n, dtype=np.int64)
    offset = 0
    itl = LatencyHistogram()
    classes = {}
    class_plans = {"standard": plan, "premium": plan.premium}
    for label, idx in parts.items():
        r = results[label].records
        for c in cols:
            cols[c][idx] = getattr(r, c)
        for c in ints:
            v = getattr(r, c)
            ints[c][idx] = np.where(v >= 0, v + offset, -1)
        cached[idx], pre[idx] = r.cached_tokens, r.preemptions
        # after every replica the class has, used or not (a light load may leave the last ones idle)
        reps = max((p.replicas for p in class_plans[label].pools), default=0)
        offset = int(max(offset + reps, np.max(ints["replica"][idx]) + 1, np.max(ints["prefill_replica"][idx]) + 1))
        itl.merge(results[label].itl)
        classes[label] = results[label].summary
    records = RequestRecords(request_id=np.arange(n, dtype=np.int64), input_tokens=reqs.input_tokens.astype(np.int64),
                             output_tokens=reqs.output_tokens.astype(np.int64), cached_tokens=cached, preemptions=pre,
                             **cols, **ints)
    done = cols["completion_s"]
    duration = float(np.nanmax(done)) if np.any(~np.isnan(done)) else 1e-12
    extra = {"classes": classes, "routing": {"premium_fraction": plan.spec.routing.premium_fraction,
                                             "premium_path": plan.spec.routing.premium_path, "seed": ROUTING_SEED},
             "racks": dict(plan.racks), "power_w": plan.power_w}
    summary = summarize(records, duration_s=duration, itl=itl, slo=slo, extra=extra)
    _per_rack(summary, plan)
    return SimResult(records, summary)


def _per_rack(summary: dict, plan: Plan) -> None:
    tok = summary.get("output_tok_s") or 0.0
    summary["output_tok_s_per_rack"] = tok / plan.total_racks if plan.total_racks else None
    summary["output_tok_s_per_mw"] = tok / (plan.power_w / 1e6) if plan.power_w else None
