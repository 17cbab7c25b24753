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
from dataclasses import asdict, dataclass, fields, replace
from functools import lru_cache
from pathlib import Path

from infersim.errors import InputError

CALIBRATION_DIR = Path(__file__).resolve().parent.parent / "calibration"
DEFAULTS_FILE = CALIBRATION_DIR / "defaults.json"
FIT_FILE = CALIBRATION_DIR / "fit.json"


@dataclass(frozen=True)
class Efficiency:
    """Execution-model parameters of one chip family.

    compute_eff: achieved fraction of dense peak FLOP/s for large matrix products;
    mem_eff: achieved fraction of peak memory bandwidth when streaming weights / KV;
    blend_p: roofline smoothness — an op takes (t_compute^p + t_memory^p)^(1/p); p -> inf is
             the hard roofline max (statically scheduled dataflow chips overlap perfectly);
    kernel_s: fixed time per op per layer (launch / pipeline fill floor), seconds;
    step_s: fixed time per engine step (scheduling, launch of the step, host sync), seconds;
    seq_s: host time per sequence per engine step (sampling, detokenisation, scheduler
           bookkeeping), seconds — the part of the step overhead that grows with batch size;
    layer_s: fixed latency per layer on dataflow chips (LPU/wafer pipeline hop incl. sync), s;
    link_eff: achieved fraction of link bandwidth in collectives;
    mem_reserve: fraction of device memory unavailable to weights/KV (runtime, workspace)."""

    compute_eff: float
    mem_eff: float
    blend_p: float
    kernel_s: float
    step_s: float
    seq_s: float
    layer_s: float
    link_eff: float
    mem_reserve: float

    def with_values(self, **kw) -> "Efficiency":
        return replace(self, **kw)


FIELD_NAMES = tuple(f.name for f in fields(Efficiency))


def _read(path: Path, required: bool = False) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        if required:
            raise InputError(f"calibration file {path} not found; give an existing fit file, or 'none' "
                             f"for the uncalibrated defaults") from None
        return {}
    except json.JSONDecodeError as e:
        raise InputError(f"calibration file {path}: invalid JSON at line {e.lineno}: {e.msg}") from None


@dataclass(frozen=True)
class Calibration:
    """Resolved parameters: defaults by chip kind, overridden by fitted values per kind and family."""

    defaults: dict
    fitted: dict
    source: str

    def for_chip(self, kind: str, family: str) -> Efficiency:
        base = dict(self.defaults["kinds"][kind]["values"])
        fam_defaults = self.defaults.get("families", {}).get(family, {}).get("values", {})
        base.update(fam_defaults)
        fit = self.fitted.get("families", {})
        if family in fit:
            base.update(fit[family]["values"])
        elif f"pooled-{kind}" in fit:
            base.update(fit[f"pooled-{kind}"]["values"])
        return Efficiency(**{k: float(base[k]) for k in FIELD_NAMES})

    def provenance(self, kind: str, family: str) -> str:
        fit = self.fitted.get("families", {})
        if family in fit:
            return f"fitted for {family} ({self.source})"
        if f"pooled-{kind}" in fit:
            return f"pooled {kind} fit ({self.source}); too few rows to fit {family} on its own"
        return "defaults (no fit)"


@lru_cache(maxsize=4)
def load_calibration(fit_path: str | None = None) -> Calibration:
    defaults = _read(DEFAULTS_FILE)
    if not defaults:
        raise InputError(f"missing calibration defaults {DEFAULTS_FILE}; reinstall infersim")
    path = Path(fit_path) if fit_path else FIT_FILE
    fitted = _read(path, required=fit_path is not None) if fit_path != "none" else {}
    return Calibration(defaults=defaults, fitted=fitted, source=str(path.name) if fitted else "none")


def efficiency_dict(e: Efficiency) -> dict:
    return asdict(e)
