"""`simulate`: replay a workload through the serving pools of a plan (typed API under the CLI).

Pools come from a plan (deployments/plan.py): one `both` pool whose replicas each prefill and
decode, or a `prefill` and a `decode` pool; a request's KV cache then crosses `kv_link` after its
prefill (timed with the cost model's alpha-beta link model, FIFO per decode replica) and waits for
room in a decode replica's KV cache. Each pool's steps are timed by its `StepTimer`; the simulator
never knows which mode built it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersim.catalog.hardware import LinkSpec
from infersim.costmodel.kvtransfer import kv_transfer_seconds
from infersim.deployments.plan import Pool, plain_pool
from infersim.mapping.deployment import Deployment, kv_transfer_link
from infersim.errors import InputError
from infersim.serving.config import ROUTERS, EngineConfig, kv_cache_for
from infersim.serving.engine import RequestState, Simulation
from infersim.serving.metrics import SLO, LatencyHistogram, RequestRecords, summarize
from infersim.serving.replica import Replica
from infersim.workload.synthetic import ClosedLoop
from infersim.workload.traces import Requests


@dataclass
class SimResult:
    records: RequestRecords
    summary: dict
    itl: LatencyHistogram | None = None  # inter-token latencies (for merging results)


def _describe(dep: Deployment) -> dict:
    return {"model": dep.model.name, "system": dep.system.name, "chip": dep.chip.name,
            "replicas": dep.par.replicas, "chips_per_replica": dep.chips_per_replica,
            "parallel": {"tp": dep.par.tp, "pp": dep.par.pp, "ep": dep.par.ep}, "precision": dep.plan.name,
            "calibration": dep.calibration_note}


def _check_fits(reqs: Requests, dep: Deployment, replica: Replica, label: str) -> None:
    context = reqs.input_tokens + reqs.output_tokens
    over = context > dep.model.max_context
    if np.any(over):
        i = int(np.argmax(over))
        raise InputError(f"request {i} needs {int(context[i])} tokens of context (input {int(reqs.input_tokens[i])} + "
                         f"output {int(reqs.output_tokens[i])}) but {dep.model.name} supports {dep.model.max_context}; "
                         f"cap the trace's lengths or pick a longer-context model")
    longest = int(np.argmax(context))
    need = replica.kv.blocks_for(int(context[longest]))
    if need > replica.kv.total:
        raise InputError(f"request {longest} (input {int(reqs.input_tokens[longest])} + output "
                         f"{int(reqs.output_tokens[longest])} tokens) needs {need} KV blocks but a {label} replica of "
                         f"{dep.chip.name} x{dep.chips_per_replica} holds {replica.kv.total} "
                         f"({replica.kv.total * replica.kv.block_tokens} tokens) after the weights; "
                         "use more chips per replica, a lower --precision or --kv-precision, or cap the lengths")


def _replicas(pool: Pool, role: str, first_index: int, cfg: EngineConfig, reqs: Requests, sim: Simulation):
    """Replicas of the pool (its deployment's memory fit sizes each KV cache; its timer times steps)."""
    dep = pool.deployment
    max_ctx = int(np.max(reqs.input_tokens + reqs.output_tokens))
    # a GPU engine with an overlap scheduler composes each step while the previous one runs (replica.py)
    ahead = not dep.dataflow and (dep.engine or default_engine()).overlap
    cfg = cfg.for_deployment(dep)
    return [Replica(first_index + i, role, pool.timer, kv_cache_for(dep, cfg, max_ctx, reqs.prefix_block_tokens), cfg,
                    sim, schedules_ahead=ahead) for i in range(dep.par.replicas)]


def simulate(workload: Requests | ClosedLoop, pools: Deployment | list[Pool], *, decode: Deployment | None = None,
             kv_link: LinkSpec | None = None, engine: EngineConfig | None = None, router: str = "least-outstanding",
             slo: SLO | None = None, progress=None, debug: bool = False) -> SimResult:
    """Run the workload to completion and return per-request records and the summary. `pools` is
    [both] or [prefill, decode]; `kv_link` carries KV caches from the prefill to the decode pool.
    Shorthand: a bare Deployment is one plain pool of it, the prefill pool when a `decode`
    Deployment is given too (then the link defaults to `kv_transfer_link`)."""
    cfg = engine or EngineConfig()
    if isinstance(pools, Deployment):
        if decode is None:
            pools = [plain_pool(pools)]
        else:
            kv_link = kv_link or kv_transfer_link(pools, decode)
            pools = [plain_pool(pools, "prefill"), plain_pool(decode, "decode")]
    entry = pools[0]
    dep = entry.deployment
    decode_pool = pools[1] if len(pools) > 1 else None
    decode = decode_pool.deployment if decode_pool is not None else None
    if router not in ROUTERS:
        raise InputError(f"unknown router '{router}'; choose one of {', '.join(ROUTERS)}")
    closed = workload.concurrency if isinstance(workload, ClosedLoop) else None
    reqs = workload.requests if isinstance(workload, ClosedLoop) else workload
    n = len(reqs)
    if n == 0:
        raise InputError("the workload has no requests; check the trace file or --requests")
    state = RequestState(n)
    state.inp = reqs.input_tokens.tolist()
    state.out = reqs.output_tokens.tolist()
    state.arrival = reqs.arrival_s.astype(float).tolist() if closed is None else [0.0] * n
    if reqs.prefix_hash_ids is not None:
        state.ids = [tuple(h) for h in reqs.prefix_hash_ids]
    if reqs.priority is not None:
        state.priority = np.asarray(reqs.priority, dtype=np.int64).tolist()

    transfer, link = None, kv_link
    if decode is not None:
        if link is None:
            raise InputError(f"no link carries KV caches from the prefill pool ({dep.system.name}) to the decode pool "
                             f"({decode.system.name}); the plan must name one")
        inp_arr = reqs.input_tokens

        def seconds(rid: int) -> float:
            return float(kv_transfer_seconds(dep, decode, link, float(inp_arr[rid])))
        transfer = seconds
    sim = Simulation(state, [], router, transfer, closed, progress, debug)
    if decode is None:
        replica_pools = [_replicas(entry, "both", 0, cfg, reqs, sim)]
        _check_fits(reqs, dep, replica_pools[0][0], "serving")
    else:
        pre = _replicas(entry, "prefill", 0, cfg, reqs, sim)
        dec = _replicas(decode_pool, "decode", dep.par.replicas, cfg, reqs, sim)
        _check_fits(reqs, dep, pre[0], "prefill")
        _check_fits(reqs, decode, dec[0], "decode")
        replica_pools = [pre, dec]
    sim.pools = replica_pools
    pools = replica_pools
    sim.run(n)

    done = np.asarray(state.done)
    records = RequestRecords(
        request_id=np.arange(n, dtype=np.int64), arrival_s=np.asarray(state.arrival, dtype=float),
        first_token_s=np.asarray(state.first, dtype=float), completion_s=done,
        input_tokens=reqs.input_tokens.astype(np.int64), output_tokens=reqs.output_tokens.astype(np.int64),
        replica=np.asarray(state.replica_of, dtype=np.int64), prefill_replica=np.asarray(state.prefill_replica, dtype=np.int64),
        cached_tokens=np.asarray(state.cached, dtype=np.int64), preemptions=np.asarray(state.preemptions, dtype=np.int64))
    duration = max(float(np.nanmax(done)) if np.any(~np.isnan(done)) else 0.0, 1e-12)
    replicas = [r for pool in pools for r in pool]
    running = sum(len(r.running) for r in replicas)
    queued = sum(r.queued for r in replicas)
    hit = sum(state.cached)  # prompt tokens admitted requests found in a prefix cache
    prompt_tokens = float(np.sum(reqs.input_tokens))
    extra = {
        "requests_queued": queued, "requests_running": running, "requests_rejected": 0,
        "preemptions": int(sum(state.preemptions)),
        "prefix_cache_hit_rate": hit / prompt_tokens if prompt_tokens else 0.0,
        "utilisation": float(np.mean([r.busy_s / duration for r in replicas])),
        "kv_occupancy_mean": float(np.mean([r.kv_block_seconds / (duration * max(r.kv.total, 1)) for r in replicas])),
        "kv_occupancy_peak": float(max(r.kv_peak / max(r.kv.total, 1) for r in replicas)),
        "kv_blocks_per_replica": {"prefill" if decode is not None else "serving": pools[0][0].kv.total,
                                  **({"decode": pools[1][0].kv.total} if decode is not None else {})},
        "engine_steps": int(sum(r.steps for r in replicas)), "events": sim.events,
        "kv_transfers": sim.transfers, "kv_transfer_link_busy_s": sim.link_busy_s,
        "kv_transfer_link": link.name if decode is not None else None,
        "engine": {"max_batch": cfg.max_batch, "max_tokens_per_step": cfg.max_tokens_per_step, "chunk_tokens": cfg.chunk,
                   "block_tokens": cfg.block_tokens, "prefix_caching": cfg.prefix_caching, "admission": cfg.admission,
                   "queue_order": cfg.queue_order, "preemption": cfg.preemption, "router": router},
        "deployment": {"prefill" if decode is not None else "serving": _describe(dep),
                       **({"decode": _describe(decode)} if decode is not None else {})},
        "workload": {"source": reqs.source, "requests": n, "closed_loop_concurrency": closed,
                     "assumptions": list(reqs.assumptions)},
    }
    summary = summarize(records, duration_s=duration, itl=sim.itl, slo=slo, extra=extra)
    add_per_gpu(summary, dep.n_chips, decode.n_chips if decode is not None else None)
    return SimResult(records, summary, sim.itl)


def add_per_gpu(summary: dict, entry_gpus: int, decode_gpus: int | None) -> None:
    """Output tokens/s per GPU of all serving pools and, disaggregated, per decode GPU (InferenceX and
    TensorRT-LLM report P/D throughput per decode GPU)."""
    tok_s = summary["output_tok_s"]
    summary["output_tok_s_per_gpu"] = tok_s / (entry_gpus + (decode_gpus or 0))
    summary["output_tok_s_per_decode_gpu"] = tok_s / decode_gpus if decode_gpus else None
