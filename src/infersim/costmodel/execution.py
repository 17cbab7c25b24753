"""Execution models: turn per-chip operator work into time, one model per chip kind.

GPU: each op is a smoothed roofline, t = (t_compute^p + t_memory^p)^(1/p), summed over ops (kernels
run one after another); collectives use an alpha-beta model over the system's links
(costmodel/collectives.py); kernel launches and the engine's host work are costmodel.overhead's.
LPU / wafer (SRAM-resident, statically scheduled dataflow): each layer's chips overlap compute and
SRAM streaming perfectly (hard max), layers run one after another for a token, plus a fixed
per-layer pipeline latency (in proportion to the layer's dependent stages) and chip-to-chip hops;
no per-step software overhead.

Every function returns a `Breakdown` whose parts add up to the total, so callers can say where the
time goes (compute / memory / interconnect / fixed overhead).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersim.catalog.hardware import ChipSpec, LinkSpec
from infersim.catalog.models import ModelArch, MoESpec
from infersim.calibration.efficiency import Efficiency
from infersim.mapping.precision import PrecisionPlan
from infersim.costmodel import collectives
from infersim.costmodel.work import Op

CATEGORIES = ("compute", "memory", "interconnect", "overhead")


@dataclass
class Breakdown:
    compute: np.ndarray
    memory: np.ndarray
    interconnect: np.ndarray
    overhead: np.ndarray

    @property
    def total(self) -> np.ndarray:
        return self.compute + self.memory + self.interconnect + self.overhead

    def scaled(self, k) -> "Breakdown":
        return Breakdown(self.compute * k, self.memory * k, self.interconnect * k, self.overhead * k)

    def __add__(self, o: "Breakdown") -> "Breakdown":
        return Breakdown(self.compute + o.compute, self.memory + o.memory, self.interconnect + o.interconnect,
                         self.overhead + o.overhead)

    def shares(self) -> dict[str, np.ndarray]:
        tot = np.maximum(self.total, 1e-30)
        return {c: getattr(self, c) / tot for c in CATEGORIES}


def peak(chip: ChipSpec, key: str) -> float:
    """Dense peak FLOP/s at precision `key`; InputError naming the chip if unsupported or unpublished."""
    return float(chip.flops(key))


def _op_rates(chip: ChipSpec, plan: PrecisionPlan, op: Op) -> float:
    return peak(chip, plan.attention_peak if op.kind in ("attention", "scan") else plan.gemm_peak)


def op_arrays(ops: list[Op], chip: ChipSpec, plan: PrecisionPlan, layer_frac: float = 1.0):
    """Stack ops for the vectorised execution models: (flops, bytes) with the op axis last, plus
    per-op peak rates (FLOP/s) and layer counts (scaled by layer_frac for a pipeline stage)."""
    flops = np.stack(np.broadcast_arrays(*[np.asarray(o.flops, dtype=float) for o in ops]), axis=-1)
    byts = np.stack(np.broadcast_arrays(*[np.asarray(o.bytes, dtype=float) for o in ops]), axis=-1)
    return flops, byts, op_rates(ops, chip, plan), op_counts(ops, layer_frac)


def op_rates(ops: list[Op], chip: ChipSpec, plan: PrecisionPlan) -> np.ndarray:
    return np.array([_op_rates(chip, plan, op) for op in ops], dtype=float)


def op_counts(ops: list[Op], layer_frac: float = 1.0) -> np.ndarray:
    return np.array([op.count * (layer_frac if op.name not in ("embedding", "lm_head") else 1.0) for op in ops],
                    dtype=float)


def _last(v):
    """An efficiency parameter (scalar, or an array over parameter sets) against the op axis."""
    return np.asarray(v, dtype=float)[..., None]


def gpu_ops_time(ops: list[Op], chip: ChipSpec, plan: PrecisionPlan, eff: Efficiency, layer_frac: float = 1.0) -> Breakdown:
    """Sum of smoothed-roofline op times on one GPU. layer_frac scales layer counts (pipeline stage)."""
    return gpu_table_time(*op_arrays(ops, chip, plan, layer_frac), chip, eff)


def _roofline_terms(flops, byts, rate, bw, p):
    """(larger of t_c and t_m, (t_c / larger)^p, (t_m / larger)^p): the smoothed roofline's terms,
    relative to the larger one so a large p cannot underflow to 0."""
    tc = flops / rate
    tm = byts / bw
    big = np.maximum(np.maximum(tc, tm), 1e-300)
    return big, (tc / big) ** p, (tm / big) ** p


def roofline_op_times(flops, byts, rate, bw, p):
    """Per-op smoothed-roofline time (t_c^p + t_m^p)^(1/p) with t_c = flops / rate and
    t_m = bytes / bw, and the compute share of it."""
    big, rc, rm = _roofline_terms(flops, byts, rate, bw, p)
    both = rc + rm
    return big * both ** (1.0 / p), rc / both


def roofline_seconds(flops, byts, rate, bw, p):
    """The time of `roofline_op_times` alone (skips the compute share)."""
    big, rc, rm = _roofline_terms(flops, byts, rate, bw, p)
    return big * (rc + rm) ** (1.0 / p)


def gpu_rates(rates, chip: ChipSpec, eff: Efficiency):
    """(FLOP/s per op, memory bytes/s, roofline smoothness p) a GPU reaches: peaks x calibrated
    efficiencies (each may be an array over parameter sets, against the op axis)."""
    return rates * _last(eff.compute_eff), float(chip.mem_bw_bytes_per_s.value) * _last(eff.mem_eff), _last(eff.blend_p)


def gpu_table_time(flops, byts, rates, counts, chip: ChipSpec, eff: Efficiency) -> Breakdown:
    """Smoothed roofline over stacked ops (op axis last): kernels run one after another (sum over
    ops). Kernel launches and host work are costmodel.overhead's."""
    t, wc = roofline_op_times(flops, byts, *gpu_rates(rates, chip, eff))
    t = counts * t
    comp = np.sum(t * wc, axis=-1)
    mem = np.sum(t, axis=-1) - comp
    z = 0.0 * (comp + mem)
    return Breakdown(comp + z, mem + z, z, z)


