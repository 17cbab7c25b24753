"""Hardware catalog: chips, links and systems, every number a sourced :class:`Quantity`.

Units are SI and named in the field names: bytes, bytes/s, FLOP/s (or op/s for int8), W, s, USD.
``peak_flops`` holds DENSE (no 2:4 sparsity) matmul peaks per precision; a missing key means the
precision is unsupported or has no published matmul rate, and is not modelled. Link bandwidths are
per chip (per endpoint) per direction. Packaged data lives in ``data/`` (one YAML per chip and per
system, ``links.yaml``); :func:`load_catalog` adds user YAML files on top.
"""
from __future__ import annotations

import functools
import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from infersim.errors import InputError, shown, unknown_name
from infersim.inputs import read_user_text

Basis = Literal["spec", "paper", "measurement", "estimate", "assumption"]
Precision = Literal["fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4"]
PRECISIONS: tuple[str, ...] = ("fp32", "tf32", "bf16", "fp16", "fp8", "int8", "fp4")
DATA_DIR = Path(__file__).parent / "data"
_NAME = re.compile(r"[a-z0-9][a-z0-9_+-]*")  # no dots: NAME.FIELD=VALUE overrides split on them
_KINDS = ("chips", "links", "systems")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Named(_Strict):
    name: str
    aliases: list[str] = []

    @field_validator("name", "aliases")
    @classmethod
    def _names_ok(cls, v: str | list[str]) -> str | list[str]:
        for n in [v] if isinstance(v, str) else [a.lower() for a in v]:  # canonical names are lower-case
            if not _NAME.fullmatch(n):
                raise ValueError(f"'{n}' is not a valid name: use lower-case letters, digits, '-', '_' or '+'")
        return v


class Quantity(_Strict):
    """A number with its provenance. ``value`` is in the unit named by the owning field;
    None = unknown/unpublished (``note`` says why). ``low``/``high`` bound the plausible range
    (required for basis ``assumption``) for sensitivity sweeps."""

    value: float | None
    basis: Basis
    source: str = Field(min_length=1)
    low: float | None = None
    high: float | None = None
    note: str = ""

    @model_validator(mode="after")
    def _check(self) -> Quantity:
        for part in ("value", "low", "high"):
            x = getattr(self, part)
            if x is not None and not math.isfinite(x):
                raise ValueError(f"{part} must be a finite number, got {x}")
        if self.value is None and not self.note:
            raise ValueError("value is null: say in `note` why it is unknown")
        if self.basis == "assumption" and self.value is not None and (self.low is None or self.high is None):
            raise ValueError("basis 'assumption' needs a plausible range: give `low` and `high`")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"low {self.low} > high {self.high}")
        v = self.value
        if v is not None and ((self.low is not None and v < self.low) or (self.high is not None and v > self.high)):
            raise ValueError(f"value {v} lies outside [low, high] = [{self.low}, {self.high}]")
        return self


# Physical checks of the Quantity fields, by field name: unit, whether zero is possible, the
# smallest and largest sane value, an example, and whether the cost model needs the value (then an
# unpublished `value: null` is refused at load rather than failing deep inside the cost model).
# The bounds are unit-slip guards far outside any real part (a chip with under 1 MB of memory was
# written in GB; a link latency of over a second was written in microseconds), not model constants.
_PHYSICAL: dict[str, tuple[str, bool, float, float, str, bool]] = {
    "mem_bytes": ("bytes", False, 1e6, math.inf, "8e10 for 80 GB", True),
    "mem_bw_bytes_per_s": ("bytes/s", False, 1e6, math.inf, "3.35e12 for 3.35 TB/s", True),
    "peak_flops": ("FLOP/s", False, 1e6, math.inf, "9.89e14 for 989 TFLOP/s", False),
    "tdp_w": ("W", False, 0.0, math.inf, "700", False),
    "bw_bytes_per_s_per_dir": ("bytes/s", False, 1e6, math.inf, "4.5e11 for 450 GB/s", True),
    "latency_s": ("s", True, 0.0, 1.0, "2e-6 for 2 microseconds", True),
    "all_to_all_phase_s": ("s", True, 0.0, 1.0, "1.5e-5 for 15 microseconds", True),
    "power_w": ("W", False, 0.0, math.inf, "120000 for 120 kW", False),
    "capex_usd": ("USD", False, 0.0, math.inf, "27500", False),
    "cloud_usd_per_hour": ("USD/hour", False, 0.0, math.inf, "2.25", False),
}


