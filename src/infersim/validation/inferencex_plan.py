"""One InferenceX point -> the deployment that serves it, or a Skip with the reason.

This is the one place that decides what the simulator can stand in for: as layouts are modelled
(multi-worker prefill/decode disaggregation, MTP drafting on GPUs, ...) their branch here turns a
Skip into a `PointSetup`. Deployments go through the same pipeline as the command line
(`spec_from_options` -> `modes.build_plan`); nothing here is fitted.

Layouts (InferenceX's single-node columns -> infersim's `Parallelism`):
- tp = n_gpus, any ep, no DP attention: attention and dense layers tensor-parallel over the GPUs,
  routed experts spread over the same GPUs. infersim spreads experts over a replica's GPUs the
  same way whether the engine shards them by tensor or by expert (EP), so EP adds no all-to-all
  here; the point's ep is listed as an assumption.
- DP attention (tp = ep = n_gpus, dp_attention): attention data-parallel over the GPUs, experts
  over all of them: infersim's ep (attention data-parallel groups, each tp-way, experts over
  tp x ep chips), with tp = n_gpus / ep.
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
from infersim.validation.inferencex import InferenceXPoint
from infersim.validation.scenarios import Skip
from infersim.validation.simulated import engine_for

# InferenceX framework names -> the serving software engine_for knows (dynamo-* are disaggregated)
ENGINE_SOFTWARE = {"trt": "TensorRT-LLM", "dynamo-trt": "TensorRT-LLM", "sglang": "SGLang",
                   "dynamo-sglang": "SGLang", "mori-sglang": "SGLang", "atom": "ATOM"}
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


def _layout(p: InferenceXPoint) -> tuple[int, int, list[str]] | Skip:
    """(tp, ep) of one infersim replica for a single-node aggregated point, with its assumptions."""
    tp, ep = p.tp, p.ep or 1
    if tp is None:
        return Skip(p.id, "tp not recorded for an aggregated point; cannot lay it out")
    if tp != p.n_gpus:
        return Skip(p.id, f"tp {tp} on {p.n_gpus} GPUs: only single-replica layouts (tp = n_gpus) are mapped")
    notes = []
    if p.dp_attention is None:
        notes.append("dp_attention not recorded: assumed off")
    if p.dp_attention:
        if ep != tp:
            return Skip(p.id, f"dp_attention with ep {ep} != tp {tp}: layout not mapped")
        notes.append(f"DP attention: {tp} attention groups of 1 GPU (infersim ep={tp}), experts over all {tp} GPUs")
        return 1, tp, notes
    if ep > 1:
        notes.append(f"EP {ep}: routed experts spread over the {tp} GPUs as with tensor-parallel experts "
                     "(no all-to-all modelled)")
    return tp, 1, notes


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
    if p.disagg:
        return Skip(p.id, "disaggregated multi-node not modelled yet")
    if p.spec_decode == "mtp":
        return Skip(p.id, "MTP on GPU not modelled yet")
    layout = _layout(p)
    if isinstance(layout, Skip):
        return layout
    tp, ep, notes = layout
    software = ENGINE_SOFTWARE.get(p.framework, p.framework)
    engine, engine_note = engine_for(software)
    try:
        spec = spec_from_options(catalog, system=chip.name, model=model.name, chips=p.n_gpus, tp=tp, ep=ep,
                                 precision=p.precision)
        plan = build_plan(spec, model, catalog, calibration)
    except InputError as e:
        return Skip(p.id, str(e))
    if p.precision == "fp4":
        notes.append(FP4_NOTE)
    notes.append(engine_note)
    return PointSetup(p, plan, engine, tuple(notes))
