"""`infersim validate`: predict every row it can, report per-row and grouped errors, list skips.

Two figures per group: in-sample (with the current fitted calibration) and cross-validated
(the held-out predictions stored by `infersim calibrate`, i.e. on rows each fit did not use)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infersim.catalog.hardware import HardwareCatalog, load_catalog
from infersim.costmodel.calibration import Calibration, load_calibration
from infersim.validation.measurements import read_measurements
from infersim.validation.scenarios import Skip, plan_row, predict

TARGET_ABS_ERR = {"gpu": 0.15, "lpu": 0.25, "wafer": 0.25}


@dataclass
class RowResult:
    id: str
    model: str
    chip: str
    kind: str
    family: str
    scenario: str
    metric: str
    measured: float
    predicted: float
    heldout: float | None
    assumptions: list[str] = field(default_factory=list)

    @property
    def error(self) -> float:
        return (self.predicted - self.measured) / self.measured

    @property
    def heldout_error(self) -> float | None:
        return None if self.heldout is None else (self.heldout - self.measured) / self.measured


@dataclass
class ValidationReport:
    rows: list[RowResult]
    skipped: list[Skip]
    calibration: str

    def groups(self) -> list[dict]:
        out = []
        keys = [("kind", lambda r: r.kind), ("family", lambda r: f"{r.kind}/{r.family}"),
                ("metric", lambda r: r.metric), ("scenario", lambda r: r.scenario)]
        for label, key in keys:
            buckets: dict[str, list[RowResult]] = {}
            for r in self.rows:
                buckets.setdefault(key(r), []).append(r)
            for name, rs in sorted(buckets.items()):
                e = np.abs([r.error for r in rs])
                h = np.abs([r.heldout_error for r in rs if r.heldout_error is not None])
                out.append({"by": label, "group": name, "n": len(rs),
                            "median_abs_err": float(np.median(e)), "mean_abs_err": float(np.mean(e)),
                            "heldout_n": int(len(h)),
                            "heldout_median_abs_err": float(np.median(h)) if len(h) else None,
                            "heldout_mean_abs_err": float(np.mean(h)) if len(h) else None,
                            "target": TARGET_ABS_ERR.get(name) if label == "kind" else None})
        return out

    def to_dict(self) -> dict:
        return {
            "calibration": self.calibration,
            "rows": [{"id": r.id, "model": r.model, "chip": r.chip, "kind": r.kind, "family": r.family,
                      "scenario": r.scenario, "metric": r.metric, "measured": r.measured, "predicted": r.predicted,
                      "error": r.error, "abs_error": abs(r.error), "heldout_predicted": r.heldout,
                      "heldout_error": r.heldout_error, "assumptions": r.assumptions} for r in self.rows],
            "skipped": [{"id": s.id, "reason": s.reason} for s in self.skipped],
            "groups": self.groups(),
        }


def validate(measurements: str | Path, catalog: HardwareCatalog | None = None,
             calibration: Calibration | None = None) -> ValidationReport:
    catalog = catalog or load_catalog()
    calibration = calibration or load_calibration()
    heldout = calibration.fitted.get("heldout_predictions", {})
    results, skipped = [], []
    for row in read_measurements(measurements):
        plan = plan_row(row, catalog, calibration)
        if isinstance(plan, Skip):
            skipped.append(plan)
            continue
        with np.errstate(all="ignore"):
            value = float(predict(plan))
        if not np.isfinite(value) or value <= 0:
            skipped.append(Skip(row.id, f"prediction not finite ({value}); model cannot represent this row"))
            continue
        results.append(RowResult(row.id, plan.model.name, row.chip, plan.group, plan.family, row.scenario, row.metric,
                                 row.value, value, heldout.get(row.id), plan.assumptions))
    return ValidationReport(results, skipped, calibration.source)