def _check_physical(q: Quantity | None, field: str, label: str = "") -> Quantity | None:
    """`q` if its value and range are physical for `field` (see _PHYSICAL), else ValueError."""
    if q is None:
        return q
    unit, zero_ok, low, high, example, needed = _PHYSICAL[field]
    name = f"{label} " if label else ""  # pydantic's message already names the field itself
    if q.value is None and needed:
        raise ValueError(f"{name}value is unpublished (value: null) but the cost model needs it; give an estimate "
                         f"(basis: estimate, with low and high), e.g. {example}")
    for part in ("value", "low", "high"):
        x = getattr(q, part)
        if x is None:
            continue
        if x < 0 or (x == 0 and not zero_ok):
            raise ValueError(f"{name}{part} must be {'at least 0' if zero_ok else 'positive'} ({unit}), got {x:g}; "
                             f"e.g. {example}")
        if x != 0 and not low <= x <= high:
            raise ValueError(f"{name}{part} {x:g} {unit} is outside [{low:g}, {high:g}] {unit}: a unit slip? "
                             f"the unit is {unit}, e.g. {example}")
    return q


def _override_quantity(value: float, old: dict | None) -> dict:
    was = f" (was {old['value']:g}, basis {old['basis']})" if old and old.get("value") is not None else ""
    return {"value": value, "basis": "assumption", "source": "user override", "low": value,
            "high": value, "note": "set by user override" + was}


class ChipSpec(_Named):
    """One accelerator (or host CPU). Memory is the chip's own fast memory: HBM/GDDR for GPUs,
    on-chip SRAM for LPUs and wafers, DRAM for CPUs."""

    kind: Literal["gpu", "lpu", "wafer", "cpu"]
    family: str
    vendor: str
    description: str
    memory_kind: Literal["hbm", "gddr", "sram", "ddr", "lpddr"]
    mem_bytes: Quantity  # bytes
    mem_bw_bytes_per_s: Quantity  # bytes/s
    peak_flops: dict[Precision, Quantity] = {}  # dense FLOP/s (op/s for int8)
    tdp_w: Quantity  # W
    scale_up_link: str | None = None
    scale_up_domain: int = Field(default=1, ge=1)  # chips reachable over scale_up_link as one domain
    scale_out_link: str | None = None
    capex_usd: Quantity | None = None
    cloud_usd_per_hour: Quantity | None = None

    @field_validator("mem_bytes", "mem_bw_bytes_per_s", "tdp_w", "capex_usd", "cloud_usd_per_hour")
    @classmethod
    def _physical(cls, q: Quantity | None, info: ValidationInfo) -> Quantity | None:
        return _check_physical(q, info.field_name)

    @field_validator("peak_flops")
    @classmethod
    def _physical_peaks(cls, peaks: dict[str, Quantity]) -> dict[str, Quantity]:
        for precision, q in peaks.items():
            _check_physical(q, "peak_flops", f"peak_flops.{precision}")
        return peaks

    def flops(self, precision: str) -> float:
        """Dense peak FLOP/s at ``precision``; InputError if unsupported or unknown on this chip."""
        q = self.peak_flops.get(precision)  # type: ignore[call-overload]
        if q is None:
            raise InputError(f"chip '{self.name}' has no {precision} throughput; it supports "
                             f"{', '.join(self.peak_flops) or 'nothing'}: pick one of those precisions")
        if q.value is None:
            raise InputError(f"{precision} peak of chip '{self.name}' is not published; set it with an "
                             f"override such as {self.name}.peak_flops.{precision}=1e15")
        return q.value


class LinkSpec(_Named):
    """An interconnect, as seen from one endpoint (chip): alpha-beta model parameters."""

    description: str
    kind: Literal["nvlink", "lpu_c2c", "pcie", "ethernet", "infiniband", "wafer_fabric", "on_package"]
    bw_bytes_per_s_per_dir: Quantity  # bytes/s, per chip per direction
    latency_s: Quantity  # s, one-way latency of one hop/message
    # s, fixed cost of one MoE all-to-all phase (dispatch or combine) over this link: the kernel,
    # flag barriers and routing metadata (costmodel.collectives.all_to_all); None: not a link EP uses
    all_to_all_phase_s: Quantity | None = None

    @field_validator("bw_bytes_per_s_per_dir", "latency_s", "all_to_all_phase_s")
    @classmethod
    def _physical(cls, q: Quantity, info: ValidationInfo) -> Quantity:
        return _check_physical(q, info.field_name)


class HostSpec(_Strict):
    cpu: str  # a ChipSpec name of kind cpu
    count: int = Field(ge=1)
    note: str = ""


