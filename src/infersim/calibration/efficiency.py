"""Calibrated efficiency parameters of the execution models, loaded from data files.

Parameters are few and physical (fractions of peak, fixed latencies). Where they come from:
- `src/infersim/calibration/defaults.json`: values before any fit, each with its source
  (GPU values come from our own H100 kernel measurements in data/gpu/h100-sxm, made by
  bench/gpu/measure_kernels.py and fitted by `python bench/gpu/check_cost_model.py
  data/gpu/h100-sxm`, which writes kernel_fit.json beside them).
- `src/infersim/calibration/fit.json`: per chip-family values fitted by `infersim calibrate`
  on a published-measurement CSV; written with the rows it used and its cross-validated error.
A family missing from the fit file falls back to its chip kind's pooled fit, then to defaults.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

from infersim.errors import InputError, shown
from infersim.inputs import os_problem

CALIBRATION_DIR = Path(__file__).resolve().parent
DEFAULTS_FILE = CALIBRATION_DIR / "defaults.json"
FIT_FILE = CALIBRATION_DIR / "fit.json"


@dataclass(frozen=True)
class Efficiency:
    """Execution-model parameters of one chip family.

    compute_eff: achieved fraction of dense peak FLOP/s for large matrix products;
    mem_eff: achieved fraction of peak memory bandwidth when streaming weights / KV;
    blend_p: roofline smoothness — an op takes (t_compute^p + t_memory^p)^(1/p); p -> inf is
             the hard roofline max (statically scheduled dataflow chips overlap perfectly);
    kernel_s: GPU-side time per kernel boundary in a replayed CUDA graph, seconds (eager launches
              and the engine's host work are the engine's: catalog/data/engines.yaml);
    host_scale: multiplier on the engine's assumed host work (host_step_s, host_seq_s; not the
                measured launch costs): 1 = the engine file's priors; fitted per family (host CPU
                and software version);
    layer_s: fixed latency of a dense decoder layer on dataflow chips (LPU/wafer: the layer's chain
             of dependent stages incl. sync), s; other layers in proportion to their stages
             (costmodel.execution.stage_layers);
    hop_scale: multiplier on the catalog latency of a dataflow pipeline hop that leaves a scale-up
               domain (wafer to wafer, LPU rack to rack): 1 = the link's catalog figure; fitted
               for wafers, whose inter-system latency is not published;
    link_eff: achieved fraction of link bandwidth in collectives;
    mem_reserve: fraction of device memory unavailable to weights/KV (runtime, workspace)."""

    compute_eff: float
    mem_eff: float
    blend_p: float
    kernel_s: float
    host_scale: float
    layer_s: float
    hop_scale: float
    link_eff: float
    mem_reserve: float

    def with_values(self, **kw) -> "Efficiency":
        return replace(self, **kw)


FIELD_NAMES = tuple(f.name for f in fields(Efficiency))


# What each parameter may be (see Efficiency): fractions of a peak lie in (0, 1], a reserve in
# [0, 1), the roofline exponent is at least 1, fixed latencies are non-negative seconds.
_BOUNDS: dict[str, tuple[float, float, bool, bool]] = {  # (low, high, low allowed, high allowed)
    "compute_eff": (0.0, 1.0, False, True), "mem_eff": (0.0, 1.0, False, True), "link_eff": (0.0, 1.0, False, True),
    "mem_reserve": (0.0, 1.0, True, False), "blend_p": (1.0, math.inf, True, False),
    "kernel_s": (0.0, math.inf, True, False), "host_scale": (0.0, math.inf, True, False),
    "layer_s": (0.0, math.inf, True, False), "hop_scale": (0.0, math.inf, True, False),
}


def _check_values(values: object, where: str, fix: str) -> None:
    """Every entry of a `values` mapping names an Efficiency field and holds a number in its range."""
    if not isinstance(values, dict):
        raise InputError(f"{where}: 'values' must be a mapping of parameter -> number; {fix}")
    for name, v in values.items():
        if name not in _BOUNDS:
            raise InputError(f"{where}: unknown parameter '{shown(name)}' (known: {', '.join(FIELD_NAMES)}); {fix}")
        low, high, low_ok, high_ok = _BOUNDS[name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"{where}: {name} must be a finite number, got {shown(repr(v))}; {fix}")
        if v < low or v > high or (v == low and not low_ok) or (v == high and not high_ok):
            span = f"{'[' if low_ok else '('}{low:g}, {high:g}{']' if high_ok else ')'}"
            raise InputError(f"{where}: {name} = {v:g} lies outside {span}; {fix}")


def _check_uncertainty(record: object, where: str, fix: str) -> None:
    """An optional 'uncertainty' mapping: parameter -> {"low": number, "high": number, ...} with
    both ends valid values of the parameter and low <= high."""
    if record is None:
        return
    if not isinstance(record, dict):
        raise InputError(f"{where}: 'uncertainty' must map parameter -> {{\"low\": x, \"high\": y}}; {fix}")
    for name, u in record.items():
        if not isinstance(u, dict) or "low" not in u or "high" not in u:
            raise InputError(f"{where}: uncertainty.{shown(name)} must be an object with 'low' and 'high'; {fix}")
        _check_values({name: u["low"]}, f"{where}, uncertainty low", fix)
        _check_values({name: u["high"]}, f"{where}, uncertainty high", fix)
        if u["low"] > u["high"]:
            raise InputError(f"{where}: uncertainty.{shown(name)} has low {u['low']:g} above high {u['high']:g}; {fix}")


def _check_shape(doc: object, path: Path, kinds_section: bool) -> dict:
    """A calibration document: a JSON object whose 'families' (and, for defaults, 'kinds') map names
    to {"values": {...}} with valid parameters. Anything else is one InputError naming the place."""
    fix = ("give a fit file written by `infersim calibrate`, or 'none' for the uncalibrated defaults"
           if not kinds_section else "reinstall infersim")
    where = f"calibration file '{shown(path)}'"
    if not isinstance(doc, dict):
        raise InputError(f"{where}: expected a JSON object at the top level, got {type(doc).__name__}; {fix}")
    for section in (("kinds", "families") if kinds_section else ("families",)):
        entries = doc.get(section, {})
        if not isinstance(entries, dict):
            raise InputError(f"{where}: '{section}' must map names to {{\"values\": {{...}}}}; {fix}")
        for name, entry in entries.items():
            if not isinstance(entry, dict) or "values" not in entry:
                raise InputError(f"{where}: {section}.{shown(name)} must be an object with 'values'; {fix}")
            _check_values(entry["values"], f"{where}, {section}.{shown(name)}", fix)
            _check_uncertainty(entry.get("uncertainty"), f"{where}, {section}.{shown(name)}", fix)
    return doc


def _read(path: Path, required: bool = False, kinds_section: bool = False) -> dict:
    fix = "give an existing fit file (e.g. one `infersim calibrate` wrote), or 'none' for the uncalibrated defaults"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise InputError(f"calibration file '{shown(path)}' not found; {fix}") from None
        return {}
    except OSError as e:
        raise InputError(f"cannot read calibration file '{shown(path)}': {os_problem(e)}; {fix}") from None
    except UnicodeDecodeError:
        raise InputError(f"calibration file '{shown(path)}' is not UTF-8 text (a binary file?); {fix}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"calibration file '{shown(path)}': invalid JSON at line {e.lineno}: {e.msg}; {fix}") from None
    return _check_shape(doc, path, kinds_section)


@dataclass(frozen=True)
class Calibration:
    """Resolved parameters: defaults by chip kind, overridden by fitted values per kind and family."""

    defaults: dict
    fitted: dict
    source: str

    def _derived(self, family: str) -> dict:
        """The family's own values in defaults.json (derived from its chip's published facts)."""
        return self.defaults.get("families", {}).get(family, {})

    def for_chip(self, kind: str, family: str) -> Efficiency:
        """Kind defaults < the kind's pooled fit < the family's derived values (defaults.json
        `families`) < a fit of that same family: a pooled fit to other chips' rows never replaces
        what was derived for this chip."""
        base = dict(self.defaults["kinds"][kind]["values"])
        fit = self.fitted.get("families", {})
        if family in fit:
            base.update(self._derived(family).get("values", {}))
            base.update(fit[family]["values"])
        else:
            base.update(fit.get(f"pooled-{kind}", {}).get("values", {}))
            base.update(self._derived(family).get("values", {}))
        return Efficiency(**{k: float(base[k]) for k in FIELD_NAMES})

    def uncertainty(self, kind: str, family: str) -> dict[str, tuple[float, float, str]]:
        """{parameter: (low, high, basis)} of the values this chip family uses: the range `infersim
        calibrate` recorded for the fit they come from (its own, else its kind's pooled fit), and for
        values derived in defaults.json their stated range; {} when neither records one."""
        fit = self.fitted.get("families", {})
        entry = fit.get(family) or fit.get(f"pooled-{kind}") or {}
        out = {}
        for name, u in (entry.get("uncertainty") or {}).items():
            out[name] = (float(u["low"]), float(u["high"]), str(u.get("basis", "fit uncertainty")))
        if family not in fit:
            for name, u in (self._derived(family).get("uncertainty") or {}).items():
                out[name] = (float(u["low"]), float(u["high"]), str(u.get("basis", "derived range")))
        return out

    def provenance(self, kind: str, family: str) -> str:
        fit = self.fitted.get("families", {})
        derived = sorted(self._derived(family).get("values", {}))
        if family in fit:
            return f"fitted for {family} ({self.source})"
        note = f"; {', '.join(derived)} derived for {family} from chip facts (defaults.json)" if derived else ""
        if f"pooled-{kind}" in fit:
            return f"pooled {kind} fit ({self.source}); too few rows to fit {family} on its own" + note
        return "defaults (no fit)" + note


@lru_cache(maxsize=4)
def load_calibration(fit_path: str | None = None) -> Calibration:
    defaults = _read(DEFAULTS_FILE, kinds_section=True)
    if not defaults:
        raise InputError(f"missing calibration defaults {DEFAULTS_FILE}; reinstall infersim")
    path = Path(fit_path) if fit_path else FIT_FILE
    fitted = _read(path, required=fit_path is not None) if fit_path != "none" else {}
    return Calibration(defaults=defaults, fitted=fitted, source=str(path.name) if fitted else "none")


def efficiency_dict(e: Efficiency) -> dict:
    return asdict(e)
