"""Speculative decoding whose draft lives on SRAM chips (LPU / wafer), for modes `lpu` and `afd`.

Mode `lpu` (draft and target both on LPUs, as Groq and Cerebras serve it): the racks are split into
units of one target layer pipeline and one draft pipeline beside it (a draft model), or the target's
MTP / EAGLE head runs as one more stage of the target's own pipeline; the two share the racks' chip
domain, whose C2C links carry what crosses between them (costmodel.specdec.sram_spec_timer).
Mode `afd` takes a draft model on its own LPU pipeline carved from the LPX racks beside the FFN
pools (`afd_draft_chips`, `lpx_draft`), or the target's head as an AFD step of a one-layer model
(modes/afd.py)."""
from __future__ import annotations

import math

from infersim.catalog.models import ModelArch, load_model
from infersim.catalog.hardware import SystemSpec
from infersim.costmodel.specdec import sram_draft, sram_spec_timer, head_draft
from infersim.deployments.plan import Plan, Pool, plain_pool
from infersim.errors import InputError
from infersim.mapping.deployment import Deployment, build_deployment
from infersim.modes._shared import GB, BuildContext, sram_chips_for_weights, system_power_w, whole_racks
from infersim.modes._speculative import check_mtp_head, fmt_acceptance, resolve, spec_summary


def draft_model_of(ctx: BuildContext, mode: str) -> ModelArch | None:
    """The spec section's draft model (None for an MTP / EAGLE head), after the checks every SRAM
    draft needs: a draft model drafts on the LPUs here, an MTP head needs the target's MTP layers."""
    s = ctx.spec.spec
    if s.method != "draft":
        check_mtp_head(s, ctx.model)
        return None
    if s.draft_on == "gpu":
        where = "no GPUs" if mode == "lpu" else "its GPUs busy with attention"
        raise InputError(f"spec.draft_on gpu: mode {mode} has {where}; its draft model runs on the LPUs (drop draft_on, "
                         "or use mode spec / gpu to draft on GPUs)")
    return load_model(s.draft_model)


def _lpu_unit(ctx: BuildContext, system: SystemSpec, draft_model: ModelArch) -> tuple[int, int, list[str]]:
    """(target chips, draft chips) of one unit: lpu.chips / spec.draft_chips where given; else the
    fewest whole racks holding both models' weights, split in proportion to their weight bytes
    (each pipeline keeps the same share of its SRAM for KV cache), each at least the fewest chips
    that hold its weights."""
    part, s, model, chip = ctx.spec.lpu, ctx.spec.spec, ctx.model, system.chip
    need_t, wt = sram_chips_for_weights(ctx, model, chip, part.precision)
    need_d, wd = sram_chips_for_weights(ctx, draft_model, chip, part.precision)
    for label, given, need, name, wb in (("lpu.chips", part.chips, need_t, model.name, wt),
                                         ("spec.draft_chips", s.draft_chips, need_d, draft_model.name, wd)):
        if given is not None and given < need:
            raise InputError(f"{label} {given}: {name}'s weights ({wb / GB:.0f} GB) need at least {need} {chip} chips "
                             f"of SRAM; raise {label} or leave it out")
    if part.chips is not None:
        per_d = s.draft_chips or max(need_d, math.ceil(part.chips * wd / wt))
        return part.chips, per_d, []
    unit = whole_racks(need_t + (s.draft_chips or need_d), system.n_chips)
    per_d = s.draft_chips or max(need_d, min(unit - need_t, round(unit * wd / (wt + wd))))
    return unit - per_d, per_d, [f"each unit spans {unit} chips (the fewest whole {system.name} racks holding both "
                                 f"models; target SRAM needs >= {need_t}, draft >= {need_d})"]


