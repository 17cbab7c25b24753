"""Mode `afd`: attention-FFN disaggregation. GPU prefill replicas run the whole model; decode runs
on attention replicas (GPUs: mixers, KV cache, embeddings, LM head) whose FFN/MoE layers run on
LPU pools, crossing the GPU<->LPU link twice per FFN layer (costmodel/afd.py times the step).

With a `spec:` section the decode step verifies k drafted tokens per sequence (the AFD step over
k + 1 tokens); the drafts come from (a) the target's MTP / EAGLE head, itself an AFD step of a
one-layer model (its attention on the attention replicas' GPUs, its FFN on the LPU pools, whose
SRAM must hold it too), or (b) a draft model on its own LPU pipeline(s) carved from the LPX racks
beside the FFN pools (token ids cross the GPU<->LPU link twice per cycle)."""
from __future__ import annotations

from dataclasses import replace

from infersim.costmodel.afd import AFDDeployment, AFDStepCost, attention_part, ffn_part, n_ffn_layers
from infersim.costmodel.specdec import SpecDecodeCost, head_arch, head_draft
from infersim.deployments.plan import Plan, Pool, plain_pool
from infersim.errors import InputError
from infersim.mapping.deployment import build_deployment, kv_transfer_link
from infersim.modes import register
from infersim.modes._shared import (GB, BuildContext, gpu_deployment, gpu_footprint, gpu_lpu_link, shared_domain,
                                    sram_chips_for_weights, sram_system, system_power_w, whole_racks)
from infersim.modes._speculative import fmt_acceptance, resolve, spec_summary
from infersim.modes._sram_spec import afd_draft_chips, draft_model_of, lpx_draft


@register("afd", needs=("gpu", "lpu", "link"), takes=("spec",), description="attention on GPUs, FFN/MoE on LPU pools, per layer")
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
    s = spec.spec
    draft_model = draft_model_of(ctx, "afd") if s is not None else None
    head = s is not None and draft_model is None
    # a head's FFN lives on the FFN pools too: their SRAM holds one more layer
    held = ffn_part(replace(model, layers=model.layers + model.layers[-1:])) if head else ffn
    need, wbytes = sram_chips_for_weights(ctx, held, lsys.chip, part.precision)
    # one FFN pipeline spans whole racks (spreading within a rack's C2C domain is free), the
    # fewest that hold the FFN weights, at every LPX : NVL72 ratio: extra racks only form more
    # pipelines sharing the GPU replicas (chips short of another whole pipeline stay idle), so
    # adding racks never lengthens a micro-batch's chain (a pool that grew with the ratio could).
    # With an LPX draft model the pools take only the chips their weights need (at every ratio too),
    # and the draft pipelines the chips the pools leave.
    per_pool = whole_racks(need, lsys.n_chips)
    draft_min = afd_draft_chips(ctx, lsys.chip, draft_model) if draft_model is not None else 0
    room = lpu_chips - draft_min  # the chips the FFN pools may take
    if draft_model is not None:
        per_pool = need
        if need <= lpu_chips < need + draft_min:
            raise InputError(f"afd: draft model {draft_model.name} needs {draft_min} {lsys.chip} chips beside the FFN "
                             f"pool's {need} ({wbytes / GB:.0f} GB of FFN weights), but {lpu_racks:g} {lsys.name} "
                             f"rack(s) have {lpu_chips}; raise lpu.racks_per_gpu_rack or pick a smaller draft")
    if per_pool > lpu_chips:
        ratio = (per_pool + draft_min) / lsys.n_chips / gpu_racks
        raise InputError(f"afd: {model.name}'s FFN/MoE weights ({wbytes / GB:.0f} GB) need {need} {lsys.chip} "
                         f"chips of SRAM{'' if per_pool == need else f', in whole racks {per_pool}'}, but {lpu_racks:g} {lsys.name} rack(s) have "
                         f"{lpu_chips}; set lpu.racks_per_gpu_rack to at least {ratio:g} (or add gpu.racks)")
    units = max(1, room // per_pool)
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
                        # the binding ratio assumes every LPX chip serves the FFN pools: not said with a draft
                        lpu_ratio=None if draft_model is not None else part.racks_per_gpu_rack,
                        lpu_chips_per_ratio=gpu_racks * lsys.n_chips)
    kv_link = kv_transfer_link(prefill, attention, shared_domain(ctx, spec.gpu))
    summary = {"lpu_chips_per_pool": per_pool, "lpu_pools": units, "attention_replicas": attn_reps,
               "link": link.name, "micro_batches": spec.micro_batches}
    racks, power = gpu_footprint(ctx, spec.gpu, [gpu_full])
    racks["lpu"] = lpu_racks
    notes = [f"AFD: {p} prefill + {attn_reps} attention replicas on GPUs; FFN in {units} LPU pool(s) of "
             f"{per_pool} chips ({wbytes / GB:.0f} GB of FFN weights need >= {need}); "
             f"{spec.micro_batches} micro-batch(es); link {link.name}"]
    decode, extra = Pool("decode", attention, AFDStepCost(afd)), []
    plan_summary = {"afd": summary}
    if s is not None:
        if head:
            sp = resolve(s, model)
            head_afd = AFDDeployment(head_arch(model), head_draft(attention),
                                     build_deployment(ffn_part(head_arch(model)), lsys.chip,
                                                      chips=max(1, per_pool // n_ffn_layers(model)), replicas=1,
                                                      precision=part.precision, catalog=ctx.catalog,
                                                      calibration=ctx.calibration),
                                     link, units=units, micro_batches=spec.micro_batches)
            timer = SpecDecodeCost(attention, head_afd.attention, sp.k, sp.acceptance, None,
                                   verify=AFDStepCost(afd), drafter=AFDStepCost(head_afd))
            name, where = f"{model.name} {s.method} head", "its attention on the GPUs, its FFN on the LPU pools"
        else:
            sp = resolve(s, draft_model)
            draft = lpx_draft(ctx, lsys.chip, draft_model, lpu_chips - units * per_pool, draft_min, attn_reps)
            timer = SpecDecodeCost(attention, draft, sp.k, sp.acceptance, link, verify=AFDStepCost(afd))
            name = draft_model.name
            where = (f"on {draft.par.replicas} LPU pipeline(s) of {draft.chips_per_replica} chips beside the FFN pools; "
                     f"token ids cross {link.name}")
            extra = [plain_pool(draft, "draft")]
        plan_summary["spec"] = spec_summary(name, "gpu+lpu" if head else "lpu", sp, timer)
        notes.append(f"spec: {name} drafts ({where}); the AFD step verifies k + 1 = {sp.k + 1} tokens per sequence; "
                     f"acceptance {fmt_acceptance(sp.acceptance)}")
        decode = Pool("decode", attention, timer, plan_summary["spec"])
    pools = [plain_pool(prefill, "prefill"), decode, plain_pool(ffn_dep, "ffn")] + extra
    return ctx.plan(pools, kv_link=kv_link, links={"gpu_lpu": link},
                    racks=racks, power_w=power + system_power_w(lsys, lpu_racks), notes=notes,
                    summary=plan_summary)
