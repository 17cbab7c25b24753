"""The deployment families `infersim frontier` compares, enumerated for one model.

A family is one way of serving (GPU aggregated on a given rack, GPU + MTP, prefill/decode pools,
LPU only, AFD at one LPX:NVL72 ratio, LPX-drafted speculative decoding, AFD + MTP, CS-3, AMD
GPUs) and a small grid of its knobs (tensor / expert parallelism, precision, micro-batches, draft
length). Each grid point is an ordinary deployment (deployments/spec.py), evaluated later at
every load. Rack counts that depend on the model's size (LPU-only racks, AFD's NVL72 racks at a
ratio, CS-3 systems) start at the fewest whole racks whose plan builds: the model's weights must
fit; more racks only add replicas. Nothing here is tuned: the grids are the knobs' usual values.
A family that cannot apply to the model (no MTP head, no draft model sharing its vocabulary) is
kept with the reason it was skipped.
"""
from __future__ import annotations

import copy
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Optional

from infersim.errors import InputError
from infersim.sweep.spec import set_path

VR = "vr-nvl72"
LPX = "lpx"
AFD_RATIOS = (1, 2, 4)           # LPX racks per NVL72 rack
SPEC_K = (2, 4, 6)               # drafted tokens per verification, LPX-drafted speculative decoding
MAX_RACKS_PROBED = 64            # the fewest racks that hold the model is searched up to this
# One serving engine for every family with GPUs, so that families differ by hardware and mode, not
# by host overhead: NVIDIA Dynamo over TensorRT-LLM, the engine that carries activations between GPU
# attention and LPU FFN in AFD (examples/deployments); the default engine (vllm) has more host work.
ENGINE = "dynamo-trtllm"
AFD_BASE = {"mode": "afd", "gpu": {"system": VR, "racks": 1, "tp": 8, "precision": "fp8", "prefill_replicas": 2},
            "lpu": {"system": LPX, "racks_per_gpu_rack": 1, "precision": "mixed"}, "link": "gpu-lpu-direct",
            "engine": ENGINE}
# (tp, ep) layouts whose tp x ep divides a 72-GPU rack (a layout that does not is no deployment): tensor
# parallel alone, DP attention with 8-way and rack-wide (72-way) expert parallelism, and 8 TP ranks
# with 9-way DP attention; ep > 1 needs a MoE model (dense ones drop those points with the reason)
RACK_LAYOUTS = [(1, 1), (2, 1), (4, 1), (8, 1), (1, 8), (1, 72), (8, 9)]
GPU_GRID = {("gpu.tp", "gpu.ep"): RACK_LAYOUTS, "gpu.precision": ["fp8", "fp4"]}


@dataclass
class Family:
    """A family's name, what it is, and its deployments as (label, deployment dict) pairs; `skipped`
    says why a family has none for this model."""
    name: str
    description: str
    deployments: list[tuple[str, dict]] = field(default_factory=list)
    skipped: Optional[str] = None


def _set(doc: dict, dotted: str, value: Any) -> None:
    """`doc[a][b] = value` for `a.b`: the sweep file's grid keys (sweep.spec.set_path)."""
    set_path(doc, dotted, value, "frontier")


def grid(name: str, base: dict, knobs: dict, fixed: tuple[str, ...] = ()) -> list[tuple[str, dict]]:
    """Every combination of `knobs` (dotted paths into the deployment; a tuple of paths takes tuples
    of values that go together, e.g. a (tp, ep) layout) applied to `base`, labelled
    `name[key=value,...]` (after the `fixed` labels)."""
    out = []
    keys = list(knobs)
    for values in itertools.product(*(knobs[k] for k in keys)):
        dep = copy.deepcopy(base)
        pairs = []
        for k, v in zip(keys, values):
            pairs += list(zip(k, v)) if isinstance(k, tuple) else [(k, v)]
        for k, v in pairs:
            _set(dep, k, v)
        label = ",".join([*fixed, *(f"{k.split('.')[-1]}={v}" for k, v in pairs)])
        out.append((f"{name}[{label}]" if label else name, dep))
    return out


