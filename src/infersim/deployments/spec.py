"""Deployment files: one YAML format for every serving mode (validated by pydantic).

```yaml
name: vr-nvl72-lpx-afd
mode: afd              # gpu | pd | lpu | afd | spec (infersim/modes/)
model: nemotron-3-super  # optional default; --model overrides
gpu:                   # GPU racks (gpu, afd, spec)
  system: vr-nvl72     # a named system (one rack) or a chip
  racks: 1
  tp: 8
  ep: 1
  # moe_ep: 8            # ep 1 only: experts whole over 8 groups of the tp GPUs (engine EP without DP attention)
  # dp_attention: true   # engine convention: tp GPUs per instance, attention data parallel over
                         # them, experts by EP (compiled to tp 1 x ep 8; false: tp 8, moe_ep = ep; see GPUPart)
  precision: fp8
  prefill_replicas: 1  # pd / afd: GPU replicas that only prefill (pd: decode_replicas, default the rest, decode)
prefill: {tp: 4, ep: 1}  # pd: a prefill worker's layout when it differs from gpu's (each worker tp x ep x pp GPUs)
decode: {tp: 8, ep: 4}   # pd: a decode worker's layout (may span nodes: over the scale-out link)
lpu:                   # LPU / wafer racks (lpu, afd, spec)
  system: lpx
  racks_per_gpu_rack: 1   # the LPX : NVL72 ratio (afd, spec); lpu mode: `racks`
  precision: mixed
link: gpu-lpu-direct   # the GPU<->LPU path (afd, spec): gpu-lpu-ethernet-host | gpu-lpu-direct | gpu-lpu-on-package
micro_batches: 2       # afd: micro-batches in flight per attention replica (1 = no overlap)
spec:                  # spec mode: draft model on the LPUs (or GPUs), verification on the GPUs;
  method: draft        # gpu / pd modes: `mtp` or `eagle` heads drafting on the target's own GPUs;
                       # lpu mode: draft and target both on the LPUs (a draft model's pipeline beside
                       # the target's, or the target's head as one more stage of its pipeline);
                       # afd mode: the head's attention on the GPUs and its FFN on the LPUs, or a
                       # draft model on its own pipeline in the LPX racks beside the FFN pools
  draft_model: llama-3.1-8b   # method draft only
  draft_on: lpu        # draft: lpu (default) or gpu; mtp / eagle: gpu (modes lpu and afd place drafts themselves)
  draft_chips: 64      # lpu / afd modes, method draft: chips per draft pipeline (default: lpu: the unit's
                       # chips split in proportion to weight bytes; afd: the LPX chips the FFN pools leave)
  k: 4                 # drafted tokens per verification (default: the acceptance vector's length,
                       # the published entry's k for mtp/eagle, else 4)
  acceptance: 0.7      # scalar, or one per drafted position [a1, a2, ...]: P(token i accepted | 1..i-1
                       # were); default 0.7 for draft, catalog/data/speculative.yaml for mtp/eagle
routing:               # optional SLO classes: a premium share served by the LPU path
  premium_fraction: 0.2
  premium_path: lpu    # lpu (LPU-only pool) or afd
engine: {name: sglang, max_batch: 256, max_tokens_per_step: 8192}   # or just `engine: sglang`
```
`engine.name` is the serving engine (catalog/data/engines.yaml: sglang, trtllm, trtllm-cpp, vllm,
vllm-sync, dynamo-*; default vllm): its host work, overlap scheduler and CUDA graphs time the GPU step.
Every number is an input the user can change; nothing here is fitted.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infersim.errors import InputError
from infersim.inputs import BLOCK_TOKENS_RANGE, read_yaml_mapping, validated
from infersim.mapping.deployment import engine_layout
from infersim.mapping.engine import BLOCK_TOKENS, MAX_BATCH, MAX_TOKENS_PER_STEP, ROUTER
from infersim.serving.policies import ADMISSIONS, PREEMPTION_VICTIMS, QUEUE_ORDERS, ROUTERS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # .inf / .nan are no sizes or ratios


def _to_infersim_layout(part):
    """A section whose tp/ep are given in the engines' convention (`dp_attention` true or false)
    rewritten to infersim's (mapping.deployment.engine_layout); unchanged when dp_attention is None."""
    if part.dp_attention is not None:
        if part.tp is None:
            raise ValueError("dp_attention needs tp: the GPUs of one engine instance")
        if part.moe_ep is not None:
            raise ValueError("moe_ep is infersim's layout; with dp_attention give the engine's ep instead (without DP "
                             "attention it places the experts whole over ep groups of the tp GPUs)")
        tp, ep, moe_ep = engine_layout(part.tp, part.ep or 1, part.dp_attention)
        object.__setattr__(part, "tp", tp)
        object.__setattr__(part, "ep", ep)
        object.__setattr__(part, "moe_ep", moe_ep)
        object.__setattr__(part, "dp_attention", None)  # now in infersim's convention
    return part


