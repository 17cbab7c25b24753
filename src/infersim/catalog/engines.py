"""Serving engines as data (`data/engines.yaml`): the host side of a GPU engine step.

Each engine says how long its host (CPU) work takes per step and per sequence, whether that work
overlaps the previous GPU step, whether decode steps replay CUDA graphs and up to which batch, and
what an eagerly launched kernel costs. `costmodel.overhead` turns these into step time. An alias
(`backend: sglang`) names a front end that runs another engine's workers (NVIDIA Dynamo).
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from infersim.catalog.hardware import Basis, Quantity
from infersim.errors import InputError, shown, unknown_name
from infersim.inputs import validated

ENGINES_FILE = Path(__file__).parent / "data" / "engines.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Setting(_Strict):
    """An on/off engine behaviour with its provenance."""

    value: bool
    basis: Basis
    source: str = Field(min_length=1)


class EngineEntry(_Strict):
    """One engine in the file: either a full description or an alias of a `backend`."""

    description: str = ""
    backend: str | None = None
    overlap: Setting | None = None
    cuda_graphs: Setting | None = None
    graph_max_batch: Quantity | None = None
    host_step_s: Quantity | None = None
    host_seq_s: Quantity | None = None
    eager_launch_s: Quantity | None = None

    @model_validator(mode="after")
    def _complete(self) -> "EngineEntry":
        own = [f for f in NUMBERS + SETTINGS if getattr(self, f) is not None]
        if self.backend is not None and own:
            raise ValueError(f"an alias (backend: {self.backend}) takes no numbers of its own, got {', '.join(own)}")
        if self.backend is None and len(own) < len(NUMBERS + SETTINGS):
            missing = [f for f in NUMBERS + SETTINGS if getattr(self, f) is None]
            raise ValueError(f"missing {', '.join(missing)} (or give `backend:` to alias another engine)")
        for f in NUMBERS:
            q = getattr(self, f)
            if q is not None and (q.value is None or q.value < 0):
                raise ValueError(f"{f} must be a non-negative number, got {q.value}")
        return self


NUMBERS = ("graph_max_batch", "host_step_s", "host_seq_s", "eager_launch_s")
SETTINGS = ("overlap", "cuda_graphs")


class EngineFile(_Strict):
    engines: dict[str, EngineEntry]
    default: str


@dataclass(frozen=True)
class EngineSpec:
    """A resolved engine (aliases followed). Seconds; `graph_max_batch` in sequences.
    `shares_host`: the step's host work is paid by another step (an MTP draft inside the target's
    engine iteration), so this one pays only its GPU kernels."""

    name: str
    backend: str
    description: str
    overlap: bool
    cuda_graphs: bool
    graph_max_batch: int
    host_step_s: float
    host_seq_s: float
    eager_launch_s: float
    sources: dict
    shares_host: bool = False

    def sharing_host(self) -> "EngineSpec":
        """This engine for work that runs inside another step's engine iteration (no host work of its own)."""
        return replace(self, shares_host=True)


@dataclass(frozen=True)
class EngineCatalog:
    entries: dict[str, EngineEntry]
    default: str

    @property
    def names(self) -> list[str]:
        return sorted(self.entries)

    def get(self, name: str | None) -> EngineSpec:
        """The engine `name` (None: the documented default); InputError listing the known ones."""
        key = (name or self.default).strip().lower()
        if key not in self.entries:
            raise unknown_name("engine", key, self.names,
                               f" (known: {', '.join(self.names)}); pick one with --engine NAME or a deployment "
                               "file's `engine: NAME`, or add one to catalog/data/engines.yaml")
        entry = self.entries[key]
        target = self.entries[entry.backend] if entry.backend else entry
        return EngineSpec(
            name=key, backend=entry.backend or key, description=entry.description,
            overlap=target.overlap.value, cuda_graphs=target.cuda_graphs.value,
            graph_max_batch=int(target.graph_max_batch.value), host_step_s=float(target.host_step_s.value),
            host_seq_s=float(target.host_seq_s.value), eager_launch_s=float(target.eager_launch_s.value),
            sources={f: getattr(target, f).model_dump() for f in NUMBERS + SETTINGS})

    def quantity(self, name: str, field: str) -> Quantity:
        """The sourced number behind an engine field (for sensitivity sweeps)."""
        entry = self.entries[name]
        return getattr(self.entries[entry.backend] if entry.backend else entry, field)


def _parse(raw: object, where: str) -> EngineCatalog:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: expected a mapping with 'engines' and 'default'; see catalog/data/engines.yaml")
    doc = validated(EngineFile, raw, where, "fix it (see catalog/data/engines.yaml)")
    for name, entry in doc.engines.items():
        if entry.backend is not None:
            target = doc.engines.get(entry.backend)
            if target is None or target.backend is not None:
                raise InputError(f"{where}: engine '{shown(name)}' names backend '{shown(entry.backend)}', which is not "
                                 "an engine with its own numbers; name one of "
                                 + ", ".join(sorted(n for n, e in doc.engines.items() if e.backend is None)))
    if doc.default not in doc.engines:
        raise InputError(f"{where}: default engine '{shown(doc.default)}' is not in 'engines'")
    return EngineCatalog({k.lower(): v for k, v in doc.engines.items()}, doc.default)


def parse_engines(text: str, where: str) -> EngineCatalog:
    """An engines document from YAML text; every problem is one InputError line."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise InputError(f"{where}: not readable YAML ({str(e).splitlines()[0]}); fix the syntax") from None
    return _parse(raw, where)


@functools.lru_cache(maxsize=1)
def load_engines() -> EngineCatalog:
    return parse_engines(ENGINES_FILE.read_text(encoding="utf-8"), ENGINES_FILE.name)


def engine(name: str | None = None) -> EngineSpec:
    return load_engines().get(name)


_VLLM_VERSION = re.compile(r"vllm\s+v?(\d+)\.(\d+)")


def engine_for_software(software: str) -> str:
    """The engine of a measurement's `software` column: TensorRT-LLM's PyTorch backend -> trtllm,
    other TensorRT-LLM (TensorRT engines, NIM, v0.x) -> trtllm-cpp; vLLM before 0.14 -> vllm-sync,
    later -> vllm; SGLang, Dynamo as named; anything else the default engine."""
    s = software.lower()
    if "dynamo" in s:
        for back in ("sglang", "trtllm", "vllm"):
            if back in s.replace("tensorrt-llm", "trtllm"):
                return f"dynamo-{back}"
    if "sglang" in s:
        return "sglang"
    if "tensorrt-llm" in s or "trt-llm" in s:
        return "trtllm" if "pytorch" in s else "trtllm-cpp"
    m = _VLLM_VERSION.search(s)
    if m:
        return "vllm" if (int(m.group(1)), int(m.group(2))) >= (0, 14) else "vllm-sync"
    return load_engines().default
