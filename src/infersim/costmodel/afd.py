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
  F_busy = the part of F that occupies the stages (compute / SRAM streaming and the chip-to-chip
  links' bandwidth time): F less the per-layer pipeline latency and each hop's fixed latency;
- X = link time of one micro-batch: 2 crossings per FFN layer, each alpha + bytes / bandwidth;
  X_bw = its bandwidth part (the link's occupancy);
- G = attention replicas per LPU pool (R replicas over u pools: R / u, micro-batches spread over the
  pools), each of the pool's L_ffn stages busy F_busy / L_ffn per micro-batch.
    m = 1:  T = O + A + F + X                  (no overlap: the strict sum)
    m > 1:  T = max(O + A + F + X, O + m A, m X_bw, G m F_busy / L_ffn)
The host work occupies neither the link nor the LPU pool (the pool serves the other replicas while
one does host work), so it is added to the chain and the GPU bound only. With an overlap scheduler
(catalog/data/engines.yaml) it runs beside the GPU instead: T = max(the bounds above without O, O).
i.e. one micro-batch's chain is never shortened, and no resource (GPU, link bandwidth, LPU stage)
can do more than its share of work per step. The round trip bounds tokens/s per user whenever
A + F + X is the largest term and X is a large part of it (`afd_bottleneck` says which).
With m = 1 the GPU and link terms never exceed the chain; the LPU term can only when more attention
replicas share a pool than it has FFN layers (G > L_ffn, as F_busy <= F), and then the pool binds.
`costmodel/afd_pipeline.py` schedules the same parts layer by layer; `costmodel/afd_binding.py`
says which bound binds and at which LPX : NVL72 ratio the pool and the link stop binding.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from infersim.catalog.hardware import LinkSpec
from infersim.catalog.models import LayerSpec, ModelArch
from infersim.costmodel.afd_binding import afd_binding, binding_stage
from infersim.costmodel.afd_pipeline import AFDPipeline, schedule_afd
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
    link: the GPU<->LPU path; units: LPU pools; micro_batches: m; lpu_ratio: LPX racks per GPU rack
    and lpu_chips_per_ratio: LPU chips per unit of that ratio (to say at which ratio a stage binds)."""

    model: ModelArch
    attention: Deployment
    ffn: Deployment
    link: LinkSpec
    units: int
    micro_batches: int
    lpu_ratio: float | None = None
    lpu_chips_per_ratio: float | None = None

    @property
    def replicas_per_unit(self) -> float:
        """Attention replicas per LPU pool: R / u, fractional when uneven (assumption: each
        micro-batch's FFN goes to the least-loaded pool, so over steps every pool carries the same
        share; with replicas pinned to pools the busiest would carry ceil(R / u))."""
        return self.attention.par.replicas / self.units

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
        # The LPU time that occupies no stage: the per-layer pipeline latency plus the chip-to-chip
        # hops' fixed latency, i.e. the LPU's overhead and interconnect time of a step moving no
        # bytes (every hop is alpha + bytes / bandwidth). The same for every step shape.
        idle = self.lpu.time(self.uniform_decode_shape(0.0, 0.0, 1.0))
        self.lpu_latency_s = idle.overhead + idle.interconnect

    def micro_batches(self, shape: StepShape) -> np.ndarray:
        """Micro-batches in flight: as configured, but never more than the sequences in the step."""
        return np.maximum(1.0, np.minimum(float(self.afd.micro_batches), np.floor(shape.seqs)))

    def parts(self, shape: StepShape) -> dict[str, np.ndarray]:
        """Seconds: attention_s (GPU, one micro-batch, without the engine's host work), overhead_s
        (the host work, paid once per step), ffn_s (LPU latency of one micro-batch), ffn_busy_s
        (the part of it that occupies the pool's stages, summed over them), link_s and link_bw_s
        (one micro-batch; the latter the link's occupancy), and m."""
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
        return {"attention_s": a, "overhead_s": overhead, "ffn_s": f, "ffn_busy_s": f - self.lpu_latency_s,
                "link_s": x, "link_bw_s": x_bw, "m": m}

    def bounds(self, shape: StepShape) -> dict[str, np.ndarray]:
        """Each lower bound on the step time (seconds). The engine's host work is paid once per step,
        beside the GPU with an overlap scheduler (its own bound, 'host') and before the GPU's work
        without; it never occupies the link or the LPU pool, so it adds to neither's bound."""
        return afd_bounds(self.parts(shape), self.afd.replicas_per_unit, self.n_ffn, self.host.engine.overlap)

    def total(self, shape: StepShape) -> np.ndarray:
        return np.maximum.reduce(list(np.broadcast_arrays(*self.bounds(shape).values())))

    def decode_step(self, batch: float, past: float, span: float) -> DecodeStep:
        """The step at a uniform decode shape, with the AFD details: parts, the binding stage (and
        with the deployment's ratio known, each stage's binding over LPX : NVL72 ratios), and the
        per-layer micro-batch pipeline."""
        shape = self.uniform_decode_shape(batch, past, span)
        parts = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in self.parts(shape).items()}
        bounds = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in self.bounds(shape).items()}
        details = {"parts_s": parts, "bottleneck": binding_stage(bounds), "bounds_s": bounds,
                   "micro_batches": self.afd.micro_batches, "link": self.afd.link.name, "lpu_pools": self.afd.units,
                   "attention_replicas_per_pool": self.afd.replicas_per_unit,
                   "pipeline": self.pipeline(shape).as_dict()}
        if self.afd.lpu_ratio is not None and self.afd.lpu_chips_per_ratio:
            details["binding"] = afd_binding(bounds, self.afd.attention.par.replicas, self.afd.units,
                                             self.afd.ffn.chips_per_replica, self.afd.lpu_ratio,
                                             self.afd.lpu_chips_per_ratio).as_dict()
        return DecodeStep(float(np.asarray(self.total(shape)).reshape(-1)[0]), self.time_shares(shape), {"afd": details})

    def pipeline(self, shape: StepShape) -> AFDPipeline:
        """The step's per-layer micro-batch schedule (costmodel.afd_pipeline) from the same parts."""
        one = lambda v: float(np.asarray(v).reshape(-1)[0])  # noqa: E731
        return schedule_afd({k: one(v) for k, v in self.parts(shape).items()},
                            {k: one(v) for k, v in self.bounds(shape).items()}, self.afd.replicas_per_unit,
                            self.n_ffn, self.host.engine.overlap)

    def time_shares(self, shape: StepShape) -> dict[str, dict[str, float]]:
        """Where each chip kind's time goes in one step, as shares of the step: GPU compute /
        memory / interconnect (TP collectives) / overhead, waiting on the GPU<->LPU link, idle;
        LPU (one stage of the shared pool) compute / memory / interconnect (the hops' bandwidth
        time), idle (incl. the pipeline and hop latency, which keep no stage busy); the link's
        busy share. Scalar shapes only."""
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
        hops_bw = one(lb.interconnect) - (one(self.lpu_latency_s) - one(lb.overhead))
        lpu = {"compute": stage * one(lb.compute), "memory": stage * one(lb.memory), "interconnect": stage * hops_bw}
        gpu_busy, lpu_busy = sum(gpu.values()), sum(lpu.values())
        link = max(0.0, min(m * p["link_s"], t - gpu_busy))
        out = {"gpu": {k: v / t for k, v in gpu.items()}, "lpu": {k: v / t for k, v in lpu.items()}}
        out["gpu"].update(link=link / t, idle=max(0.0, t - gpu_busy - link) / t)
        out["lpu"]["idle"] = max(0.0, t - lpu_busy) / t
        out["link"] = {"busy": min(m * p["link_bw_s"], t) / t}
        return out


def afd_bounds(parts: dict, replicas_per_pool: float, n_ffn: int, host_overlaps: bool) -> dict:
    """The lower bounds on an AFD step (seconds) from `AFDStepCost.parts`: 'chain' (one micro-batch's
    GPU->LPU->GPU trips), 'gpu' (m attention passes), 'link' (m micro-batches' link occupancy),
    'lpu' (a pool stage's busy time for every replica's micro-batches), and with an overlapping
    engine 'host' (the host work on its own); without, the host work precedes the chain and the
    GPU's passes. Values broadcast (arrays of steps, or `replicas_per_pool` over LPX ratios)."""
    m, o = parts["m"], parts["overhead_s"]
    before = 0.0 * o if host_overlaps else o
    out = {"chain": before + parts["attention_s"] + parts["ffn_s"] + parts["link_s"],
           "gpu": before + m * parts["attention_s"], "link": m * parts["link_bw_s"] + 0.0 * o,
           "lpu": replicas_per_pool * m * parts["ffn_busy_s"] / max(n_ffn, 1) + 0.0 * o}
    if host_overlaps:
        out["host"] = o
    return out


def afd_bottleneck(cost: AFDStepCost, shape: StepShape) -> str:
    """Which bound sets the step time: 'chain' (latency of one micro-batch's GPU->LPU->GPU trips),
    'gpu', 'link' or 'lpu' (throughput of that resource), or 'host' (the engine's host work, when
    it overlaps the GPU and is the longest)."""
    return binding_stage({k: float(np.asarray(v).reshape(-1)[0]) for k, v in cost.bounds(shape).items()})
