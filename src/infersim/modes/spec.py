"""Mode `spec`: speculative decoding. GPU replicas verify what a draft model proposes; the draft
runs on LPU pipelines (over the GPU<->LPU link) or on the same GPUs (costmodel/specdec.py); on
the GPUs it may be the target's own MTP or EAGLE head (modes/_speculative.py)."""
from __future__ import annotations

from infersim.catalog.models import load_model
from infersim.costmodel.specdec import SpecDecodeCost
from infersim.deployments.plan import Plan, Pool, plain_pool
from infersim.errors import InputError
from infersim.mapping.deployment import build_deployment
from infersim.modes import register
from infersim.modes._shared import (GB, BuildContext, gpu_deployment, gpu_footprint, gpu_lpu_link,
                                    sram_chips_for_weights, sram_system, system_power_w)
from infersim.modes._speculative import fmt_acceptance, resolve, spec_summary, speculative_pool


@register("spec", needs=("gpu", "spec"), description="GPU target verifies a draft model's tokens (draft on LPUs or GPUs)")
def build(ctx: BuildContext) -> Plan:
    spec, s = ctx.spec, ctx.spec.spec
    target = gpu_deployment(ctx, spec.gpu)
    racks, power = gpu_footprint(ctx, spec.gpu, [target])
    if s.draft_on == "gpu":  # a draft model or the target's own MTP / EAGLE head on the same GPUs
        pool, summary = speculative_pool(ctx, target, "both")
        notes = [f"spec: {summary['draft_model']} drafts on the target's GPUs; k={summary['k']}, acceptance "
                 f"{fmt_acceptance(summary['acceptance'])}"]
        return ctx.plan([pool], racks=racks, power_w=power, notes=notes, summary={"spec": summary})
    if s.draft_chips is not None:
        raise InputError("spec.draft_chips: mode spec spreads its LPU draft over the deployment's LPU racks; drop it "
                         "(it sizes draft pipelines in modes lpu and afd)")
    draft_model = load_model(s.draft_model)
    sp = resolve(s, draft_model)
    part = spec.lpu
    if spec.gpu.racks is None:
        raise InputError("spec: drafting on LPUs needs gpu.racks (the LPU racks follow from lpu.racks_per_gpu_rack)")
    lsys = sram_system(ctx, part)
    link = gpu_lpu_link(ctx)
    lpu_racks = part.racks_per_gpu_rack * spec.gpu.racks
    lpu_chips = int(round(lpu_racks * lsys.n_chips))
    need, wbytes = sram_chips_for_weights(ctx, draft_model, lsys.chip, part.precision)
    if need > lpu_chips:
        raise InputError(f"spec: draft model {draft_model.name} ({wbytes / GB:.0f} GB) needs {need} {lsys.chip} "
                         f"chips; the deployment has {lpu_chips}; raise lpu.racks_per_gpu_rack or pick a smaller "
                         "draft")
    # every target replica gets its own draft pipeline while chips last
    pipes = max(1, min(target.par.replicas, lpu_chips // need))
    per = lpu_chips // pipes
    draft = build_deployment(draft_model, lsys.chip, chips=per * pipes, replicas=pipes, precision=part.precision,
                             catalog=ctx.catalog, calibration=ctx.calibration)
    racks["lpu"] = lpu_racks
    power += system_power_w(lsys, lpu_racks)
    notes = [f"spec: draft {draft_model.name} on {pipes} LPU pipeline(s) of {per} chips; k={sp.k}, acceptance "
             f"{fmt_acceptance(sp.acceptance)}"]
    timer = SpecDecodeCost(target, draft, sp.k, sp.acceptance, link)
    summary = spec_summary(draft_model.name, s.draft_on, sp, timer)
    pools = [Pool("both", target, timer), plain_pool(draft, "draft")]
    return ctx.plan(pools, racks=racks, power_w=power, notes=notes, summary={"spec": summary}, links={"gpu_lpu": link})