class SystemSpec(_Named):
    """A deployable box or rack: ``n_chips`` of ``chip``, in scale-up domains of ``scale_up_domain``."""

    description: str
    chip: str
    n_chips: int = Field(ge=1)
    scale_up_link: str | None
    scale_up_domain: int = Field(ge=1)
    scale_out_link: str | None = None
    hosts: HostSpec | None = None
    power_w: Quantity | None = None  # W, whole system
    capex_usd: Quantity | None = None  # USD, whole system
    cloud_usd_per_hour: Quantity | None = None  # USD per hour to rent the whole system (one instance)

    @field_validator("power_w", "capex_usd", "cloud_usd_per_hour")
    @classmethod
    def _physical(cls, q: Quantity | None, info: ValidationInfo) -> Quantity | None:
        return _check_physical(q, info.field_name)

    @model_validator(mode="after")
    def _check(self) -> SystemSpec:
        if self.scale_up_domain > self.n_chips:
            raise ValueError(f"scale_up_domain {self.scale_up_domain} > n_chips {self.n_chips}")
        return self


_MODELS: dict[str, type[BaseModel]] = {"chips": ChipSpec, "links": LinkSpec, "systems": SystemSpec}
_SINGULAR = {"chips": "chip", "links": "link", "systems": "system"}


