"""Sweep files: which configurations a sweep evaluates (validated by pydantic; unknown fields are
an error) and their expansion into `SweepConfig`s with stable ids.

```yaml
name: small
models: [nemotron-3-super, gpt-oss-120b]     # or `model: nemotron-3-super`
workload: {input_len: 8192, output_len: 1024} # or {trace: AzureLLMInferenceTrace_conv.csv}
load: {batch: [1, 8, 64]}                     # sequences per decode replica; or {concurrency: [...]}
deployments:
  - base: ../deployments/vr-nvl72.yaml        # a deployment file (relative to this file) ...
    grid: {gpu.tp: [4, 8], gpu.precision: [fp8, fp4]}
  - base: {name: afd, mode: afd, gpu: {system: vr-nvl72, tp: 8, prefill_replicas: 2},
           lpu: {system: lpx}, link: gpu-lpu-direct}   # ... or one written inline
    grid: {lpu.racks_per_gpu_rack: [0.5, 1, 2], micro_batches: [1, 2, 4]}
```
A grid key is a dotted path into the deployment file's fields (deployments/spec.py: `mode`,
`gpu.system`, `gpu.tp`, `gpu.ep`, `gpu.racks`, `lpu.racks_per_gpu_rack`, `micro_batches`,
`spec.k`, ...); every combination of the grid's values is one deployment. The sweep is models x
deployments x loads. A trace workload is evaluated at the trace's mean input and output lengths
(rounded); `concurrency` is spread evenly over the decode replicas (the runner's evaluation: its
floor per replica is the batch).

A configuration's `config_id` is the first 16 hex digits of the SHA-256 of its canonical JSON
(sorted keys, no spaces): the model, the validated deployment with every field (its `name` and
`description` left out: they label, they do not change the result), the workload and the load.
The same configuration in another sweep file has the same id, so results are shared, not redone.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from infersim.deployments.spec import DeploymentSpec, check_spec
from infersim.errors import InputError, shown
from infersim.inputs import read_yaml_mapping, validated

FIX = "fix the sweep file (see examples/sweeps/small.yaml)"
MAX_CONFIGS = 1_000_000  # a grid past this is a typo, not a sweep; refused before anything runs
LABELS = ("name", "description")  # deployment fields that label a configuration without changing it


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class Workload(_Strict):
    """Prompt and response lengths in tokens, or a trace whose mean lengths are used."""
    input_len: Optional[int] = Field(None, ge=1)
    output_len: Optional[int] = Field(None, ge=1)
    trace: Optional[str] = None

    @model_validator(mode="after")
    def _one_source(self):
        lengths = self.input_len is not None or self.output_len is not None
        if self.trace is not None and lengths:
            raise ValueError("give either trace or input_len/output_len, not both")
        if self.trace is None and (self.input_len is None or self.output_len is None):
            raise ValueError("give input_len and output_len (tokens), or a trace name")
        return self


class Load(_Strict):
    """Load points: `batch` (sequences per decode replica) or `concurrency` (sequences in flight in
    the whole deployment); exactly one."""
    batch: Optional[list[int]] = Field(None, min_length=1)
    concurrency: Optional[list[int]] = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_kind(self):
        given = [k for k in ("batch", "concurrency") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of batch or concurrency (a list of integers)")
        if min(getattr(self, given[0])) < 1:
            raise ValueError(f"{given[0]} values must each be at least 1")
        return self

    @property
    def kind(self) -> str:
        return "batch" if self.batch is not None else "concurrency"

    @property
    def values(self) -> list[int]:
        return self.batch if self.batch is not None else self.concurrency


class DeploymentGrid(_Strict):
    base: Union[str, dict[str, Any]]  # a deployment file (path relative to the sweep file) or inline
    grid: dict[str, list[Any]] = {}


class SweepFile(_Strict):
    name: str
    models: list[str] = Field(min_length=1)
    workload: Workload
    load: Load
    deployments: list[DeploymentGrid] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _one_model(cls, raw):
        """`model: x` is short for `models: [x]`."""
        if isinstance(raw, dict) and "model" in raw:
            if "models" in raw:
                raise ValueError("give model or models, not both")
            raw = {**{k: v for k, v in raw.items() if k != "model"}, "models": [raw["model"]]}
        return raw


@dataclass(frozen=True)
class SweepConfig:
    """One configuration: `body` is its canonical content (what `config_id` hashes), `name` the
    deployment's label."""
    config_id: str
    name: str
    body: dict


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def config_id(body: dict) -> str:
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()[:16]


