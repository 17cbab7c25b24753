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
  # dp_attention: true   # engine convention: tp GPUs per instance, attention data parallel over
                         # them, experts by EP (compiled to tp 1 x ep 8; see GPUPart)
  precision: fp8
  prefill_replicas: 1  # pd / afd: GPU replicas that only prefill (pd: decode_replicas, default the rest, decode)
lpu:                   # LPU / wafer racks (lpu, afd, spec)
  system: lpx
  racks_per_gpu_rack: 1   # the LPX : NVL72 ratio (afd, spec); lpu mode: `racks`
  precision: mixed
link: gpu-lpu-direct   # the GPU<->LPU path (afd, spec): gpu-lpu-ethernet-host | gpu-lpu-direct | gpu-lpu-on-package
micro_batches: 2       # afd: micro-batches in flight per attention replica (1 = no overlap)
spec:                  # spec mode: draft model on the LPUs (or GPUs), verification on the GPUs
  draft_model: llama-3.1-8b
  draft_on: lpu
  k: 4                 # drafted tokens per verification
  acceptance: 0.7      # per-token acceptance probability, in [0, 1]
routing:               # optional SLO classes: a premium share served by the LPU path
  premium_fraction: 0.2
  premium_path: lpu    # lpu (LPU-only pool) or afd
engine: {max_batch: 256, max_tokens_per_step: 8192}
```
Every number is an input the user can change; nothing here is fitted.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from infersim.errors import InputError, shown
from infersim.inputs import BLOCK_TOKENS_RANGE, read_user_text
from infersim.mapping.deployment import engine_layout
from infersim.mapping.engine import BLOCK_TOKENS, MAX_BATCH, MAX_TOKENS_PER_STEP, ROUTER
from infersim.serving.policies import ADMISSIONS, PREEMPTION_VICTIMS, QUEUE_ORDERS, ROUTERS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # .inf / .nan are no sizes or ratios


class GPUPart(_Strict):
    """GPU chips. In a file: `racks` of a named `system` (rack or node), each split into replicas
    of tp x ep x pp. From command-line flags (`racks` None): `system` is a chip or a named system,
    filled with replicas as `chips` / `replicas` / tp say (mapping.deployment.build_deployment).

    `ep` is infersim's: attention data-parallel ranks of tp GPUs each, experts over tp x ep GPUs
    (mapping.deployment.Parallelism). `dp_attention` (true or false) switches tp and ep to the
    engines' convention instead: a replica is `tp` GPUs, `ep` the engine's expert-parallel size
    (dividing tp), attention data parallel over the tp GPUs or tensor parallel; the section is
    rewritten to infersim's layout when read (mapping.deployment.engine_layout)."""

    system: str
    racks: Optional[int] = Field(1, ge=1)
    chips: Optional[int] = Field(None, ge=1)
    replicas: Optional[int] = Field(None, ge=1)
    tp: Optional[int] = Field(None, ge=1)  # None: DEFAULT_RACK_TP on racks, else build_deployment's default
    ep: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    dp_attention: Optional[bool] = None  # None: infersim's tp x ep; true/false: the engines' (see above)
    precision: Optional[str] = None
    kv_precision: Optional[str] = None
    prefill_replicas: int = Field(0, ge=0)            # pd / afd: replicas that only prefill
    decode_replicas: Optional[int] = Field(None, ge=1)  # pd: replicas that only decode (default: the rest)

    @model_validator(mode="after")
    def _engine_convention(self):
        if self.dp_attention is not None:
            if self.tp is None:
                raise ValueError("dp_attention needs tp: the GPUs of one engine instance")
            tp, ep = engine_layout(self.tp, self.ep, self.dp_attention)
            object.__setattr__(self, "tp", tp)
            object.__setattr__(self, "ep", ep)
            object.__setattr__(self, "dp_attention", None)  # now in infersim's convention
        return self


class DecodePart(_Strict):
    """pd: the decode pool's chip or system and tp when they differ from the prefill pool's."""

    system: Optional[str] = None
    tp: Optional[int] = Field(None, ge=1)


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
    draft_model: str
    draft_on: Literal["lpu", "gpu"] = "lpu"
    k: int = Field(4, ge=1, le=32)
    acceptance: float = 0.7


class RoutingPart(_Strict):
    premium_fraction: float = 0.2
    premium_path: Literal["lpu", "afd"] = "lpu"


class EnginePart(_Strict):
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
    decode: Optional[DecodePart] = None
    lpu: Optional[LPUPart] = None
    link: Optional[str] = None
    micro_batches: int = Field(2, ge=1, le=16)
    spec: Optional[SpecPart] = None
    routing: Optional[RoutingPart] = None
    engine: EnginePart = EnginePart()


def check_spec(s: DeploymentSpec, where: str) -> DeploymentSpec:
    """Cross-field checks pydantic cannot express; each failure names the fix."""
    if s.spec is not None:
        if not 0.0 <= s.spec.acceptance <= 1.0:
            raise InputError(f"{where}: spec.acceptance {s.spec.acceptance} is outside [0, 1]; it is the probability "
                             "that one drafted token is accepted")
        if s.spec.draft_on == "lpu" and s.lpu is None:
            raise InputError(f"{where}: spec.draft_on is 'lpu' but there is no 'lpu' section; add one or draft on 'gpu'")
        if s.spec.draft_on == "lpu" and s.link is None:
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
    text = read_user_text(p, "deployment file", "see examples/deployments/ for ready ones")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputError(f"{shown(p.name)}: not readable YAML ({str(e).splitlines()[0]}); fix the syntax") from None
    if not isinstance(raw, dict):
        raise InputError(f"{shown(p.name)}: expected a mapping of fields (name, mode, gpu, lpu, ...), got {type(raw).__name__}")
    try:
        spec = DeploymentSpec.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        raise InputError(f"{p.name}: field '{loc}': {err['msg']}; fix it (see examples/deployments/)") from None
    return check_spec(spec, p.name)