class GPUPart(_Strict):
    """GPU chips. In a file: `racks` of a named `system` (rack or node), each split into replicas
    of tp x ep x pp. From command-line flags (`racks` None): `system` is a chip or a named system,
    filled with replicas as `chips` / `replicas` / tp say (mapping.deployment.build_deployment).

    `ep` is infersim's: attention data-parallel ranks of tp GPUs each, experts over tp x ep GPUs
    (mapping.deployment.Parallelism); `moe_ep` (ep 1 only, dividing tp) places the experts whole
    over moe_ep groups of the tp GPUs instead of tensor-sharding them. `dp_attention` (true or
    false) switches tp and ep to the engines' convention instead: a replica is `tp` GPUs, `ep` the
    engine's expert-parallel size (dividing tp), attention data parallel over the tp GPUs (experts
    over all of them) or tensor parallel (experts whole over ep groups of the tp GPUs: moe_ep); the
    section is rewritten to infersim's layout when read (mapping.deployment.engine_layout)."""

    system: str
    racks: Optional[int] = Field(1, ge=1)
    chips: Optional[int] = Field(None, ge=1)
    replicas: Optional[int] = Field(None, ge=1)
    tp: Optional[int] = Field(None, ge=1)  # None: DEFAULT_RACK_TP on racks, else build_deployment's default
    ep: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    moe_ep: Optional[int] = Field(None, ge=1)  # None: 1 (tensor-sharded experts at ep 1)
    dp_attention: Optional[bool] = None  # None: infersim's tp x ep; true/false: the engines' (see above)
    precision: Optional[str] = None
    kv_precision: Optional[str] = None
    prefill_replicas: int = Field(0, ge=0)            # pd / afd: replicas that only prefill
    decode_replicas: Optional[int] = Field(None, ge=1)  # pd: replicas that only decode (default: the rest)

    @model_validator(mode="after")
    def _engine_convention(self):
        return _to_infersim_layout(self)


class DecodePart(_Strict):
    """pd: one pool's workers (`prefill:` or `decode:` section) when they differ from the gpu
    section's: chip or system (command-line layouts only; with gpu.racks both pools are carved from
    the racks), tp and ep per worker; `dp_attention` reads them in the engines' convention, as in
    the gpu section."""

    system: Optional[str] = None
    tp: Optional[int] = Field(None, ge=1)
    ep: Optional[int] = Field(None, ge=1)
    moe_ep: Optional[int] = Field(None, ge=1)
    dp_attention: Optional[bool] = None

    @model_validator(mode="after")
    def _engine_convention(self):
        return _to_infersim_layout(self)


class LPUPart(_Strict):
    """LPU or wafer chips. In a file: `racks` of a named system (or wafers of a single-wafer
    system); lpu mode lays out layer pipelines of `chips` chips each (default: the fewest whole
    racks that hold the model). From flags (`racks` None): `total_chips` of `system` (a chip or
    system) split into `replicas` pipelines."""

    system: str
    racks: Optional[int] = Field(1, ge=1)
    racks_per_gpu_rack: float = Field(1.0, gt=0)  # afd / spec: the LPX : NVL72 ratio
    chips: Optional[int] = Field(None, ge=1)      # lpu mode: chips per pipeline
    total_chips: Optional[int] = Field(None, ge=1)  # flags: all chips (default: the system's, or sized)
    replicas: Optional[int] = Field(None, ge=1)     # flags: pipelines
    precision: Optional[str] = None
    kv_precision: Optional[str] = None


class SpecPart(_Strict):
    """Speculative decoding. method `draft`: a separate draft model (on LPUs or the GPUs); `mtp` /
    `eagle`: the target's own MTP or EAGLE head drafting on its GPUs (modes gpu, pd and spec).
    None fields take defaults when the plan is built (modes/_speculative.py)."""

    method: Literal["draft", "mtp", "eagle"] = "draft"
    draft_model: Optional[str] = None
    draft_on: Optional[Literal["lpu", "gpu"]] = None
    k: Optional[int] = Field(None, ge=1, le=32)
    acceptance: Optional[Union[float, list[float]]] = None
    draft_chips: Optional[int] = Field(None, ge=1)  # lpu / afd modes: chips per SRAM draft pipeline

    @model_validator(mode="after")
    def _method_fields(self) -> "SpecPart":
        head = self.method != "draft"
        if head and self.draft_model is not None:
            raise ValueError(f"method {self.method} drafts with the target's own head; drop draft_model (or use "
                             "method: draft)")
        if not head and self.draft_model is None:
            raise ValueError("method draft needs draft_model (a catalog model); or use method: mtp / eagle")
        if head and self.draft_chips is not None:
            raise ValueError(f"method {self.method} drafts with a head on the target's own chips; drop draft_chips")
        if head and self.draft_on == "lpu":
            raise ValueError(f"method {self.method} drafts on the target's GPUs; drop draft_on or set it to gpu")
        if self.draft_on is None:
            self.draft_on = "gpu" if head else "lpu"
        if isinstance(self.acceptance, list):
            if not self.acceptance:
                raise ValueError("acceptance is an empty list; give one probability per drafted token")
            if self.k is not None and len(self.acceptance) != self.k:
                raise ValueError(f"acceptance has {len(self.acceptance)} entries but k is {self.k}; give one per "
                                 "drafted token (or drop k)")
        return self


