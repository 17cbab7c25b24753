"""Attention-FFN disaggregation (AFD): decode split per layer between a GPU pool and an LPU pool.

The GPUs keep attention (and Mamba mixers), the KV cache / SSM state, embeddings and the LM head;
the LPUs hold every dense FFN and MoE block in SRAM. For each FFN layer of each decode step the
hidden states cross the GPU<->LPU path and come back. `attention_part` / `ffn_part` split a model
so the usual per-op cost model times each side on its own chips.

Step time of one attention replica (a GPU tp x ep group) with its batch split into m micro-batches
(at most one per sequence) that ping-pong (one micro-batch's attention runs while another's FFN runs):
- O = the engine's host work for the step (paid once per step, not per micro-batch);
- A = GPU time of the attention part for one micro-batch (all layers, their kernel launches and the
  step-level kernels, collectives): the FFN side's kernels run on the LPUs, which have none;
- F = LPU latency of one micro-batch through all FFN layers (layer pipeline, incl. per-layer latency);
- X = link time of one micro-batch: 2 crossings per FFN layer, each alpha + bytes / bandwidth;
- G attention replicas share one LPU pool, whose FFN stages each take F / L_ffn per micro-batch.
    m = 1:  T = O + A + F + X                  (no overlap: the strict sum)
    m > 1:  T = O + max(A + F + X, m A, m X_bw, G m F / L_ffn)
With an overlap scheduler (catalog/data/engines.yaml) the host work runs beside the GPU instead:
T = max(the bounds above without O, O).
i.e. one micro-batch's chain is never shortened, and no resource (GPU, link bandwidth, LPU stage)
can do more than its share of work per step. The round trip bounds tokens/s per user whenever
A + F + X is the largest term and X is a large part of it (`afd_bottleneck` says which).
With m = 1 the GPU and link terms never exceed the chain; the LPU term does only when more attention
replicas share a pool than it has FFN layers (G > L_ffn), and then the pool, not the chain, binds.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from infersim.catalog.hardware import LinkSpec
from infersim.catalog.models import LayerSpec, ModelArch
from infersim.costmodel.execution import collective_time
from infersim.costmodel.step import StepCost
from infersim.costmodel.timer import DecodeStep, ShapeTimer
from infersim.costmodel.work import StepShape
from infersim.mapping.deployment import Deployment


def attention_part(arch: ModelArch) -> ModelArch:
    """The GPU side: every layer without its FFN (layers left empty are dropped)."""
    layers = tuple(LayerSpec(l.mixer, None, l.n_norms) for l in arch.layers if l.mixer is not None)
    return replace(arch, name=f"{arch.name}[attention]", layers=layers, published_total_params=None,
                   published_active_params=None)


def ffn_part(arch: ModelArch) -> ModelArch:
    """The LPU side: only the FFN / MoE blocks (no embeddings, LM head or mixers)."""
    layers = tuple(LayerSpec(None, l.ffn, 0) for l in arch.layers if l.ffn is not None)
    return replace(arch, name=f"{arch.name}[ffn]", layers=layers, vocab=0, tie_embeddings=True, final_norm_vectors=0,
                   published_total_params=None, published_active_params=None)


def n_ffn_layers(arch: ModelArch) -> int:
    return arch.n_moe_layers + arch.n_dense_ffn_layers


@dataclass(frozen=True)
class AFDDeployment:
    """attention: GPU deployment of attention_part(model), `replicas` attention replicas in all;
    ffn: LPU dataflow deployment of ffn_part(model), one pool per unit (chips_per_replica LPUs);
    link: the GPU<->LPU path; units: GPU racks (each with its own LPU pool); micro_batches: m."""

    model: ModelArch
    attention: Deployment
    ffn: Deployment
    link: LinkSpec
    units: int
    micro_batches: int

    @property
    def replicas_per_unit(self) -> int:
        """Attention replicas sharing one LPU pool (the busiest pool's share when uneven)."""
        return max(1, math.ceil(self.attention.par.replicas / self.units))

    @property
    def link_lanes(self) -> int:
        """Parallel GPU<->LPU endpoints a micro-batch's activations cross on: each GPU of the tp
        group sends its slice, to as many LPUs as hold one FFN layer (assumption)."""
        lpus_per_layer = max(1, int(self.ffn.chips_per_replica // max(n_ffn_layers(self.model), 1)))
        return max(1, min(self.attention.par.tp, lpus_per_layer))


class AFDStepCost(ShapeTimer):
    """Step time of one attention replica under AFD: a `StepTimer`, so the serving simulator and
    the estimate run it like any other."""

    def __init__(self, afd: AFDDeployment):
        self.afd = afd
        self.gpu = StepCost(afd.attention, host=False, sides=("attention", "step"))
        self._attention = StepCost(afd.attention)
        self.host = self._attention.overhead  # the engine's host work, once per step
        self.lpu = StepCost(afd.ffn)
        self.windows = self.gpu.windows
        self.n_ffn = n_ffn_layers(afd.model)
        self.act_bytes = afd.model.hidden * afd.attention.plan.act_bytes

    def micro_batches(self, shape: StepShape) -> np.ndarray:
        """Micro-batches in flight: as configured, but never more than the sequences in the step."""
        return np.maximum(1.0, np.minimum(float(self.afd.micro_batches), np.floor(shape.seqs)))

    def parts(self, shape: StepShape) -> dict[str, np.ndarray]:
        """Seconds: attention_s (GPU, one micro-batch, without the engine's host work), overhead_s
        (the host work, paid once per step), ffn_s, link_s and link_bw_s (one micro-batch), and m."""
        m = self.micro_batches(shape)
        micro = shape.scaled(1.0 / m)
        overhead = self.host.parts(*self._attention.rank_step(shape), 0.0)["host"] + 0.0 * m
        a = self.gpu.total(micro)
        f = self.lpu.total(micro)
        crossing_bytes = micro.tokens * self.act_bytes / self.afd.link_lanes
        count = 2.0 * self.n_ffn
        x = collective_time(self.afd.link, self.afd.ffn.eff, 2, crossing_bytes * count, count, "p2p")
        x_bw = collective_time(self.afd.link, self.afd.ffn.eff, 2, crossing_bytes * count, count, "p2p",
                               with_latency=False)
        return {"attention_s": a, "overhead_s": overhead, "ffn_s": f, "link_s": x, "link_bw_s": x_bw, "m": m}

    def bounds(self, shape: StepShape) -> dict[str, np.ndarray]:
        """Each lower bound on the step time (seconds); the engine's host work is paid once, beside
        the GPU with an overlap scheduler (its own bound, 'host') and before it without."""
        p = self.parts(shape)
        m, o = p["m"], p["overhead_s"]
        g = self.afd.replicas_per_unit
        overlap = self.host.engine.overlap
        before = 0.0 * o if overlap else o
        out = {"chain": before + p["attention_s"] + p["ffn_s"] + p["link_s"], "gpu": before + m * p["attention_s"],
               "link": before + m * p["link_bw_s"], "lpu": before + g * m * p["ffn_s"] / max(self.n_ffn, 1)}
        if overlap:
            out["host"] = o
        return out

    def total(self, shape: StepShape) -> np.ndarray:
        return np.maximum.reduce(list(np.broadcast_arrays(*self.bounds(shape).values())))

    def decode_step(self, batch: float, past: float, span: float) -> DecodeStep:
        shape = self.uniform_decode_shape(batch, past, span)
        parts = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in self.parts(shape).items()}
        details = {"parts_s": parts, "bottleneck": afd_bottleneck(self, shape), "micro_batches": self.afd.micro_batches,
                   "link": self.afd.link.name, "lpu_pools": self.afd.units,
                   "attention_replicas_per_pool": self.afd.replicas_per_unit}
        return DecodeStep(float(np.asarray(self.total(shape)).reshape(-1)[0]), self.time_shares(shape), {"afd": details})

    def time_shares(self, shape: StepShape) -> dict[str, dict[str, float]]:
        """Where each chip kind's time goes in one step, as shares of the step: GPU compute /
        memory / interconnect (TP collectives) / overhead, waiting on the GPU<->LPU link, idle;
        LPU (one stage of the shared pool) compute / memory / interconnect / pipeline latency,
        idle; the link's busy share. Scalar shapes only."""
        one = lambda v: float(np.asarray(v).reshape(-1)[0])  # noqa: E731
        p = {k: one(v) for k, v in self.parts(shape).items()}
        t = one(self.total(shape))
        m, g = p["m"], self.afd.replicas_per_unit
        micro = shape.scaled(1.0 / m)
        gb, lb = self.gpu.time(micro), self.lpu.time(micro)
        host = 0.0 if self.host.engine.overlap else p["overhead_s"]  # overlapped host work keeps no GPU waiting
        gpu = {"compute": m * one(gb.compute), "memory": m * one(gb.memory), "interconnect": m * one(gb.interconnect),
               "overhead": m * one(gb.overhead) + host}
        stage = g * m / max(self.n_ffn, 1)
        lpu = {"compute": stage * one(lb.compute), "memory": stage * one(lb.memory),
               "interconnect": stage * one(lb.interconnect), "overhead": stage * one(lb.overhead)}
        gpu_busy, lpu_busy = sum(gpu.values()), sum(lpu.values())
        link = max(0.0, min(m * p["link_s"], t - gpu_busy))
        out = {"gpu": {k: v / t for k, v in gpu.items()}, "lpu": {k: v / t for k, v in lpu.items()}}
        out["gpu"].update(link=link / t, idle=max(0.0, t - gpu_busy - link) / t)
        out["lpu"]["idle"] = max(0.0, t - lpu_busy) / t
        out["link"] = {"busy": min(m * p["link_bw_s"], t) / t}
        return out


def afd_bottleneck(cost: AFDStepCost, shape: StepShape) -> str:
    """Which bound sets the step time: 'chain' (latency of one micro-batch's GPU->LPU->GPU trips),
    'gpu', 'link' or 'lpu' (throughput of that resource), or 'host' (the engine's host work, when
    it overlaps the GPU and is the longest)."""
    b = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in cost.bounds(shape).items()}
    return max(b, key=b.get)
