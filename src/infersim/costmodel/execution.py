"""Execution models: turn per-chip operator work into time, one model per chip kind.

GPU: each op is a smoothed roofline, t = (t_compute^p + t_memory^p)^(1/p) + kernel floor, summed
over ops (kernels run one after another); collectives use an alpha-beta model over the system's
links; each engine step pays a fixed overhead.
LPU / wafer (SRAM-resident, statically scheduled dataflow): each layer's chips overlap compute and
SRAM streaming perfectly (hard max), layers run one after another for a token, plus a fixed
per-layer pipeline latency and chip-to-chip hops; no per-step software overhead.

Every function returns a `Breakdown` whose parts add up to the total, so callers can say where the
time goes (compute / memory / interconnect / fixed overhead).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersim.catalog.hardware import ChipSpec, LinkSpec
from infersim.costmodel.calibration import Efficiency
from infersim.costmodel.precision import PrecisionPlan
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
    q = chip.peak_flops.get(key)
    if q is None or q.value is None:
        raise KeyError(key)
    return float(q.value)


def _op_rates(chip: ChipSpec, plan: PrecisionPlan, op: Op) -> float:
    return peak(chip, plan.attention_peak if op.kind in ("attention", "scan") else plan.gemm_peak)


def gpu_ops_time(ops: list[Op], chip: ChipSpec, plan: PrecisionPlan, eff: Efficiency, layer_frac: float = 1.0) -> Breakdown:
    """Sum of smoothed-roofline op times on one GPU. layer_frac scales layer counts (pipeline stage)."""
    bw = float(chip.mem_bw_bytes_per_s.value) * eff.mem_eff
    p = eff.blend_p
    comp = mem = over = 0.0
    for op in ops:
        rate = _op_rates(chip, plan, op) * eff.compute_eff
        tc = np.asarray(op.flops, dtype=float) / rate
        tm = np.asarray(op.bytes, dtype=float) / bw
        # p-norm computed relative to the larger term so large p cannot underflow to 0
        big = np.maximum(np.maximum(tc, tm), 1e-300)
        rc, rm = (tc / big) ** p, (tm / big) ** p
        t = big * (rc + rm) ** (1.0 / p)
        wc = rc / (rc + rm)
        n = op.count * (layer_frac if op.name not in ("embedding", "lm_head") else 1.0)
        comp = comp + n * t * wc
        mem = mem + n * t * (1 - wc)
        over = over + n * eff.kernel_s
    z = 0.0 * (comp + mem)
    return Breakdown(comp + z, mem + z, z, over + z)


def dataflow_ops_time(ops: list[Op], chip: ChipSpec, plan: PrecisionPlan, eff: Efficiency,
                      chips_per_layer: float, n_layers: int) -> Breakdown:
    """Per-token latency through an SRAM-resident layer pipeline (LPU / wafer).

    Each layer runs on `chips_per_layer` chips (fractional when a chip holds several layers);
    within a layer compute and SRAM streaming overlap (hard roofline max); layers run in sequence
    for a token; each layer adds eff.layer_s of fixed pipeline latency."""
    bw = float(chip.mem_bw_bytes_per_s.value) * eff.mem_eff * chips_per_layer
    comp = mem = 0.0
    for op in ops:
        rate = _op_rates(chip, plan, op) * eff.compute_eff * chips_per_layer
        tc = np.asarray(op.flops, dtype=float) / rate
        tm = np.asarray(op.bytes, dtype=float) / bw
        comp = comp + op.count * np.where(tc >= tm, tc, 0.0)
        mem = mem + op.count * np.where(tc >= tm, 0.0, tm)
    z = 0.0 * (comp + mem)
    return Breakdown(comp + z, mem + z, z, z + eff.layer_s * n_layers)


def collective_time(link: LinkSpec, eff: Efficiency, group: int, bytes_per_chip, count: float, kind: str):
    """Alpha-beta time of `count` collectives among `group` chips moving `bytes_per_chip` in total.

    all_reduce: ring bandwidth term 2(g-1)/g * bytes / bw, latency 2*ceil(log2 g) hops each;
    all_to_all: bytes / bw (bytes already exclude the local share), ceil(log2 g) hops;
    p2p: bytes / bw, one hop each."""
    if group <= 1 or count == 0:
        return 0.0 * np.asarray(bytes_per_chip, dtype=float)
    bw = float(link.bw_bytes_per_s_per_dir.value) * eff.link_eff
    alpha = float(link.latency_s.value)
    hops = np.ceil(np.log2(group))
    if kind == "all_reduce":
        return 2 * (group - 1) / group * np.asarray(bytes_per_chip, dtype=float) / bw + count * 2 * hops * alpha
    if kind == "all_to_all":
        return np.asarray(bytes_per_chip, dtype=float) / bw + count * hops * alpha
    return np.asarray(bytes_per_chip, dtype=float) / bw + count * alpha
