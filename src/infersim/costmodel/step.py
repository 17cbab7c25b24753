"""Time of one engine step of one replica, split into compute / memory / interconnect / overhead.

This is the single place where work (costmodel.work), execution models (costmodel.execution) and
the parallel layout meet; the estimate, validation and (later) the simulator all call `step_time`.
"""
from __future__ import annotations

import numpy as np

from infersim.costmodel.execution import Breakdown, collective_time, dataflow_ops_time, gpu_ops_time
from infersim.costmodel.work import Batch, Sharding, comm_volumes, model_ops
from infersim.deployment import Deployment


def step_time(dep: Deployment, seqs, new, past, span=1.0) -> Breakdown:
    """One step: `seqs` sequences each adding `new` tokens after `past` cached ones (arrays
    broadcast). For decode (new == 1) `span` averages the step over that many consecutive steps."""
    seqs = np.asarray(seqs, dtype=float)
    if dep.dataflow:
        return _dataflow_step(dep, seqs, new, past, span)
    return _gpu_step(dep, seqs, new, past, span)


def _gpu_step(dep: Deployment, seqs, new, past, span) -> Breakdown:
    par, eff = dep.par, dep.eff
    sh = Sharding(tp=par.tp, ep=par.ep, pp=par.pp)
    # With pp stages the batch is split into pp micro-batches that fill the pipeline; a token's
    # step is pp stage-times of one micro-batch.
    micro = Batch(seqs=seqs / par.pp, new=np.asarray(new, dtype=float), past=np.asarray(past, dtype=float), span=span)
    ops = model_ops(dep.model, micro, sh, dep.plan)
    stage = gpu_ops_time(ops, dep.chip, dep.plan, eff, layer_frac=1.0 / par.pp)
    vol = comm_volumes(dep.model, micro, sh, dep.plan)
    comm = 0.0 * stage.total
    if par.tp > 1:
        comm = comm + collective_time(dep.link_for(par.tp), eff, par.tp, vol["tp_allreduce_bytes"] / par.pp,
                                      vol["tp_allreduce_count"] / par.pp, "all_reduce")
    if par.ep > 1:
        comm = comm + collective_time(dep.link_for(par.tp * par.ep), eff, par.tp * par.ep,
                                      vol["ep_alltoall_bytes"] / par.pp, vol["ep_alltoall_count"] / par.pp, "all_to_all")
    stage = stage + Breakdown(0 * comm, 0 * comm, comm, 0 * comm)
    total = stage.scaled(par.pp)
    if par.pp > 1:
        link = dep.link_for(dep.chips_per_replica)
        p2p = collective_time(link, eff, 2, vol["pp_bytes"] / (par.pp - 1), 1.0, "p2p") * (par.pp - 1)
        total = total + Breakdown(0 * p2p, 0 * p2p, p2p, 0 * p2p)
    z = 0.0 * total.total
    return total + Breakdown(z, z, z, z + eff.step_s + eff.seq_s * seqs)


def _dataflow_step(dep: Deployment, seqs, new, past, span) -> Breakdown:
    """Per-token latency through the replica's layer pipeline (a whole batch moves as one
    micro-batch): layers in sequence, each on chips_per_replica / n_layers chips."""
    m, eff = dep.model, dep.eff
    n_layers = m.n_layers
    chips_per_layer = dep.chips_per_replica / n_layers
    b = Batch(seqs=seqs, new=np.asarray(new, dtype=float), past=np.asarray(past, dtype=float), span=span)
    ops = model_ops(m, b, Sharding(), dep.plan)
    t = dataflow_ops_time(ops, dep.chip, dep.plan, eff, chips_per_layer, n_layers)
    # Chip-to-chip traffic: the hidden state crosses every chip boundary of the pipeline, and a
    # layer spread over several chips all-reduces its outputs (two blocks per layer).
    link = dep.link_for(dep.chips_per_replica)
    hidden_bytes = seqs * np.asarray(new, dtype=float) * m.hidden * dep.plan.act_bytes
    comm = 0.0 * t.total
    if link is not None and dep.chips_per_replica > 1:
        boundaries = min(dep.chips_per_replica, n_layers) - 1
        comm = comm + collective_time(link, eff, 2, hidden_bytes * boundaries, float(boundaries), "p2p")
        group = int(np.ceil(chips_per_layer))
        if group > 1:
            comm = comm + collective_time(link, eff, group, hidden_bytes * 2 * n_layers, 2.0 * n_layers, "all_reduce")
    return t + Breakdown(0 * comm, 0 * comm, comm, 0 * comm)