def fewest_racks(model, base: dict, path: str, catalog, calibration, start: int = 1) -> tuple[Optional[int], str]:
    """The smallest value of the integer field `path` (e.g. `lpu.racks`) from `start` at which
    `base`'s plan builds for `model` (the weights fit), and the last reason it did not."""
    from infersim.deployments.spec import DeploymentSpec
    from infersim.modes import build_plan
    reason = ""
    for n in range(start, MAX_RACKS_PROBED + 1):
        dep = copy.deepcopy(base)
        _set(dep, path, n)
        try:
            build_plan(DeploymentSpec.model_validate({"name": "probe", **dep}), model, catalog, calibration)
            return n, ""
        except InputError as e:
            reason = str(e)
    return None, f"does not fit in {MAX_RACKS_PROBED} racks ({reason})"


def max_draft_fraction(ks=SPEC_K) -> float:
    """The largest draft : target cost ratio (active parameters) at which drafting can pay at any
    k of `ks`, with the default draft acceptance: a cycle of k draft steps and one verify step
    yields E(k) tokens, so drafting at f target-steps per draft token beats plain decoding only
    if k f + 1 < E(k), f < (E(k) - 1) / k (a serial bound: a draft on other chips still waits
    for the verify step's tokens)."""
    from infersim.costmodel.specdec import DRAFT_DEFAULT_ACCEPTANCE, expected_tokens_per_step
    return max((expected_tokens_per_step(DRAFT_DEFAULT_ACCEPTANCE, k) - 1) / k for k in ks)


def draft_model_for(model) -> Optional[str]:
    """The smallest catalog model sharing `model`'s vocabulary (a draft must use the target's
    tokenizer; equal vocabulary sizes in one family are the check the catalog allows) whose active
    parameters are under `max_draft_fraction()` of the target's, or None."""
    from infersim.catalog.models import catalog_names, load_model
    best = None
    limit = max_draft_fraction() * model.active_params
    for name in catalog_names():
        if name == model.name:
            continue
        other = load_model(name)
        if other.vocab == model.vocab and other.active_params < limit:
            if best is None or other.total_params < best.total_params:
                best = other
    return None if best is None else best.name


def _with_min(fam: Family, model, base: dict, path: str, catalog, calibration, multiples,
              knobs: Callable[[int], dict] = lambda n: {}) -> Family:
    """`fam` with `base` at `m` times the fewest racks (`path`) that hold the model for each `m` of
    `multiples`, crossed with `knobs(racks)`; skipped (with the reason) when none holds it."""
    n, why = fewest_racks(model, base, path, catalog, calibration)
    if n is None:
        fam.skipped = why
        return fam
    for m in multiples:
        dep = copy.deepcopy(base)
        _set(dep, path, n * m)
        fam.deployments += grid(fam.name, dep, knobs(n * m), (f"{path.split('.')[-1]}={n * m}",))
    return fam