class RoutingPart(_Strict):
    premium_fraction: float = 0.2
    premium_path: Literal["lpu", "afd"] = "lpu"


class EnginePart(_Strict):
    name: Optional[str] = None  # serving engine (catalog/data/engines.yaml); None: its documented default
    max_batch: int = Field(MAX_BATCH, ge=1)
    max_tokens_per_step: int = Field(MAX_TOKENS_PER_STEP, ge=1)
    chunk_tokens: Optional[int] = Field(None, ge=1)
    block_tokens: int = Field(BLOCK_TOKENS, ge=BLOCK_TOKENS_RANGE[0], le=BLOCK_TOKENS_RANGE[1])
    prefix_caching: bool = True
    # policy names, checked against the registries of serving/policies.py
    admission: str = "eager"
    router: str = ROUTER
    queue_order: str = "fcfs"
    preemption: str = "newest"

    @field_validator("admission", "router", "queue_order", "preemption")
    @classmethod
    def _registered(cls, name: str, info):
        registry = {"admission": ADMISSIONS, "router": ROUTERS, "queue_order": QUEUE_ORDERS,
                    "preemption": PREEMPTION_VICTIMS}[info.field_name]
        if name not in registry:
            raise ValueError(f"'{name}' is not one of {', '.join(registry)}")
        return name


class DeploymentSpec(_Strict):
    name: str
    mode: str  # a registered mode (infersim/modes/): gpu, pd, lpu, afd, spec, ...
    model: Optional[str] = None
    description: str = ""
    gpu: Optional[GPUPart] = None
    prefill: Optional[DecodePart] = None
    decode: Optional[DecodePart] = None
    lpu: Optional[LPUPart] = None
    link: Optional[str] = None
    micro_batches: int = Field(2, ge=1, le=16)
    spec: Optional[SpecPart] = None
    routing: Optional[RoutingPart] = None
    engine: EnginePart = EnginePart()

    @model_validator(mode="before")
    @classmethod
    def _engine_by_name(cls, raw):
        """`engine: sglang` is short for `engine: {name: sglang}`."""
        if isinstance(raw, dict) and isinstance(raw.get("engine"), str):
            raw = {**raw, "engine": {"name": raw["engine"]}}
        return raw


def check_spec(s: DeploymentSpec, where: str) -> DeploymentSpec:
    """Cross-field checks pydantic cannot express; each failure names the fix."""
    from infersim.catalog.engines import engine
    try:
        engine(s.engine.name)
    except InputError as e:
        raise InputError(f"{where}: engine.name: {e}") from None
    if s.spec is not None:
        acc = s.spec.acceptance
        for a in (acc if isinstance(acc, list) else [] if acc is None else [acc]):
            if not 0.0 <= a <= 1.0:
                raise InputError(f"{where}: spec.acceptance {a} is outside [0, 1]; it is the probability that a drafted "
                                 "token is accepted (given the ones before it were)")
        if s.spec.draft_on == "lpu" and s.lpu is None:
            raise InputError(f"{where}: spec.draft_on is 'lpu' but there is no 'lpu' section; add one or draft on 'gpu'")
        if s.mode == "spec" and s.spec.draft_on == "lpu" and s.link is None:
            raise InputError(f"{where}: drafting on LPUs needs the GPU<->LPU 'link'; name one (e.g. gpu-lpu-direct)")
    if s.routing is not None:
        if not 0.0 <= s.routing.premium_fraction <= 1.0:
            raise InputError(f"{where}: routing.premium_fraction {s.routing.premium_fraction} is outside [0, 1]")
        if s.lpu is None or s.gpu is None:
            raise InputError(f"{where}: routing by SLO class needs both a 'gpu' and an 'lpu' section")
        if s.routing.premium_path == "afd" and s.link is None:
            raise InputError(f"{where}: routing.premium_path 'afd' needs the GPU<->LPU 'link'")
    return s


def read_spec(path: str | Path) -> DeploymentSpec:
    """Read and validate a deployment file's fields (modes.load_spec also checks its mode); every
    problem is one InputError line."""
    p = Path(path)
    raw = read_yaml_mapping(p, "deployment file", "name, mode, gpu, lpu, ...", "see examples/deployments/ for ready ones")
    spec = validated(DeploymentSpec, raw, p.name, "fix it (see examples/deployments/)")
    return check_spec(spec, p.name)