class HardwareCatalog:
    """All chips, links and systems, looked up by name or alias (case-insensitive)."""

    def __init__(self, chips: dict[str, ChipSpec], links: dict[str, LinkSpec], systems: dict[str, SystemSpec]):
        self.chips, self.links, self.systems = chips, links, systems
        self._index: dict[str, tuple[str, str]] = {}  # lower-case name/alias -> (kind, canonical name)
        for kind in _KINDS:
            for name, item in getattr(self, kind).items():
                for key in [name, *item.aliases]:
                    prev = self._index.get(key.lower())
                    if prev is not None and prev != (kind, name):
                        raise InputError(f"name '{key}' is used by {_SINGULAR[prev[0]]} '{prev[1]}' and by "
                                         f"{_SINGULAR[kind]} '{name}': rename one of them")
                    self._index[key.lower()] = (kind, name)
        self._check_refs()

    def _check_refs(self) -> None:
        """Every referenced chip/link must exist; aliases in references become canonical names."""
        def ref(kind: str, obj: BaseModel, field: str, owner: str) -> None:
            r = getattr(obj, field)
            if r is None:
                return
            hit = self._index.get(r.lower())
            if hit is None or hit[0] != kind:
                raise unknown_name(_SINGULAR[kind], r, self._names(kind), hint=f" (referenced by {owner})")
            setattr(obj, field, hit[1])

        for c in self.chips.values():
            ref("links", c, "scale_up_link", f"chip '{c.name}'")
            ref("links", c, "scale_out_link", f"chip '{c.name}'")
        for s in self.systems.values():
            owner = f"system '{s.name}'"
            ref("chips", s, "chip", owner)
            ref("links", s, "scale_up_link", owner)
            ref("links", s, "scale_out_link", owner)
            if s.hosts is not None:
                ref("chips", s.hosts, "cpu", owner)
                if self.chips[s.hosts.cpu].kind != "cpu":
                    raise InputError(f"{owner}: host '{s.hosts.cpu}' is not a cpu chip; name a chip of kind cpu")

    def _names(self, *kinds: str) -> list[str]:
        return [k for k, (kind, _) in self._index.items() if kind in kinds]

    def _get(self, kind: str, name: str):
        hit = self._index.get(name.lower())
        if hit is None or hit[0] != kind:
            hint = (" (links live in infersim/catalog/data/links.yaml; add one with --hardware FILE.yaml)"
                    if kind == "links" else "")
            raise unknown_name(_SINGULAR[kind], name, self._names(kind), hint=hint)
        return getattr(self, kind)[hit[1]]

    def chip(self, name: str) -> ChipSpec:
        """The chip called ``name`` (name or alias, any case)."""
        return self._get("chips", name)

    def link(self, name: str) -> LinkSpec:
        return self._get("links", name)

    def system(self, name: str) -> SystemSpec:
        return self._get("systems", name)

    def is_named_system(self, name: str) -> bool:
        """Whether `name` (or an alias, any case) names a system rather than a chip."""
        hit = self._index.get(name.lower())
        return hit is not None and hit[0] == "systems"

    def resolve_system(self, name: str, n_chips: int | None = None) -> SystemSpec:
        """A system by system name, or ``n_chips`` (default 1) of a chip as an ad-hoc system.

        Asking a system for fewer chips than it has gives a partial system (e.g. 4 GPUs of an
        NVL72, as MLPerf did); its power, capex and host count are scaled pro rata."""
        if n_chips is not None and n_chips < 1:
            raise InputError(f"n_chips must be at least 1, got {n_chips}")
        hit = self._index.get(name.lower())
        if hit is not None and hit[0] == "systems":
            s = self.systems[hit[1]]
            if n_chips is None or n_chips == s.n_chips:
                return s
            if n_chips > s.n_chips:
                raise InputError(f"system '{s.name}' has only {s.n_chips} chips, not {n_chips}: ask for at most "
                                 f"{s.n_chips}, or name the chip '{s.chip}' to build a larger system")
            f = n_chips / s.n_chips
            upd: dict[str, Any] = {"n_chips": n_chips, "scale_up_domain": min(s.scale_up_domain, n_chips),
                                   "description": f"{s.description} [partial: {n_chips} of {s.n_chips} chips]"}
            for fld in ("power_w", "capex_usd", "cloud_usd_per_hour"):
                q = getattr(s, fld)
                if q is not None:
                    upd[fld] = q.model_copy(update={k: (getattr(q, k) * f if getattr(q, k) is not None else None)
                                                    for k in ("value", "low", "high")}
                                            | {"note": (q.note + "; " if q.note else "") + f"pro rata {n_chips}/{s.n_chips}"})
            if s.hosts is not None:
                upd["hosts"] = s.hosts.model_copy(update={"count": max(1, math.ceil(s.hosts.count * f))})
            return s.model_copy(update=upd)
        if hit is not None and hit[0] == "chips":
            c = self.chips[hit[1]]
            n = n_chips or 1
            if c.kind == "cpu":
                raise InputError(f"'{c.name}' is a host CPU, not an accelerator: name a GPU, LPU or wafer")
            domain = min(c.scale_up_domain, n)
            if n > domain and c.scale_out_link is None:
                raise InputError(f"chip '{c.name}' has no scale-out link, so at most {c.scale_up_domain} chips "
                                 f"fit one system; ask for fewer chips or set {c.name}.scale_out_link=LINK")
            return SystemSpec(name=f"{n}x{c.name}", description=f"{n} x {c.description}", chip=c.name, n_chips=n,
                              scale_up_link=c.scale_up_link if domain > 1 else None, scale_up_domain=domain,
                              scale_out_link=c.scale_out_link)
        raise unknown_name("chip or system", name, self._names("chips", "systems"),
                           hint=" (list them with `infersim chips` and `infersim systems`)")

    def with_overrides(self, assignments: list[str]) -> HardwareCatalog:
        """A new catalog with ``NAME.FIELD=VALUE`` / ``NAME.FIELD.SUB=VALUE`` assignments applied.

        A number assigned to a Quantity (or to ``peak_flops.<precision>``) becomes its value with
        basis ``assumption``, source ``user override``; ``.low``/``.high``/``.value`` set one part.
        Other fields take the text as-is (``none`` clears an optional link)."""
        data = {k: {n: m.model_dump() for n, m in getattr(self, k).items()} for k in _KINDS}
        for text in assignments:
            m = re.fullmatch(r"\s*([^.=\s]+)\.([A-Za-z_][\w.]*)\s*=\s*(\S.*?)\s*", text)
            if not m:
                raise InputError(f"bad override '{shown(text)}': write NAME.FIELD=VALUE, e.g. lp30.tdp_w=900")
            name, path, raw = m.group(1), m.group(2).split("."), m.group(3)
            hit = self._index.get(name.lower())
            if hit is None:
                raise unknown_name("chip, link or system", name, self._index, hint=f" in override '{shown(text)}'")
            _assign(data[hit[0]][hit[1]], _MODELS[hit[0]], path, raw, text)
        return _build(data, where="overrides")


def _num(raw: str, text: str) -> float:
    v = float(raw) if re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?", raw) else math.nan
    if not math.isfinite(v):
        raise InputError(f"override '{shown(text)}': '{shown(raw)}' is not a finite number; write e.g. 1.5e15")
    return v


def _is_quantity(d: Any) -> bool:
    return isinstance(d, dict) and "basis" in d and "source" in d


