"""`validate` on InferenceX serving points: predict each point by simulating its benchmark client
(validation/harness.py) against the deployment its columns describe (validation/inferencex_plan.py),
and report the errors by interactivity band, serving feature and hardware.

Three metrics per point, as the source defines them: output tokens/s per GPU (disaggregated runs:
per decode GPU), tokens/s per user (1 / median TPOT, or mean where the point says), median TTFT.
Bands group points by their MEASURED tokens/s per user, so a prediction cannot move its point
between bands. Equal configurations (the same run repeated on other dates) are simulated once.
"""
from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from infersim.calibration.efficiency import Calibration, load_calibration
from infersim.catalog.hardware import HardwareCatalog, load_catalog
from infersim.datasets import display_path
from infersim.deployments.run import simulate_plan
from infersim.errors import InputError
from infersim.validation.harness import HarnessRun, run_harness
from infersim.validation.inferencex import InferenceXPoint, read_points
from infersim.validation.inferencex_fit import row_id
from infersim.validation.inferencex_plan import PointSetup, features, map_point
from infersim.validation.report import measured_on
from infersim.validation.scenarios import Skip
from infersim.interactivity import BAND_NAMES, band_of

SET = "inferencex"
# issue 9's target for these points: median |error| per metric; today's predictions are far from it
TARGET_ABS_ERR = 0.12
METRICS = ("output_tok_s_per_chip", "tok_s_per_user", "ttft_ms")
@dataclass
class PointResult:
    id: str
    chip: str
    hardware: str
    framework: str
    precision: str
    isl: int
    osl: int
    concurrency: int
    band: str
    features: tuple[str, ...]
    metric: str
    measured: float
    predicted: float
    assumptions: list[str] = field(default_factory=list)
    # closed form (validation/inferencex_fit.py) with the fit (in-sample) and with the fit on every
    # configuration but this point's (held out); None when the fit file did not fit on the point
    closed_form: float | None = None
    heldout: float | None = None

    @property
    def error(self) -> float:
        return (self.predicted - self.measured) / self.measured

    def error_of(self, which: str) -> float | None:
        """Relative error of the simulated ('predicted'), closed-form or held-out prediction."""
        v = getattr(self, which)
        return None if v is None else (v - self.measured) / self.measured

    def to_dict(self) -> dict:
        return {"id": self.id, "chip": self.chip, "hardware": self.hardware, "framework": self.framework,
                "precision": self.precision, "isl": self.isl, "osl": self.osl, "concurrency": self.concurrency,
                "band": self.band, "features": list(self.features), "metric": self.metric,
                "measured": self.measured, "predicted": self.predicted, "error": self.error,
                "abs_error": abs(self.error), "method": "simulated",
                "closed_form": self.closed_form, "closed_form_error": self.error_of("closed_form"),
                "heldout_closed_form": self.heldout, "heldout_closed_form_error": self.error_of("heldout"),
                "assumptions": self.assumptions, "set": SET}