def dataflow_op_times(flops, byts, rate, bw):
    """(compute time, SRAM streaming time) per op; a dataflow chip overlaps them perfectly, so an
    op takes the larger of the two."""
    return flops / rate, byts / bw


def dataflow_ops_time(ops: list[Op], chip: ChipSpec, plan: PrecisionPlan, eff: Efficiency,
                      chips_per_layer: float, stage_layers: float) -> Breakdown:
    """Per-token latency through an SRAM-resident layer pipeline (LPU / wafer)."""
    flops, byts, rates, counts = op_arrays(ops, chip, plan)
    return dataflow_table_time(flops, byts, rates, counts, chip, eff, chips_per_layer, stage_layers)


def dataflow_table_time(flops, byts, rates, counts, chip: ChipSpec, eff: Efficiency,
                        chips_per_layer: float, stage_layers: float) -> Breakdown:
    """Each layer runs on `chips_per_layer` chips (fractional when a chip holds several layers);
    within a layer compute and SRAM streaming overlap (hard roofline max); layers run in sequence
    for a token; the pipeline adds its fixed latency, eff.layer_s per dense-layer equivalent
    (`stage_layers`, see `stage_layers`)."""
    tc, tm = dataflow_op_times(flops, byts, *dataflow_rates(rates, chip, eff, chips_per_layer))
    compute_bound = tc >= tm
    comp = np.sum(counts * np.where(compute_bound, tc, 0.0), axis=-1)
    mem = np.sum(counts * np.where(compute_bound, 0.0, tm), axis=-1)
    z = 0.0 * (comp + mem)
    return Breakdown(comp + z, mem + z, z, z + pipeline_latency(eff, stage_layers))


