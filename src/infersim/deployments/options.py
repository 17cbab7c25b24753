"""Command-line deployment options compiled into the same `DeploymentSpec` a deployment file gives,
so flags and files share one path from there on (modes.build_plan)."""
from __future__ import annotations

from infersim.catalog.hardware import HardwareCatalog
from pydantic import ValidationError

from infersim.deployments.spec import DecodePart, DeploymentSpec, EnginePart, GPUPart, LPUPart, SpecPart, check_spec
from infersim.errors import InputError
from infersim.mapping.deployment import engine_layout


def _at_least_one(**given) -> None:
    for label, v in given.items():
        if v is not None and v < 1:
            raise InputError(f"--{label.replace('_', '-')} must be at least 1, got {v}")


def _speculation(method, k, acceptance, draft_model) -> SpecPart | None:
    """The `spec:` section the --spec flags describe (None without --spec)."""
    if method is None:
        given = [o for o, v in (("--spec-k", k), ("--spec-acceptance", acceptance), ("--draft-model", draft_model))
                 if v is not None]
        if given:
            raise InputError(f"{', '.join(given)}: for speculative decoding only; add --spec mtp, eagle or draft")
        return None
    if method not in ("mtp", "eagle", "draft"):
        raise InputError(f"--spec '{method}' is unknown; choose mtp, eagle or draft (with --draft-model)")
    try:
        return SpecPart(method=method, k=k, acceptance=acceptance, draft_model=draft_model,
                        draft_on="gpu")
    except ValidationError as e:
        raise InputError(f"--spec {method}: {e.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def _pool(part, **fields):
    """A P/D pool section from flags; a layout pydantic refuses is one InputError."""
    try:
        return part(**fields)
    except ValidationError as e:
        raise InputError(f"P/D pool layout {', '.join(f'{k}={v}' for k, v in fields.items() if v is not None)}: "
                         f"{e.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def kind_of(catalog: HardwareCatalog, system: str) -> str:
    return catalog.chip(catalog.resolve_system(system).chip).kind


def spec_from_options(catalog: HardwareCatalog, *, system: str, model: str | None = None, chips: int | None = None,
                      tp: int | None = None, pp: int | None = None, ep: int | None = None,
                      replicas: int | None = None, precision: str | None = None, kv_precision: str | None = None,
                      prefill_replicas: int | None = None, decode_replicas: int | None = None,
                      decode_system: str | None = None, decode_tp: int | None = None, decode_ep: int | None = None,
                      prefill_tp: int | None = None, prefill_ep: int | None = None,
                      spec_method: str | None = None, spec_k: int | None = None,
                      spec_acceptance: float | list[float] | None = None,
                      draft_model: str | None = None, engine: str | None = None,
                      dp_attention: bool | None = None, prefill_dp_attention: bool | None = None,
                      decode_dp_attention: bool | None = None) -> DeploymentSpec:
    """The deployment the flags describe: mode `lpu` on an LPU/wafer chip or system, `pd` when
    prefill/decode replicas are given, else `gpu`; `spec_method` (mtp, eagle or draft with
    `draft_model`) adds speculative decoding drafted on the decoding GPUs; `engine` names the GPU
    serving engine (None: the default); `dp_attention` True/False reads tp and ep in the engines'
    convention (a replica of tp GPUs, attention data parallel over them or not; GPUPart), and
    `prefill_dp_attention` / `decode_dp_attention` a P/D pool's `prefill_tp/ep`, `decode_tp/ep`. Unknown
    names and impossible combinations are refused here, each with the fix."""
    _at_least_one(chips=chips, tp=tp, pp=pp, ep=ep, replicas=replicas, prefill_replicas=prefill_replicas,
                  decode_replicas=decode_replicas, decode_tp=decode_tp, decode_ep=decode_ep, prefill_tp=prefill_tp,
                  prefill_ep=prefill_ep, spec_k=spec_k)
    spec = _speculation(spec_method, spec_k, spec_acceptance, draft_model)
    if dp_attention is not None and kind_of(catalog, system) == "gpu":
        if tp is None:
            raise InputError("--dp-attention needs --tp: the GPUs of one engine instance (attention runs data parallel "
                             "over them, experts by EP)")
        tp, ep, moe_ep = engine_layout(tp, ep or 1, dp_attention)
    else:
        moe_ep = None
    kind = kind_of(catalog, system)
    disagg = prefill_replicas is not None or decode_replicas is not None
    if not disagg:
        extra = [o for o, v in (("--decode-system", decode_system), ("--decode-tp", decode_tp),
                                ("--decode-ep", decode_ep), ("--prefill-tp", prefill_tp), ("--prefill-ep", prefill_ep),
                                ("prefill dp_attention", prefill_dp_attention),
                                ("decode dp_attention", decode_dp_attention))
                 if v is not None]
        if extra:
            raise InputError(f"{', '.join(extra)}: for a disaggregated deployment only; add --prefill-replicas N "
                             "--decode-replicas M or drop them")
    name = system  # the spec of a command line is named after its system
    if kind in ("lpu", "wafer"):
        if disagg:
            raise InputError("--prefill-replicas/--decode-replicas split GPU replicas; for LPU or wafer chips use a "
                             "deployment file (--deployment)")
        if spec is not None:
            raise InputError("--spec drafts on GPUs; an LPU/wafer deployment takes speculative decoding from a "
                             "deployment file (mode: lpu with a spec: section, e.g. examples/deployments/lpx-spec.yaml)")
        given = [o for o, v in (("--tp", tp), ("--pp", pp), ("--ep", ep)) if v not in (None, 1)]
        given += ["--dp-attention"] if dp_attention is not None else []
        if given:
            raise InputError(f"{', '.join(given)}: an LPU/wafer replica is one layer pipeline over all its chips; "
                             "set --chips and --replicas instead")
        part = LPUPart(system=system, racks=None, total_chips=chips, replicas=replicas, precision=precision,
                       kv_precision=kv_precision)
        return check_spec(DeploymentSpec(name=name, mode="lpu", model=model, lpu=part), name)
    gpu = dict(system=system, racks=None, tp=tp, pp=pp or 1, ep=ep or 1, moe_ep=moe_ep, precision=precision,
               kv_precision=kv_precision)
    if not disagg:
        return check_spec(DeploymentSpec(name=name, mode="gpu", model=model, spec=spec, engine=EnginePart(name=engine),
                                         gpu=GPUPart(chips=chips, replicas=replicas, **gpu)), name)
    if prefill_replicas is None or decode_replicas is None:
        raise InputError("a disaggregated deployment needs both --prefill-replicas and --decode-replicas")
    clash = [o for o, v in (("--replicas", replicas), ("--chips", chips)) if v is not None]
    if clash:
        raise InputError(f"{' and '.join(clash)} cannot be combined with --prefill-replicas/--decode-replicas "
                         "(each pool's size is its replicas x tp x pp x ep); drop them")
    decode = (_pool(DecodePart, system=decode_system, tp=decode_tp, ep=decode_ep, dp_attention=decode_dp_attention)
              if decode_system or decode_tp or decode_ep else None)
    prefill = (_pool(DecodePart, tp=prefill_tp, ep=prefill_ep, dp_attention=prefill_dp_attention)
               if prefill_tp or prefill_ep else None)
    return check_spec(DeploymentSpec(name=name, mode="pd", model=model, decode=decode, prefill=prefill, spec=spec,
                                     engine=EnginePart(name=engine),
                                     gpu=GPUPart(prefill_replicas=prefill_replicas, decode_replicas=decode_replicas,
                                                 **gpu)), name)
