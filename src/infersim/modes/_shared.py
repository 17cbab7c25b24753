"""What several mode builders need: the build context, GPU and LPU pool layouts from a spec's
sections, racks and power, SRAM sizing and the GPU<->LPU link check."""
from __future__ import annotations

import math
from dataclasses import dataclass

from infersim.calibration.efficiency import Calibration
from infersim.catalog.hardware import HardwareCatalog, LinkSpec, SystemSpec
from infersim.catalog.models import ModelArch
from infersim.costmodel.memory import min_chips_for_context
from infersim.deployments.plan import Plan
from infersim.deployments.spec import DeploymentSpec, GPUPart, LPUPart
from infersim.errors import InputError
from infersim.mapping.deployment import Deployment, build_deployment, weight_bytes_total

GB = 1e9
# A rack's GPUs split into tensor-parallel groups of one 8-GPU node (HGX) or NVL72 tray group by
# default, the width engines ship with; set gpu.tp to change it.
DEFAULT_RACK_TP = 8
# Links that can join a GPU and an LPU: NVLink joins NVIDIA GPUs (and Grace CPUs) only, LPU C2C joins
# LPUs only and a wafer fabric stays inside one wafer; a GPU<->LPU path is a network or a package.
GPU_LPU_LINK_KINDS = ("ethernet", "infiniband", "pcie", "on_package")


@dataclass(frozen=True)
class Sizing:
    """How to size an SRAM pipeline on a bare LPU/wafer chip given without a chip count: for
    `seqs` sequences of `context` tokens of KV cache. auto: size it (estimate); else refuse and
    name the count (simulate: the workload decides, and a guess would hide thrashing)."""

    context: int
    seqs: int
    auto: bool
    how: str = "pass --chips"


@dataclass(frozen=True)
class BuildContext:
    spec: DeploymentSpec
    model: ModelArch
    catalog: HardwareCatalog
    calibration: Calibration
    sizing: Sizing | None = None

    def plan(self, pools, **kw) -> Plan:
        return Plan(self.spec, self.model, pools, **kw)


def system_power_w(system: SystemSpec, racks: float) -> float:
    q = system.power_w
    return float(q.value) * racks if q is not None and q.value is not None else 0.0


def add_footprint(plan: Plan, racks: dict[str, float], power_w: float) -> None:
    for k, v in racks.items():
        plan.racks[k] = plan.racks.get(k, 0) + v
    plan.power_w += power_w


def gpu_rack_system(catalog: HardwareCatalog, name: str, part: str = "gpu") -> SystemSpec:
    """The named GPU system a file's `racks` count (a single chip has no racks or power)."""
    probe = catalog.resolve_system(name)
    if not catalog.is_named_system(name) or (probe.n_chips <= 1 and catalog.chip(probe.chip).kind == "gpu"):
        raise InputError(f"{part}.system '{name}' is a single chip; name a rack or node (e.g. vr-nvl72, gb200-nvl72, "
                         f"hgx-h100) so racks and power are defined (a bare chip works from the command line: --system "
                         f"{name} --chips N)")
    return probe


def gpu_deployment(ctx: BuildContext, part: GPUPart, *, replicas: int | None = None, system: str | None = None,
                   tp: int | None = None, ep: int | None = None, moe_ep: int | None = None,
                   arch: ModelArch | None = None) -> Deployment:
    """A GPU pool from a spec's GPU section: `racks` of a named system split into tp x ep x pp
    replicas (all of them unless `replicas` says how many), or, without racks (command-line flags),
    the chip or system filled as `chips` / `replicas` / tp say. `system`, `tp`, `ep` and `moe_ep`
    override the section's (a P/D pool's workers); `arch` replaces the model (AFD's attention part)."""
    name, tp, ep = system or part.system, tp if tp is not None else part.tp, ep or part.ep
    moe_ep = moe_ep or part.moe_ep or 1
    model = arch or ctx.model
    kw = dict(pp=part.pp, ep=ep, moe_ep=moe_ep, precision=part.precision, kv_precision=part.kv_precision, catalog=ctx.catalog,
              calibration=ctx.calibration, engine=ctx.spec.engine.name)
    if part.racks is None:
        return build_deployment(model, name, chips=part.chips if replicas is None else None, tp=tp,
                                replicas=replicas if replicas is not None else part.replicas, **kw)
    rack = gpu_rack_system(ctx.catalog, name)
    tp = tp or DEFAULT_RACK_TP
    chips = rack.n_chips * part.racks
    per = tp * ep * part.pp
    if replicas is None and chips % per:
        raise InputError(f"gpu: {part.racks} x {rack.name} = {chips} chips is not a multiple of tp x ep x pp = {per}")
    reps = replicas if replicas is not None else chips // per
    return build_deployment(model, rack.chip if part.racks > 1 else rack.name, chips=reps * per, tp=tp, replicas=reps,
                            **kw)


