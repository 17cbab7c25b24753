"""One InferenceX point -> the deployment that serves it, or a Skip with the reason.

This is the one place that decides what the simulator can stand in for. Deployments go through
the same pipeline as the command line (`spec_from_options` -> `modes.build_plan`); nothing here is
fitted. What a point records maps as follows:
- parallelism: the engines' tp / ep / dp_attention per engine instance (a single-node point, or
  each prefill and decode worker of a disaggregated one) -> infersim's layout through
  `mapping.deployment.engine_layout` (DP attention: one attention rank per GPU, experts over all
  of them; without it attention is tensor-parallel and the experts sit whole on the engine's ep
  groups of the same GPUs, tensor-sharded at ep 1);
- disaggregated points: `pd` mode with the point's prefill and decode workers (KV over NVLink
  when both pools fit one scale-up domain, else over the GPUs' RDMA NICs: modes/pd.py);
- `spec_decode = mtp`: the model's MTP head drafting on the decoding GPUs, with the speculative
  catalog's default draft length and acceptance for the model (the points record neither);
- framework -> the cost model's engine (host work, CUDA graphs: catalog/data/engines.yaml) and
  the simulator's engine settings (max batch, admission: validation.simulated.engine_for).
"""
from __future__ import annotations

from dataclasses import dataclass

from infersim.calibration.efficiency import Calibration
from infersim.catalog.hardware import HardwareCatalog
from infersim.catalog.models import load_model
from infersim.deployments.options import spec_from_options
from infersim.deployments.plan import Plan
from infersim.errors import InputError
from infersim.modes import build_plan
from infersim.serving.config import EngineConfig
from infersim.validation.inferencex import InferenceXPoint, Pool
from infersim.validation.scenarios import Skip
from infersim.validation.simulated import engine_for

# InferenceX framework -> (serving software engine_for knows, the cost model's engine catalog name).
# ATOM (AMD's engine) is not in the engine catalog: vLLM's host behaviour is assumed for it.
FRAMEWORKS = {"trt": ("TensorRT-LLM", "trtllm"), "dynamo-trt": ("TensorRT-LLM", "dynamo-trtllm"),
              "sglang": ("SGLang", "sglang"), "dynamo-sglang": ("SGLang", "dynamo-sglang"),
              "mori-sglang": ("SGLang", "sglang"), "atom": ("ATOM", "vllm")}
FP4_NOTE = ("fp4: every weight stored as NVFP4 (the checkpoint keeps attention and dense layers in higher "
            "precision, only the MoE experts are FP4: dense-weight bytes are understated)")


@dataclass(frozen=True)
class PointSetup:
    """A point the simulator can predict: its plan, engine and what was assumed to build them."""

    point: InferenceXPoint
    plan: Plan
    engine: EngineConfig
    assumptions: tuple[str, ...]


def features(p: InferenceXPoint) -> tuple[str, ...]:
    """The serving features a point uses (a point can be in several feature groups)."""
    tags = ["disaggregated" if p.disagg else "aggregated"]
    pools = [x for x in (p.prefill, p.decode) if x is not None]
    if p.dp_attention or any(x.dp_attention for x in pools):
        tags.append("dp_attention")
    if (p.ep or 1) > 1 or any((x.ep or 1) > 1 for x in pools):
        tags.append("ep")
    if p.spec_decode == "mtp":
        tags.append("mtp")
    if len(tags) == 1 and not p.disagg:
        tags.append("tp_only")
    return tuple(tags)


def _layout_note(where: str, tp: int, ep: int | None, dp: bool | None) -> str:
    if dp:
        return f"{where}DP attention: {tp} attention ranks of 1 GPU, experts over all {tp} GPUs"
    note = f"{where}tp {tp}" + (f", engine ep {ep}: experts whole over {ep} groups of {tp // ep} of the {tp} GPUs "
                                f"(the MoE output all-reduced; the step waits for the busiest group)"
                                if (ep or 1) > 1 and tp % ep == 0 else "")
    return note + ("; dp_attention not recorded: assumed off" if dp is None else "")