@dataclass
class InferenceXReport:
    rows: list[PointResult]
    skipped: list[Skip]
    source: str
    points: int

    def groups(self) -> list[dict]:
        """Median and mean |error| per metric, by band, feature, hardware and overall."""
        keys = [("metric", lambda r: ["all"]), ("band", lambda r: [r.band]), ("feature", lambda r: list(r.features)),
                ("hardware", lambda r: [r.hardware])]
        out = []
        for label, key in keys:
            buckets: dict[tuple[str, str], list[PointResult]] = {}
            for r in self.rows:
                for g in key(r):
                    buckets.setdefault((g, r.metric), []).append(r)
            order = list(BAND_NAMES) + ["unknown"] if label == "band" else None
            for (g, metric), rs in sorted(buckets.items(), key=lambda kv: (
                    order.index(kv[0][0]) if order else kv[0][0], METRICS.index(kv[0][1]))):
                e = np.abs([r.error for r in rs])
                entry = {"by": label, "group": g, "metric": metric, "n": len(rs),
                         "median_abs_err": float(np.median(e)), "mean_abs_err": float(np.mean(e)),
                         "target": TARGET_ABS_ERR, "set": SET}
                for which, key in (("closed_form", "closed_form"), ("heldout", "heldout_closed_form")):
                    f = [abs(x) for x in (r.error_of(which) for r in rs) if x is not None]
                    entry[f"{key}_n"] = len(f)
                    entry[f"{key}_median_abs_err"] = float(np.median(f)) if f else None
                out.append(entry)
        return out

    def skipped_by_reason(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for s in self.skipped:
            counts[s.reason] = counts.get(s.reason, 0) + 1
        return dict(sorted(counts.items(), key=lambda kv: -kv[1]))

    def to_dict(self) -> dict:
        return {"source": self.source, "points": self.points, "predicted_points": len({r.id for r in self.rows}),
                "skipped_points": len(self.skipped), "skipped_by_reason": self.skipped_by_reason(),
                "target_median_abs_err": TARGET_ABS_ERR,
                "rows": [r.to_dict() for r in self.rows],
                "skipped": [{"id": s.id, "reason": s.reason, "set": SET} for s in self.skipped],
                "groups": self.groups()}


def _simulate(setup: PointSetup) -> HarnessRun | str:
    """The client's figures for one point (a process-pool task); a refusal (the KV cache cannot
    hold a request, ...) comes back as its message."""
    p = setup.point
    try:
        with np.errstate(all="ignore"):
            return run_harness(lambda wl: simulate_plan(setup.plan, wl, engine=setup.engine).records,
                               p.concurrency, p.isl, p.osl, p.num_prompts)
    except InputError as e:
        return str(e)


def _job_key(setup: PointSetup) -> tuple:
    """Points with equal keys get equal predictions (the simulation is deterministic)."""
    p = setup.point
    return (setup.plan.spec.model_dump_json(), setup.engine, p.concurrency, p.isl, p.osl, p.num_prompts)


def _run_all(setups: list[PointSetup], jobs: int) -> dict[str, HarnessRun | str]:
    unique: dict[tuple, PointSetup] = {}
    for s in setups:
        unique.setdefault(_job_key(s), s)
    # the most prompt tokens first, so the longest runs do not start last
    order = sorted(unique, key=lambda k: -unique[k].point.concurrency * unique[k].point.isl)
    if jobs > 1 and len(order) > 1:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            results = dict(zip(order, pool.map(_simulate, [unique[k] for k in order], chunksize=1)))
    else:
        results = {k: _simulate(unique[k]) for k in order}
    return {s.point.id: results[_job_key(s)] for s in setups}


def _rows(p: InferenceXPoint, chip: str, run: HarnessRun, assumptions: list[str]) -> tuple[list[PointResult], list[Skip]]:
    """The point's rows (metrics it measured) and a Skip per metric the run cannot give."""
    tpot = run.tpot_mean_s if p.tpot_stat == "mean" else run.tpot_median_s
    predicted = {"output_tok_s_per_chip": run.output_tok_s / p.decode_gpus, "tok_s_per_user": 1.0 / tpot,
                 "ttft_ms": run.ttft_median_s * 1e3}
    measured = {"output_tok_s_per_chip": p.output_tok_s_per_gpu, "tok_s_per_user": p.tok_s_per_user,
                "ttft_ms": p.ttft_ms_median}
    band = band_of(p.tok_s_per_user)
    rows, skips = [], []
    for m in METRICS:
        if measured[m] is None:
            continue  # the source did not record it: nothing to compare
        if not (np.isfinite(predicted[m]) and predicted[m] > 0):
            skips.append(Skip(p.id, f"{m} prediction not finite ({predicted[m]}); every output is one token?"))
            continue
        rows.append(PointResult(p.id, chip, p.hardware, p.framework, p.precision, p.isl, p.osl, p.concurrency, band,
                                features(p), m, measured[m], predicted[m], assumptions))
    return rows, skips


def validate_inferencex(path: str | Path, catalog: HardwareCatalog | None = None,
                        calibration: Calibration | None = None, jobs: int = 1,
                        chips: set[str] | None = None) -> InferenceXReport:
    """Predict every point of an InferenceX-format file that can be mapped; `chips`: only points
    measured on these catalog chips (a deployment file's)."""
    catalog = catalog or load_catalog()
    calibration = calibration or load_calibration()
    points = read_points(path)
    setups, skipped = [], []
    for p in points:
        if not measured_on(catalog, p.hardware, chips):
            continue
        s = map_point(p, catalog, calibration)
        (skipped if isinstance(s, Skip) else setups).append(s)
    runs = _run_all(setups, jobs)
    # the fit's closed-form predictions of these points, when it was fitted on this very file
    fitted = calibration.fitted if calibration.fitted.get("sets", {}).get("inferencex") == display_path(path) else {}
    closed_form = fitted.get("inferencex_insample_predictions", {})
    heldout = fitted.get("heldout_grouped_predictions", {})
    rows: list[PointResult] = []
    for s in setups:
        run = runs[s.point.id]
        if isinstance(run, str):
            skipped.append(Skip(s.point.id, f"refused by the simulator: {run}"))
            continue
        chip = s.plan.decode_pool.deployment.chip.name
        notes = list(s.assumptions) + ([f"shortcut: {run.requests_simulated} of {run.requests_measured} prompts "
                                        "simulated, the steady middle extrapolated"]
                                       if run.requests_simulated < run.requests_measured else [])
        got, refused = _rows(s.point, chip, run, notes)
        for r in got:
            key = row_id(r.id, r.metric)
            r.closed_form, r.heldout = closed_form.get(key), heldout.get(key)
        rows.extend(got)
        skipped.extend(refused)
    order = {p.id: i for i, p in enumerate(points)}
    skipped.sort(key=lambda s: order[s.id])
    return InferenceXReport(rows, skipped, display_path(path), len(points))
