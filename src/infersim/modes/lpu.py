"""Mode `lpu`: LPU or wafer layer pipelines only (weights and KV cache in SRAM). Each pipeline is a
replica over all its chips; a file's racks are split into pipelines of `lpu.chips` chips (default:
the fewest whole racks that hold the weights: spreading within a scale-up domain costs nothing and
leaves SRAM for the KV cache). With a `spec:` section, speculative decoding with draft and target
both on the LPUs (modes/_sram_spec.py)."""
from __future__ import annotations

from infersim.deployments.plan import Plan, plain_pool
from infersim.errors import InputError
from infersim.mapping.deployment import build_deployment
from infersim.modes import register
from infersim.costmodel.dataflow_links import pipeline_hops_note
from infersim.modes._shared import (GB, BuildContext, sized_sram_chips, sram_chips_for_weights, sram_system,
                                    system_power_w, whole_racks)
from infersim.modes._sram_spec import lpu_speculative_plan


@register("lpu", needs=("lpu",), takes=("spec",),
          description="LPU or wafer layer pipelines alone (SRAM-resident), optionally drafting on them too")
def build(ctx: BuildContext) -> Plan:
    part, model = ctx.spec.lpu, ctx.model
    system = sram_system(ctx, part)
    if ctx.spec.spec is not None:
        return lpu_speculative_plan(ctx, system)
    chip = system.chip
    named = ctx.catalog.is_named_system(part.system)
    notes = []
    if part.racks is not None:  # a file: racks (or wafers) split into pipelines
        total = system.n_chips * part.racks
        need, wbytes = sram_chips_for_weights(ctx, model, chip, part.precision)
        per = part.chips or whole_racks(need, system.n_chips)
        if per < need:
            raise InputError(f"lpu.chips {per}: {model.name}'s weights ({wbytes / GB:.0f} GB) need at least {need} "
                             f"{chip} chips of SRAM; raise lpu.chips or leave it out")
        if per > total:
            raise InputError(f"{model.name} needs {per} {chip} chips ({wbytes / GB:.0f} GB of weights in SRAM) but "
                             f"{part.racks} x {system.name} has {total}; set lpu.racks to at least "
                             f"{-(-per // system.n_chips)}")
        pipelines = total // per
        racks = float(part.racks)
        notes.append(f"{pipelines} layer pipeline(s) of {per} {chip} chips (SRAM needs >= {need}); "
                     f"{total - per * pipelines} chips unused")
    else:  # command-line flags: all chips, split into --replicas pipelines
        pipelines = part.replicas or 1
        total = part.total_chips or (system.n_chips if named else None)
        if total is None:
            per = sized_sram_chips(ctx, model, chip, part.precision, part.kv_precision)
            total = per * pipelines
            notes.append(f"{per} {chip} chips per pipeline: the fewest whose SRAM holds the weights and this "
                         "batch's KV cache")
        elif total % pipelines:
            raise InputError(f"--chips {total} is not divisible by --replicas {pipelines}")
        per = total // pipelines
        racks = total / system.n_chips if named else 0.0
    dep = build_deployment(model, chip, chips=per * pipelines, replicas=pipelines, precision=part.precision,
                           kv_precision=part.kv_precision, catalog=ctx.catalog, calibration=ctx.calibration)
    notes.append(f"{dep.chip.kind} layer pipeline over {per} chips ({per / model.n_layers:.2f} chips per layer)"
                 + pipeline_hops_note(dep))
    footprint = {"lpu": racks} if racks else {}
    return ctx.plan([plain_pool(dep, "both")], racks=footprint, power_w=system_power_w(system, racks), notes=notes)