def _aggregated(p: InferenceXPoint) -> dict | Skip:
    """spec_from_options arguments for a single-instance point, with notes."""
    if p.tp is None:
        return Skip(p.id, "tp not recorded for an aggregated point; cannot lay it out")
    if p.tp != p.n_gpus:
        return Skip(p.id, f"tp {p.tp} on {p.n_gpus} GPUs: only single-instance layouts (tp = n_gpus) are mapped")
    return {"options": dict(chips=p.n_gpus, tp=p.tp, ep=p.ep or 1, dp_attention=bool(p.dp_attention)),
            "notes": [_layout_note("", p.tp, p.ep, p.dp_attention)]}


def _pool_options(p: InferenceXPoint, pool: Pool | None, name: str) -> tuple[dict, str] | Skip:
    """spec_from_options arguments for one pool of a disaggregated point, and the note.

    Most points give each worker's engine tp (its GPUs) and ep; some (SGLang DP-attention workers)
    record tp 1 with workers of several GPUs: those are read as attention ranks of `tp` GPUs over
    the worker's gpus / workers GPUs, experts over all of them (infersim's own tp x ep layout)."""
    if pool is None or pool.tp is None or pool.workers is None:
        return Skip(p.id, f"disaggregated point without its {name} workers' tp and count")
    size = pool.gpus // pool.workers if pool.gpus is not None and pool.gpus % pool.workers == 0 else None
    if pool.gpus is None or size == pool.tp:
        return ({f"{name}_replicas": pool.workers, f"{name}_tp": pool.tp, f"{name}_ep": pool.ep or 1,
                 f"{name}_dp_attention": bool(pool.dp_attention)},
                f"{pool.workers} {name} worker(s): " + _layout_note("", pool.tp, pool.ep, pool.dp_attention))
    if size is None or size % pool.tp:
        return Skip(p.id, f"{name} GPUs {pool.gpus} do not split into {pool.workers} workers of tp {pool.tp}")
    return ({f"{name}_replicas": pool.workers, f"{name}_tp": pool.tp, f"{name}_ep": size // pool.tp},
            f"{pool.workers} {name} worker(s) of {size} GPUs recorded with tp {pool.tp}: read as {size // pool.tp} "
            f"attention ranks of {pool.tp} GPU(s), experts over all {size}")


def _disaggregated(p: InferenceXPoint) -> dict | Skip:
    options, notes = {}, []
    for name, pool in (("prefill", p.prefill), ("decode", p.decode)):
        o = _pool_options(p, pool, name)
        if isinstance(o, Skip):
            return o
        options.update(o[0])
        notes.append(o[1])
    return {"options": options, "notes": notes}


def map_point(p: InferenceXPoint, catalog: HardwareCatalog, calibration: Calibration) -> PointSetup | Skip:
    """The deployment serving point `p` (through spec_from_options / build_plan), or why not."""
    try:
        model = load_model(p.model)
    except InputError as e:
        return Skip(p.id, str(e))
    try:
        chip = catalog.chip(p.hardware)
    except InputError:
        return Skip(p.id, f"chip {p.hardware} not in catalog (add it with --hardware FILE.yaml)")
    layout = _disaggregated(p) if p.disagg else _aggregated(p)
    if isinstance(layout, Skip):
        return layout
    notes = list(layout["notes"])
    software, engine_name = FRAMEWORKS.get(p.framework, (p.framework, None))
    if p.framework == "atom":
        notes.append("engine: ATOM is not in the engine catalog; vLLM's host work and graphs assumed")
    engine, engine_note = engine_for(software)
    spec_options = {}
    if p.spec_decode == "mtp":
        spec_options = dict(spec_method="mtp")
        notes.append("MTP: draft length and acceptance not recorded; the speculative catalog's defaults for the "
                     "model (catalog/data/speculative.yaml)")
    try:
        spec = spec_from_options(catalog, system=chip.name, model=model.name, precision=p.precision,
                                 engine=engine_name, **layout["options"], **spec_options)
        plan = build_plan(spec, model, catalog, calibration)
    except InputError as e:
        return Skip(p.id, str(e))
    if p.precision == "fp4":
        notes.append(FP4_NOTE)
    notes.append(engine_note)
    return PointSetup(p, plan, engine, tuple(notes))