def dataflow_rates(rates, chip: ChipSpec, eff: Efficiency, chips_per_layer: float):
    """(FLOP/s per op, SRAM bytes/s) of the chips holding one layer: peaks x efficiencies x chips."""
    return (rates * _last(eff.compute_eff) * chips_per_layer,
            float(chip.mem_bw_bytes_per_s.value) * _last(eff.mem_eff) * chips_per_layer)


# Dependent vector-instruction stages one token passes through in each block of a layer on a
# statically scheduled dataflow chip, counted from the block's operations (the TSP derivation in
# calibration/defaults.json, families.groq3.derivation): a mixer (attention: RMSNorm as square-sum,
# cross-lane reduce and scale; QKV; RoPE; QK; softmax as max, exp, sum, scale; AV; O; residual) 13;
# a dense FFN (RMSNorm 3; gate/up; activation x up; down; residual) 7; a MoE block (RMSNorm 3;
# router; top-k select 2; gate weights; expert gate/up; activation; down; weighted combine;
# residual; a shared expert runs beside the routed ones) 12. A Mamba mixer is counted as attention.
BLOCK_STAGES = {"mixer": 13, "dense_ffn": 7, "moe": 12}
DENSE_LAYER_STAGES = BLOCK_STAGES["mixer"] + BLOCK_STAGES["dense_ffn"]


def stage_layers(model: ModelArch) -> float:
    """The model's layers in dense-layer equivalents by their dependent stages: a dense decoder
    layer (mixer + dense FFN, 20 stages) is 1, a MoE layer 25/20, an FFN-only layer (AFD's LPU
    side) 7/20 (dense) or 12/20 (MoE). A chain's latency grows with its dependent stages, so a
    layer's fixed pipeline latency is eff.layer_s in these units."""
    total = 0
    for layer, n in model.layer_groups():
        stages = BLOCK_STAGES["mixer"] if layer.mixer is not None else 0
        if isinstance(layer.ffn, MoESpec):
            stages += BLOCK_STAGES["moe"]
        elif layer.ffn is not None:
            stages += BLOCK_STAGES["dense_ffn"]
        total += n * stages
    return total / DENSE_LAYER_STAGES


def pipeline_latency(eff: Efficiency, stage_layers: float):
    """Fixed latency of a token through a layer pipeline: eff.layer_s (seconds per dense decoder
    layer) per dense-layer equivalent (`stage_layers`)."""
    return np.asarray(eff.layer_s, dtype=float) * stage_layers


# Link kinds whose transfers a compiler schedules with every chip acting as a switch (LPU C2C):
# their all-reduces take one hop per phase (collectives.scheduled_all_reduce).
SCHEDULED_LINK_KINDS = ("lpu_c2c",)


def collective_time(link: LinkSpec, eff: Efficiency, group: int, bytes_per_chip, count: float, kind: str,
                    with_latency: bool = True):
    """Time of `count` collectives among `group` chips moving `bytes_per_chip` in total, by a fixed
    algorithm (no per-size choice; GPU engine steps use costmodel.collectives directly):

    all_reduce: NCCL-style ring bandwidth with tree latency (collectives' `nccl` algorithm), or on
      a compiler-scheduled chip-to-chip link (SCHEDULED_LINK_KINDS) a reduce-scatter and an
      all-gather of one hop each (collectives.scheduled_all_reduce);
    p2p: bytes / bw, one hop each (without latency: the link's occupancy only)."""
    if group <= 1 or count == 0:
        return 0.0 * np.asarray(bytes_per_chip, dtype=float)
    if kind == "all_reduce":
        per = np.asarray(bytes_per_chip, dtype=float) / count
        if link.kind in SCHEDULED_LINK_KINDS:
            return count * collectives.scheduled_all_reduce(link, eff, group, per)
        return count * collectives.all_reduce_times(link, eff, group, per)["nccl"]
    if kind == "p2p":
        return collectives.p2p(link, eff, bytes_per_chip, count, with_latency)
    raise ValueError(f"unknown collective kind {kind!r}")
