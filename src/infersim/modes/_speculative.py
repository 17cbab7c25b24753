"""A deployment's `spec:` section resolved to a draft length and an acceptance vector, and the
speculative step timer of a GPU pool whose drafts run on its own GPUs (an MTP / EAGLE head, or a
separate draft model). Modes gpu and pd use it for the pool that decodes; mode spec for draft_on: gpu."""
from __future__ import annotations

from dataclasses import dataclass, replace

from infersim.catalog.models import ModelArch, load_model
from infersim.catalog.speculative import default_acceptance
from infersim.costmodel.specdec import (DRAFT_DEFAULT_ACCEPTANCE, DRAFT_DEFAULT_K, SpecDecodeCost,
                                        acceptance_vector, head_draft)
from infersim.deployments.plan import Pool, plain_pool
from infersim.deployments.spec import SpecPart
from infersim.errors import InputError
from infersim.mapping.deployment import Deployment
from infersim.modes._shared import BuildContext, gpu_deployment



@dataclass(frozen=True)
class Speculation:
    method: str
    k: int
    acceptance: tuple[float, ...]  # conditional, per drafted position
    source: str                    # where the acceptance came from

    def summary(self) -> dict:
        return {"method": self.method, "k": self.k, "acceptance": list(self.acceptance), "acceptance_source": self.source}


def fmt_acceptance(acceptance) -> str:
    """A scalar or an acceptance vector, for notes and reports."""
    if isinstance(acceptance, (int, float)):
        return f"{acceptance:g}"
    vec = list(acceptance)
    return f"{vec[0]:g} per token" if len(set(vec)) == 1 else "[" + ", ".join(f"{a:.3g}" for a in vec) + "]"


def resolve(part: SpecPart, model: ModelArch) -> Speculation:
    """k and the acceptance vector: the section's, else the published entry for a head method
    (catalog/data/speculative.yaml), else the draft-model defaults."""
    acc, k = part.acceptance, part.k
    if acc is not None:
        k = k or (len(acc) if isinstance(acc, list) else DRAFT_DEFAULT_K if part.method == "draft" else None)
        if k is None:  # a scalar for a head: its published default length
            k = default_acceptance(part.method, model.name).default_k
        return Speculation(part.method, k, acceptance_vector(acc, k), "given")
    if part.method == "draft":
        k = k or DRAFT_DEFAULT_K
        return Speculation("draft", k, acceptance_vector(DRAFT_DEFAULT_ACCEPTANCE, k),
                           f"assumed {DRAFT_DEFAULT_ACCEPTANCE:g} per token (Leviathan et al. 2023: 0.6-0.8 for "
                           "same-family drafts)")
    entry = default_acceptance(part.method, model.name)
    vec = entry.conditional()
    k = k or entry.default_k
    if k > len(vec):
        raise InputError(f"spec.k {k}: the published acceptance for {part.method} ({entry.name}) covers {len(vec)} "
                         f"drafted positions; lower k or give spec.acceptance with {k} entries")
    return Speculation(part.method, k, vec[:k], f"{entry.name} ({entry.basis}): {entry.source}")


def check_mtp_head(part: SpecPart, model: ModelArch) -> None:
    """An MTP draft needs the target's own MTP layers (every mode that drafts with a head)."""
    if part.method == "mtp" and model.mtp_layers < 1:
        raise InputError(f"spec.method mtp: {model.name} has no MTP layers in its config; use method eagle or a "
                         "draft model (method: draft)")


def speculative_pool(ctx: BuildContext, dep: Deployment, role: str) -> tuple[Pool, dict]:
    """The pool of `dep` with drafts on its own GPUs when the spec has a `spec:` section (else a
    plain pool), and the summary of the speculation ({} without one)."""
    part = ctx.spec.spec
    if part is None:
        return plain_pool(dep, role), {}
    if part.draft_chips is not None:
        raise InputError(f"deployment '{ctx.spec.name}': spec.draft_chips sizes a draft pipeline on SRAM chips (modes lpu "
                         f"and afd); mode {ctx.spec.mode} drafts on its GPUs: drop it")
    if part.draft_on != "gpu":
        raise InputError(f"deployment '{ctx.spec.name}': spec.draft_on lpu needs mode: spec (with an lpu section); "
                         f"mode {ctx.spec.mode} drafts on its own GPUs (method mtp or eagle, or draft_on: gpu)")
    sp = resolve(part, dep.model)
    check_mtp_head(part, dep.model)
    if part.method == "draft":
        draft_model = load_model(part.draft_model)
        draft = replace(gpu_deployment(ctx, ctx.spec.gpu, arch=draft_model), par=dep.par)
        name = draft_model.name
    else:
        draft, name = head_draft(dep), f"{dep.model.name} {part.method} head"
    timer = SpecDecodeCost(dep, draft, sp.k, sp.acceptance, None)
    summary = spec_summary(name, "gpu", sp, timer)
    return Pool(role, dep, timer, summary), summary


def spec_summary(draft_name: str, draft_on: str, sp: Speculation, timer) -> dict:
    """What a plan's summary says of its speculation: the drafter, where it runs, k, acceptance
    (and its source) and the expected tokens per verification."""
    return {"draft_model": draft_name, "draft_on": draft_on, **sp.summary(),
            "expected_tokens_per_verify": timer.expected}
