"""`simulate`: replay a workload through replicas of a deployment (typed API under the CLI).

Aggregated: `dep.par.replicas` replicas each prefill and decode. Disaggregated (`decode` given):
`dep` is the prefill pool and `decode` the decode pool (possibly another chip); a request's KV
cache crosses the link between them after its prefill (timed with the cost model's alpha-beta
link model, FIFO per decode replica), then waits for room in a decode replica's KV cache.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersim.costmodel.execution import collective_time
from infersim.costmodel.memory import kv_bytes_per_seq
from infersim.costmodel.afd import AFDDeployment, AFDStepCost
from infersim.costmodel.step import StepCost
from infersim.mapping.deployment import Deployment
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


def _pool(dep: Deployment, role: str, first_index: int, cfg: EngineConfig, reqs: Requests, sim: Simulation,
          cost=None):
    """Replicas of `dep` (its memory fit sizes the KV cache); `cost` replaces its step cost (AFD,
    speculative decoding)."""
    cost = cost or StepCost(dep)
    max_ctx = int(np.max(reqs.input_tokens + reqs.output_tokens))
    return [Replica(first_index + i, role, cost, kv_cache_for(dep, cfg, max_ctx, reqs.prefix_block_tokens), cfg, sim)
            for i in range(dep.par.replicas)]


def _transfer_link(prefill: Deployment, decode: Deployment):
    """Pools that fit one scale-up domain together (e.g. prefill and decode replicas of one NVL72)
    move KV caches over it; otherwise over the scale-out network."""
    together = prefill.n_chips + decode.n_chips <= decode.system.scale_up_domain and prefill.system.chip == decode.system.chip
    return (decode.scale_up if together and decode.scale_up is not None else None) or decode.scale_out or decode.scale_up


def simulate(workload: Requests | ClosedLoop, dep: Deployment, *, decode: Deployment | AFDDeployment | None = None,
             engine: EngineConfig | None = None, router: str = "least-outstanding", slo: SLO | None = None,
             progress=None, debug: bool = False, step_cost=None) -> SimResult:
    """Run the workload to completion and return per-request records and the summary.
    `decode` may be an AFD deployment (attention replicas on GPUs with their LPU FFN pools);
    `step_cost` replaces the serving pool's step cost (speculative decoding)."""
    cfg = engine or EngineConfig()
    afd = decode if isinstance(decode, AFDDeployment) else None
    if afd is not None:
        decode = afd.attention
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

    transfer = None
    if decode is not None:
        link = _transfer_link(dep, decode)
        if link is None:
            raise InputError(f"{decode.system.name} has no link to move KV caches between the prefill and decode pools; "
                             "pick a system with a scale-out link")
        lanes = min(dep.chips_per_replica, decode.chips_per_replica)  # each chip sends its own shard
        inp_arr = reqs.input_tokens

        def seconds(rid: int) -> float:
            return float(collective_time(link, decode.eff, 2, kv_bytes_per_seq(dep, float(inp_arr[rid])) / lanes,
                                         1.0, "p2p"))
        transfer = seconds
    sim = Simulation(state, [], router, transfer, closed, progress, debug)
    if decode is None:
        pools = [_pool(dep, "both", 0, cfg, reqs, sim, cost=step_cost)]
        _check_fits(reqs, dep, pools[0][0], "serving")
    else:
        pre = _pool(dep, "prefill", 0, cfg, reqs, sim)
        dec = _pool(decode, "decode", dep.par.replicas, cfg, reqs, sim,
                    cost=AFDStepCost(afd) if afd is not None else None)
        _check_fits(reqs, dep, pre[0], "prefill")
        _check_fits(reqs, decode, dec[0], "decode")
        pools = [pre, dec]
    sim.pools = pools
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
    queued = sum(len(r.waiting) for r in replicas)
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
    return SimResult(records, summary, sim.itl)
