"""`infersim calibrate`: fit few physical efficiency parameters per chip family to published
measurements, and cross-validate (fit on part of the rows, measure on the rest).

Method: every usable row is predicted once for every point of a parameter grid (the cost model
broadcasts over parameter arrays), giving a rows x grid matrix. Serving rows (offline, server,
concurrency) are fitted on their analytical approximation (scenarios.py), because it broadcasts
over the grid and the simulator is too slow to run at every grid point; the two agree within a
few percent on most rows (more on long prompts, where chunked prefill overlaps decode).
`validate` then predicts those rows by simulation, in-sample and held out (each row's fold
parameters are stored as heldout_params). A fit on any subset of rows is the grid point minimising the mean absolute log error over that subset — so K-fold cross-validation
costs no more predictions. Families with fewer than MIN_FAMILY_ROWS training rows use their chip
kind's pooled fit. Fitted per kind: GPU compute_eff, mem_eff, host_scale (a multiplier on the engines' host work,
catalog/data/engines.yaml); LPU/wafer layer_s.
"""
from __future__ import annotations

import itertools
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infersim.catalog.hardware import HardwareCatalog, load_catalog
from infersim.calibration.efficiency import Calibration, Efficiency, load_calibration
from infersim.datasets import display_path
from infersim.results import json_text
from infersim.validation.measurements import read_measurements
from infersim.validation.scenarios import RowPlan, Skip, plan_row, predict

GRIDS = {
    "gpu": {"compute_eff": np.linspace(0.2, 0.95, 16), "mem_eff": np.linspace(0.35, 0.95, 13),
            "host_scale": np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0])},
    "lpu": {"layer_s": np.geomspace(1e-6, 2e-4, 40)},
    "wafer": {"layer_s": np.geomspace(2e-7, 5e-5, 40)},
}
MIN_FAMILY_ROWS = 5
FOLDS = 5
SEED = 20261126


@dataclass
class FitResult:
    fit_file: dict
    plans: list[RowPlan]
    skipped: list[Skip]
    heldout: dict[str, float]  # row id -> cross-validated prediction


def _grid_points(kind: str) -> dict[str, np.ndarray]:
    g = GRIDS[kind]
    names = list(g)
    mesh = list(itertools.product(*(g[n] for n in names)))
    return {n: np.array([p[i] for p in mesh]) for i, n in enumerate(names)}


def _matrix(plans: list[RowPlan], calibration: Calibration, kind: str) -> tuple[np.ndarray, dict]:
    """log(pred/measured) for each plan (rows) at each grid point (columns)."""
    pts = _grid_points(kind)
    out = np.empty((len(plans), len(next(iter(pts.values())))))
    for i, p in enumerate(plans):
        base = calibration.for_chip(kind, p.family)
        eff = Efficiency(**{f: pts.get(f, getattr(base, f)) for f in base.__dataclass_fields__})
        with np.errstate(all="ignore"):
            pred = predict(p, eff)
        out[i] = np.log(np.maximum(pred, 1e-30) / p.row.value)
    return out, pts


def _best(logerr: np.ndarray, rows: np.ndarray) -> int:
    loss = np.nanmean(np.abs(logerr[rows]), axis=0)
    return int(np.nanargmin(loss))


def _fit_subset(kind_plans, logerr, pts, train_idx) -> dict[str, dict]:
    """{family or pooled-kind: {param: value}} fitted on the given row indices."""
    fits = {}
    if len(train_idx) == 0:
        return fits
    g = _best(logerr, np.asarray(train_idx))
    fits["pooled"] = {k: float(v[g]) for k, v in pts.items()}
    fams: dict[str, list[int]] = {}
    for i in train_idx:
        fams.setdefault(kind_plans[i].family, []).append(i)
    for fam, idx in fams.items():
        if len(idx) >= MIN_FAMILY_ROWS:
            g = _best(logerr, np.asarray(idx))
            fits[fam] = {k: float(v[g]) for k, v in pts.items()}
    return fits


def _value_at(logerr_row, pts, params) -> float:
    g = np.ones(len(logerr_row), dtype=bool)
    for k, v in params.items():
        g &= np.isclose(pts[k], v)
    return float(logerr_row[np.argmax(g)])


def calibrate(measurements: str | Path, catalog: HardwareCatalog | None = None, progress=None) -> FitResult:
    catalog = catalog or load_catalog()
    base = load_calibration("none")
    rows = read_measurements(measurements)
    plans, skipped = [], []
    for r in rows:
        p = plan_row(r, catalog, base)
        if not isinstance(p, Skip) and p.spec is not None:
            # the calibration README: keep speculative-decoding rows out of fits (validate predicts them)
            p = Skip(r.id, "speculative decoding: predicted by validate, kept out of the fit")
        (skipped if isinstance(p, Skip) else plans).append(p)
    families: dict[str, dict] = {}
    heldout: dict[str, float] = {}
    heldout_params: dict[str, dict] = {}
    rng = np.random.default_rng(SEED)
    for kind in ("gpu", "lpu", "wafer"):
        kp = [p for p in plans if p.group == kind]
        if not kp:
            continue
        logerr, pts = _matrix(kp, base, kind)
        if progress:
            progress(kind)
        fits = _fit_subset(kp, logerr, pts, list(range(len(kp))))
        for fam, vals in fits.items():
            name = f"pooled-{kind}" if fam == "pooled" else fam
            used = [p.row.id for p in kp if fam == "pooled" or p.family == fam]
            families[name] = {"values": vals, "rows": used}
        # K-fold (leave-one-out when rows are few) cross-validation
        k = min(FOLDS, len(kp))
        folds = rng.permutation(len(kp)) % k if k > 1 else np.zeros(len(kp), dtype=int)
        for f in range(k):
            test = np.where(folds == f)[0]
            train = np.where(folds != f)[0]
            tf = _fit_subset(kp, logerr, pts, list(train))
            for i in test:
                params = tf.get(kp[i].family) or tf.get("pooled")
                if params is None:
                    continue
                heldout[kp[i].row.id] = float(np.exp(_value_at(logerr[i], pts, params)) * kp[i].row.value)
                heldout_params[kp[i].row.id] = dict(params)
    fit_file = {
        "about": "Per chip-family efficiency parameters fitted by `infersim calibrate` (grid search, mean |log error|). "
                 "Reproduce with the command below; do not edit by hand.",
        "command": (f"infersim calibrate --measurements {display_path(measurements)} --out infersim-fit.json "
                    "(the shipped src/infersim/calibration/fit.json is such a file, copied in by a commit)"),
        "measurements": display_path(measurements),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code_version": _git_rev(),
        "grids": {k: {n: [float(x) for x in v] for n, v in g.items()} for k, g in GRIDS.items()},
        "min_family_rows": MIN_FAMILY_ROWS, "folds": FOLDS, "seed": SEED,
        "families": families,
        "heldout_predictions": heldout,
        "heldout_params": heldout_params,
    }
    return FitResult(fit_file, plans, skipped, heldout)


def write_fit(result: FitResult, out: str | Path) -> None:
    Path(out).write_text(json_text(result.fit_file, indent=1))  # refuses NaN/inf: not JSON
    load_calibration.cache_clear()


def _git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=5, cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