def families(model, catalog, calibration) -> list[Family]:
    """Every family for `model` (see the module docstring), in a fixed order."""
    out = []
    for system in (VR, "gb200-nvl72"):
        f = Family(f"gpu-{system}", f"GPU aggregated on {system} (one rack), TP x EP x precision")
        f.deployments = grid(f.name, {"mode": "gpu", "gpu": {"system": system, "racks": 1}, "engine": ENGINE}, GPU_GRID)
        out.append(f)
    f = Family(f"gpu-mtp-{VR}", f"GPU aggregated on {VR} with the model's MTP head drafting k tokens")
    if model.mtp_layers:
        f.deployments = grid(f.name, {"mode": "gpu", "gpu": {"system": VR, "racks": 1},
                                      "spec": {"method": "mtp"}, "engine": ENGINE},
                             {("gpu.tp", "gpu.ep"): [(4, 1), (8, 1), (1, 8), (1, 72)],
                              "gpu.precision": ["fp8", "fp4"], "spec.k": [1, 2, 3]})
    else:
        f.skipped = f"{model.name} has no MTP layers"
    out.append(f)
    f = Family(f"pd-{VR}", f"{VR} split into prefill and decode pools (tp 8 replicas)")
    f.deployments = grid(f.name, {"mode": "pd", "gpu": {"system": VR, "racks": 1, "tp": 8}, "engine": ENGINE},
                         {"gpu.prefill_replicas": [1, 2, 3, 4], "gpu.precision": ["fp8", "fp4"]})
    out.append(f)
    out.append(_with_min(Family("lpu-lpx", "LPU only: Groq 3 LPX racks, weights and KV cache in SRAM"), model,
                         {"mode": "lpu", "lpu": {"system": LPX, "racks": 1, "precision": "mixed"}}, "lpu.racks",
                         catalog, calibration, (1, 2)))
    for r in AFD_RATIOS:
        base = copy.deepcopy(AFD_BASE)
        base["lpu"]["racks_per_gpu_rack"] = r
        out.append(_with_min(Family(f"afd-{r}lpx-per-nvl72", f"AFD: attention on {VR}, FFN on {r} LPX per NVL72 "
                                    "(NVL72 racks: the fewest whose LPX share holds the FFN)"),
                             model, base, "gpu.racks", catalog, calibration, (1,), _afd_knobs({"micro_batches": [1, 2, 4]})))
    out.append(_spec_family(model, catalog, calibration))
    f = Family("afd-mtp", f"AFD on {VR} + LPX with the model's MTP head drafting through the same split")
    if model.mtp_layers:
        for r in AFD_RATIOS:
            base = {**copy.deepcopy(AFD_BASE), "spec": {"method": "mtp"}}
            base["lpu"]["racks_per_gpu_rack"] = r
            sub = _with_min(Family(f"afd-mtp-{r}lpx-per-nvl72", ""), model, base, "gpu.racks", catalog, calibration,
                            (1,), _afd_knobs({"spec.k": [1, 2, 3]}))
            f.deployments += sub.deployments
        f.skipped = None if f.deployments else "no AFD ratio holds the model"
    else:
        f.skipped = f"{model.name} has no MTP layers"
    out.append(f)
    out.append(_with_min(Family("cs3", "Cerebras CS-3 wafers, weights in SRAM, layer pipeline across wafers"), model,
                         {"mode": "lpu", "lpu": {"system": "cs3", "racks": 1, "precision": "bf16"}}, "lpu.racks",
                         catalog, calibration, (1, 2)))
    f = Family("gpu-mi355x-8", "AMD MI355X, 8-GPU nodes, aggregated")
    f.deployments = grid(f.name, {"mode": "gpu", "gpu": {"system": "mi355x-8", "racks": 1, "tp": 8}, "engine": ENGINE},
                         {"gpu.precision": ["fp8", "fp4"], "gpu.racks": [1, 2]})
    out.append(f)
    return out


def _afd_knobs(knobs: dict) -> Callable[[int], dict]:
    """AFD knobs plus the prefill replicas, 1, 2 or 4 per NVL72 rack (of its 9 tp-8 replicas): at
    8k-token prompts a fixed count would cap every multi-rack point at the same prefill rate."""
    return lambda racks: {**knobs, "gpu.prefill_replicas": [racks, 2 * racks, 4 * racks]}


def _spec_family(model, catalog, calibration) -> Family:
    f = Family("spec-lpx-draft", f"{VR} verifies, a draft model on LPX drafts k tokens (acceptance: the draft "
               "default, an assumption)")
    draft = draft_model_for(model)
    if draft is None:
        f.skipped = f"no catalog model shares {model.name}'s vocabulary ({model.vocab}) to draft for it"
        return f
    base = {"mode": "spec", "gpu": {"system": VR, "racks": 1, "tp": 8, "precision": "fp8"},
            "lpu": {"system": LPX, "racks_per_gpu_rack": 1, "precision": "mixed"}, "link": "gpu-lpu-direct",
            "spec": {"method": "draft", "draft_model": draft, "draft_on": "lpu"}, "engine": ENGINE}
    f.deployments = grid(f.name, base, {"spec.k": list(SPEC_K)})
    return f


def only_families(fams: list[Family], only: Optional[list[str]]) -> list[Family]:
    """The families named in `only` (all of them when it is empty or None); an unknown name is an
    InputError listing the known ones."""
    if not only:
        return fams
    unknown = sorted(set(only) - {f.name for f in fams})
    if unknown:
        raise InputError(f"unknown family '{unknown[0]}'; choose from {', '.join(f.name for f in fams)}")
    return [f for f in fams if f.name in only]