def _assign(entry: dict, cls: type[BaseModel], path: list[str], raw: str, text: str) -> None:
    field = path[0]
    if field not in cls.model_fields or field in ("name", "aliases") or len(path) > 2:
        fields = ", ".join(f for f in cls.model_fields if f not in ("name", "aliases"))
        raise InputError(f"override '{shown(text)}': unknown field '{shown('.'.join(path))}'; fields are: {fields}")
    quantity_slot = "Quantity" in str(cls.model_fields[field].annotation)
    cur, key = entry, field
    if field == "peak_flops":
        if len(path) != 2 or path[1] not in PRECISIONS:
            raise InputError(f"override '{shown(text)}': write peak_flops.<precision>=VALUE, precision one of "
                             f"{', '.join(PRECISIONS)}")
        cur, key = entry[field], path[1]
    elif len(path) == 2 and not (quantity_slot and path[1] == "value"):  # .value = plain assignment
        sub = entry.get(field)
        if quantity_slot and path[1] in ("low", "high") and _is_quantity(sub):
            sub[path[1]] = _num(raw, text)
            return
        if not isinstance(sub, dict) or _is_quantity(sub) or path[1] not in sub:
            raise InputError(f"override '{shown(text)}': field '{field}' has no subfield '{shown(path[1])}'"
                             + ("; use .value, .low or .high" if quantity_slot else ""))
        cur, key = sub, path[1]
    if quantity_slot:
        cur[key] = _override_quantity(_num(raw, text), cur.get(key))
    else:
        cur[key] = None if raw.lower() in ("none", "null") else raw


class _Loader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """Safe YAML loader that also reads YAML-1.2 floats such as 8e12 (PyYAML wants 8.0e+12)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:\d[\d_]*(?:\.\d*)?|\.\d+)[eE][-+]?\d+$"), list("-+0123456789."))


def _read_yaml(path: Path) -> Any:
    text = read_user_text(path, "hardware file", "give a YAML file with chips:, links: and systems: lists")
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark else ""
        raise InputError(f"malformed YAML in {shown(path)}{at}: {getattr(e, 'problem', None) or e}; fix the file") from None


def _validate(kind: str, raw: Any, where: str):
    try:
        return _MODELS[kind].model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        name = raw.get("name", "?") if isinstance(raw, dict) else "?"
        more = f" (+{e.error_count() - 1} more errors)" if e.error_count() > 1 else ""
        msg = err["msg"].removeprefix("Value error, ")
        raise InputError(f"{where}: {_SINGULAR[kind]} '{shown(name)}', field {loc}: {msg}{more}") from None


def _build(data: dict[str, dict[str, Any]], where: str) -> HardwareCatalog:
    parts = {k: {n: _validate(k, d, where) for n, d in data[k].items()} for k in _KINDS}
    try:
        return HardwareCatalog(**parts)
    except InputError as e:
        raise InputError(f"{where}: {e}") from None


@functools.lru_cache(maxsize=1)
def _packaged() -> HardwareCatalog:
    data: dict[str, dict[str, Any]] = {k: {} for k in _KINDS}
    for kind, sub in (("chips", "chips"), ("systems", "systems")):
        for p in sorted((DATA_DIR / sub).glob("*.yaml")):
            item = _validate(kind, _read_yaml(p), str(p))
            data[kind][item.name] = item.model_dump()
    for raw in (_read_yaml(DATA_DIR / "links.yaml") or {}).get("links", []):
        item = _validate("links", raw, str(DATA_DIR / "links.yaml"))
        data["links"][item.name] = item.model_dump()
    return _build(data, where=str(DATA_DIR))


def load_catalog(extra_paths: list[Path] | tuple[Path, ...] = ()) -> HardwareCatalog:
    """The packaged catalog (cached), plus user YAML files holding ``chips:``/``links:``/``systems:``
    lists whose entries add to or replace (by name or alias) packaged ones."""
    base = _packaged()
    if not extra_paths:
        return base
    data = {k: {n: m.model_dump() for n, m in getattr(base, k).items()} for k in _KINDS}
    for path in map(Path, extra_paths):
        doc = _read_yaml(path)
        if not isinstance(doc, dict) or not doc or set(doc) - set(_KINDS):
            raise InputError(f"{shown(path)}: expected a mapping with only the keys chips, links, systems (each a "
                             "list); fix the file")
        for kind, items in doc.items():
            if not isinstance(items, list):
                raise InputError(f"{shown(path)}: '{kind}' must be a list of entries; fix the file")
            for i, raw in enumerate(items):
                item = _validate(kind, raw, f"{shown(path)} ({kind}[{i}])")
                keys = {k.lower() for k in [item.name, *item.aliases]}  # replace any entry it names
                for n in [n for n, d in data[kind].items() if keys & {k.lower() for k in [n, *d["aliases"]]}]:
                    del data[kind][n]
                data[kind][item.name] = item.model_dump()
    return _build(data, where=", ".join(shown(p) for p in extra_paths))