def lpu_speculative_plan(ctx: BuildContext, system: SystemSpec) -> Plan:
    """Mode `lpu` with a `spec:` section: target and draft both on the racks' SRAM chips."""
    part, model, chip = ctx.spec.lpu, ctx.model, system.chip
    if part.racks is None:
        raise InputError("lpu: speculative decoding needs a deployment file with lpu.racks")
    draft_model = draft_model_of(ctx, "lpu")
    total = system.n_chips * part.racks
    notes = []
    if draft_model is None:  # the head is a stage of the target's pipeline: no chips of its own
        need, wbytes = sram_chips_for_weights(ctx, model, chip, part.precision)
        per_t, per_d = part.chips or whole_racks(need, system.n_chips), 0
        if per_t < need:
            raise InputError(f"lpu.chips {per_t}: {model.name}'s weights ({wbytes / GB:.0f} GB) need at least {need} "
                             f"{chip} chips of SRAM; raise lpu.chips or leave it out")
    else:
        per_t, per_d, notes = _lpu_unit(ctx, system, draft_model)
    unit = per_t + per_d
    if unit > total:
        raise InputError(f"a target pipeline of {per_t} and a draft pipeline of {per_d} {chip} chips need {unit} chips "
                         f"but {part.racks} x {system.name} has {total}; set lpu.racks to at least "
                         f"{-(-unit // system.n_chips)} (or pick a smaller draft)")
    pipelines = total // unit
    target = build_deployment(model, chip, chips=per_t * pipelines, replicas=pipelines, precision=part.precision,
                              kv_precision=part.kv_precision, catalog=ctx.catalog, calibration=ctx.calibration)
    sp = resolve(ctx.spec.spec, draft_model or model)
    if draft_model is None:
        draft, name = head_draft(target), f"{model.name} {sp.method} head"
    else:
        draft = sram_draft(draft_model, chip, target.plan.name, per_d, pipelines, ctx.catalog, ctx.calibration)
        name = draft_model.name
    timer = sram_spec_timer(target, draft, sp.k, sp.acceptance, head=draft_model is None)
    summary = spec_summary(name, target.chip.kind, sp, timer)
    summary["link"] = timer.link.name if timer.link is not None else None
    where = (f"as one more stage of each target pipeline" if draft_model is None
             else f"on {pipelines} pipeline(s) of {per_d} chips beside the target's")
    notes += [f"{pipelines} {chip} target pipeline(s) of {per_t} chips; {total - unit * pipelines} chips unused",
              f"spec: {name} drafts {where}; k={sp.k}, acceptance {fmt_acceptance(sp.acceptance)}; token ids "
              f"{'and the last hidden state ' if draft_model is None else ''}cross "
              f"{summary['link'] or 'no link (same chip)'} twice per cycle"]
    pools = [Pool("both", target, timer, summary)] + ([] if draft_model is None else [plain_pool(draft, "draft")])
    racks = float(part.racks)
    return ctx.plan(pools, racks={"lpu": racks}, power_w=system_power_w(system, racks), notes=notes,
                    summary={"spec": summary}, links={} if timer.link is None else {"draft": timer.link})


def afd_draft_chips(ctx: BuildContext, chip: str, draft_model: ModelArch) -> int:
    """Chips one LPX draft pipeline needs at least: spec.draft_chips, else the fewest whose SRAM
    holds the draft's weights."""
    need, wbytes = sram_chips_for_weights(ctx, draft_model, chip, ctx.spec.lpu.precision)
    given = ctx.spec.spec.draft_chips
    if given is not None and given < need:
        raise InputError(f"spec.draft_chips {given}: {draft_model.name}'s weights ({wbytes / GB:.0f} GB) need at least "
                         f"{need} {chip} chips of SRAM; raise it or leave it out")
    return given or need


def lpx_draft(ctx: BuildContext, chip: str, draft_model: ModelArch, left: int, min_chips: int,
              attention_replicas: int) -> Deployment:
    """The LPX draft pipelines of mode afd, on the `left` chips the FFN pools leave: one per
    attention replica while chips last, each of spec.draft_chips chips or an even share of them."""
    pipes = max(1, min(attention_replicas, left // min_chips))
    per = ctx.spec.spec.draft_chips or left // pipes
    return sram_draft(draft_model, chip, ctx.spec.lpu.precision, per, pipes, ctx.catalog, ctx.calibration)