def read_sweep(path: str | Path) -> SweepFile:
    p = Path(path)
    raw = read_yaml_mapping(p, "sweep file", "name, models, workload, load, deployments", FIX)
    return validated(SweepFile, raw, shown(p.name), FIX)


def set_path(doc: dict, dotted: str, value: Any, where: str) -> None:
    """Set `doc[a][b]... = value` for `dotted` = "a.b..."; missing sections are created."""
    keys = dotted.split(".")
    node = doc
    for k in keys[:-1]:
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        if not isinstance(nxt, dict):
            raise InputError(f"{where}: grid key '{shown(dotted)}': '{k}' is not a section; {FIX}")
        node = nxt
    node[keys[-1]] = value


def _base(entry: DeploymentGrid, folder: Path, where: str) -> dict:
    if isinstance(entry.base, dict):
        return copy.deepcopy(entry.base)
    path = Path(entry.base)
    path = path if path.is_absolute() else folder / path
    return read_yaml_mapping(path, f"{where}: deployment file", "name, mode, gpu, lpu, ...", FIX)


def _deployments(sweep: SweepFile, folder: Path, where: str) -> list[tuple[str, dict]]:
    """(label, canonical deployment dict) of every grid point of every entry, in file order."""
    out = []
    for i, entry in enumerate(sweep.deployments):
        at = f"{where}: deployments[{i}]"
        base = _base(entry, folder, at)
        empty = [k for k, v in entry.grid.items() if not v]
        if empty:
            raise InputError(f"{at}: grid key '{shown(empty[0])}' has no values; give at least one or drop it")
        keys = list(entry.grid)
        for values in itertools.product(*(entry.grid[k] for k in keys)):
            raw = copy.deepcopy(base)
            for k, v in zip(keys, values):
                set_path(raw, k, v, at)
            label = ",".join(f"{k}={v}" for k, v in zip(keys, values))
            spec = validated(DeploymentSpec, raw, f"{at} ({shown(label) or 'base'})", FIX)
            check_spec(spec, f"{at} ({shown(label) or 'base'})")
            if spec.model is not None:
                raise InputError(f"{at}: the deployment names model '{shown(spec.model)}'; a sweep takes its models "
                                 "from `models:`, drop it from the deployment")
            name = spec.name + (f"[{label}]" if label else "")
            out.append((name, spec.model_dump(mode="json", exclude=set(LABELS))))
    return out


def whole_tokens(mean: float) -> int:
    """A mean length in tokens as the whole number a workload is screened at: rounded, at least 1."""
    return max(1, round(float(mean)))


def trace_mean_lengths(reqs) -> tuple[int, int]:
    """A trace's mean input and output tokens per request, rounded (at least 1): the lengths a
    trace workload is screened at (sweeps, `frontier --trace`, `plan`)."""
    return whole_tokens(reqs.input_tokens.mean()), whole_tokens(reqs.output_tokens.mean())


def workload_body(w: Workload) -> dict:
    """A configuration's `workload`: the lengths, or a trace's name and mean lengths."""
    if w.trace is None:
        return {"input_len": w.input_len, "output_len": w.output_len, "trace": None}
    from infersim.workload.traces import read_trace
    inp, out = trace_mean_lengths(read_trace(w.trace))
    return {"input_len": inp, "output_len": out, "trace": Path(w.trace).name}


def expand(sweep: SweepFile, folder: Path | str = ".", where: str = "sweep") -> list[SweepConfig]:
    """Every configuration of the sweep (models x deployments x loads), duplicates removed (the
    first label kept), in file order."""
    deps = _deployments(sweep, Path(folder), where)
    total = len(sweep.models) * len(deps) * len(sweep.load.values)
    if total > MAX_CONFIGS:
        raise InputError(f"{where}: the grid expands to {total:,} configurations, over the {MAX_CONFIGS:,} a sweep "
                         "takes; split it into several sweep files")
    workload = workload_body(sweep.workload)
    seen: dict[str, SweepConfig] = {}
    for model, (name, dep), load in itertools.product(sweep.models, deps, sweep.load.values):
        body = {"model": model, "deployment": dep, "workload": workload,
                "load": {"kind": sweep.load.kind, "value": load}}
        cid = config_id(body)
        seen.setdefault(cid, SweepConfig(cid, name, body))
    return list(seen.values())