def shared_domain(ctx: BuildContext, part: GPUPart) -> int | None:
    """The scale-up domain of the named system a GPU section's pools are carved from (None for a
    bare chip: its pools have no domain in common beyond their own)."""
    return ctx.catalog.resolve_system(part.system).scale_up_domain if ctx.catalog.is_named_system(part.system) else None


def gpu_footprint(ctx: BuildContext, part: GPUPart, deps: list[Deployment]) -> tuple[dict, float]:
    """Racks and power of the GPU section: its racks of a named system; from flags, the named
    system's share the pools use (none for a bare chip: it has no rack or power figure)."""
    if part.racks is not None:
        rack = gpu_rack_system(ctx.catalog, part.system)
        return {"gpu": part.racks}, system_power_w(rack, part.racks)
    if not ctx.catalog.is_named_system(part.system):
        return {}, 0.0
    rack = ctx.catalog.resolve_system(part.system)
    racks = sum(d.n_chips for d in deps) / rack.n_chips
    return {"gpu": racks}, system_power_w(rack, racks)


def sram_system(ctx: BuildContext, part: LPUPart, kinds=("lpu", "wafer")) -> SystemSpec:
    system = ctx.catalog.resolve_system(part.system)
    kind = ctx.catalog.chip(system.chip).kind
    if kind not in kinds:
        raise InputError(f"lpu.system '{part.system}' holds {kind} chips; name an "
                         f"{' or '.join(k.upper() if k == 'lpu' else k for k in kinds)} system (lpx, cs3, ...)")
    return system


def sram_chips_for_weights(ctx: BuildContext, model: ModelArch, chip: str, precision: str | None) -> tuple[int, float]:
    """(fewest chips of `chip` whose SRAM holds `model`'s weights, the weight bytes)."""
    probe = build_deployment(model, chip, chips=1, precision=precision, catalog=ctx.catalog,
                             calibration=ctx.calibration)
    return min_chips_for_context(probe, 0, 0), weight_bytes_total(model, probe.plan)


def sized_sram_chips(ctx: BuildContext, model: ModelArch, chip: str, precision: str | None, kv_precision) -> int:
    """Chips per pipeline for a bare SRAM chip given without a count, by `ctx.sizing`."""
    probe = build_deployment(model, chip, chips=1, precision=precision, kv_precision=kv_precision,
                             catalog=ctx.catalog, calibration=ctx.calibration)
    weights_only = min_chips_for_context(probe, 0, 0)
    s = ctx.sizing
    if s is None:
        return weights_only
    need = min_chips_for_context(probe, s.context, s.seqs)
    if s.auto:
        return need
    raise InputError(f"{probe.chip.name} keeps weights and KV cache in SRAM: {weights_only} chips per replica hold "
                     f"the weights only, {need} hold them plus the KV cache of {s.seqs} sequence(s) of the longest "
                     f"request ({s.context:,} tokens); {s.how} (e.g. {need} per replica)")


def gpu_lpu_link(ctx: BuildContext) -> LinkSpec:
    """The spec's GPU<->LPU link, refused when its kind cannot join a GPU to an LPU."""
    link = ctx.catalog.link(ctx.spec.link)
    if link.kind not in GPU_LPU_LINK_KINDS:
        candidates = sorted(l.name for l in ctx.catalog.links.values() if l.name.startswith("gpu-lpu"))
        raise InputError(f"link '{ctx.spec.link}' is a {link.kind} link, which cannot join GPU racks to LPU racks; name "
                         f"a GPU<->LPU path ({', '.join(candidates) or 'an ethernet, infiniband, pcie or on_package link'})")
    return link


def whole_racks(chips_needed: int, rack_chips: int) -> int:
    """Chips in the fewest whole racks holding `chips_needed` chips."""
    return math.ceil(chips_needed / rack_chips) * rack_chips
