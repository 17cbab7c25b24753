"""Mode `afd`: attention-FFN disaggregation. GPU prefill replicas run the whole model; decode runs
on attention replicas (GPUs: mixers, KV cache, embeddings, LM head) whose FFN/MoE layers run on
LPU pools, crossing the GPU<->LPU link twice per FFN layer (costmodel/afd.py times the step)."""
from __future__ import annotations

from infersim.costmodel.afd import AFDDeployment, AFDStepCost, attention_part, ffn_part, n_ffn_layers
from infersim.deployments.plan import Plan, Pool, plain_pool
from infersim.errors import InputError
from infersim.mapping.deployment import build_deployment, kv_transfer_link
from infersim.modes import register
from infersim.modes._shared import (GB, BuildContext, gpu_deployment, gpu_footprint, gpu_lpu_link, shared_domain,
                                    sram_chips_for_weights, sram_system, system_power_w, whole_racks)


@register("afd", needs=("gpu", "lpu", "link"), description="attention on GPUs, FFN/MoE on LPU pools, per layer")
def build(ctx: BuildContext) -> Plan:
    spec, part, model = ctx.spec, ctx.spec.lpu, ctx.model
    if spec.gpu.racks is None:
        raise InputError("afd: give gpu.racks (the LPU racks follow from lpu.racks_per_gpu_rack)")
    lsys = sram_system(ctx, part, kinds=("lpu",))
    link = gpu_lpu_link(ctx)
    gpu_racks = spec.gpu.racks
    lpu_racks = part.racks_per_gpu_rack * gpu_racks
    lpu_chips = int(round(lpu_racks * lsys.n_chips))
    if n_ffn_layers(model) == 0:
        raise InputError(f"{model.name} has no FFN/MoE layers to put on LPUs; use mode gpu")
    ffn = ffn_part(model)
    need, wbytes = sram_chips_for_weights(ctx, ffn, lsys.chip, part.precision)
    # one FFN pipeline spans whole racks (spreading within a rack's C2C domain is free), the
    # fewest that hold the FFN weights, at every LPX : NVL72 ratio: extra racks only form more
    # pipelines sharing the GPU replicas (chips short of another whole pipeline stay idle), so
    # adding racks never lengthens a micro-batch's chain (a pool that grew with the ratio could)
    per_pool = whole_racks(need, lsys.n_chips)
    if per_pool > lpu_chips:
        ratio = per_pool / lsys.n_chips / gpu_racks
        raise InputError(f"afd: {model.name}'s FFN/MoE weights ({wbytes / GB:.0f} GB) need {need} {lsys.chip} "
                         f"chips of SRAM, in whole racks {per_pool}, but {lpu_racks:g} {lsys.name} rack(s) have "
                         f"{lpu_chips}; set lpu.racks_per_gpu_rack to at least {ratio:g} (or add gpu.racks)")
    units = max(1, lpu_chips // per_pool)
    gpu_full = gpu_deployment(ctx, spec.gpu)
    p = spec.gpu.prefill_replicas
    attn_reps = gpu_full.par.replicas - p
    if p < 1 or attn_reps < 1:
        raise InputError(f"afd: prefill runs on GPU replicas: set gpu.prefill_replicas between 1 and "
                         f"{gpu_full.par.replicas - 1} (of {gpu_full.par.replicas})")
    prefill = gpu_deployment(ctx, spec.gpu, replicas=p)
    attention = gpu_deployment(ctx, spec.gpu, replicas=attn_reps, arch=attention_part(model))
    ffn_dep = build_deployment(ffn, lsys.chip, chips=per_pool, replicas=1, precision=part.precision,
                               catalog=ctx.catalog, calibration=ctx.calibration)
    afd = AFDDeployment(model, attention, ffn_dep, link, units=units, micro_batches=spec.micro_batches,
                        lpu_ratio=part.racks_per_gpu_rack, lpu_chips_per_ratio=gpu_racks * lsys.n_chips)
    kv_link = kv_transfer_link(prefill, attention, shared_domain(ctx, spec.gpu))
    summary = {"lpu_chips_per_pool": per_pool, "lpu_pools": units, "attention_replicas": attn_reps,
               "link": link.name, "micro_batches": spec.micro_batches}
    racks, power = gpu_footprint(ctx, spec.gpu, [gpu_full])
    racks["lpu"] = lpu_racks
    notes = [f"AFD: {p} prefill + {attn_reps} attention replicas on GPUs; FFN in {units} LPU pool(s) of "
             f"{per_pool} chips ({wbytes / GB:.0f} GB of FFN weights need >= {need}); "
             f"{spec.micro_batches} micro-batch(es); link {link.name}"]
    pools = [plain_pool(prefill, "prefill"), Pool("decode", attention, AFDStepCost(afd)), plain_pool(ffn_dep, "ffn")]
    return ctx.plan(pools, kv_link=kv_link, links={"gpu_lpu": link},
                    racks=racks, power_w=power + system_power_w(lsys, lpu_racks), notes=notes,
                    summary={"afd": summary})
