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

Two cross-validations (validation/folds.py): FOLDS row folds drawn with SEED (heldout_*), and
leave-one-source-out folds that never split a source group (heldout_grouped_*; no seed). The
row-fold figure moves with the seed (`fold_seed_check`: about 2 points for the GPU rows); averaging
repeated splits would need one simulation per split and row in `validate`, so the by-source figure,
which draws nothing, is the one the targets apply to. The fit
file lists the groups, flags every fitted value on its grid's edge (`at_grid_edge`), and records
how much the row-fold figure moves over SEED_CHECK seeds (`fold_seed_check`, closed-form
predictions).
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
from infersim.validation.folds import grid_edges, row_folds, source_folds, source_group
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
SEED_CHECK = 5  # seeds SEED, SEED+1, ... the row-fold figure is recomputed with
KINDS = ("gpu", "lpu", "wafer")


@dataclass
class FitResult:
    fit_file: dict
    plans: list[RowPlan]
    skipped: list[Skip]
    heldout: dict[str, float]  # row id -> cross-validated prediction (row folds)
    heldout_grouped: dict[str, float] | None = None  # row id -> leave-one-source-out prediction


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


def _heldout(kp, logerr, pts, folds: np.ndarray) -> tuple[dict[str, float], dict[str, dict]]:
    """({row id: prediction}, {row id: parameters}) of each row from the fit on the other folds."""
    preds, params_of = {}, {}
    for f in np.unique(folds):
        test = np.where(folds == f)[0]
        train = np.where(folds != f)[0]
        tf = _fit_subset(kp, logerr, pts, list(train))
        for i in test:
            params = tf.get(kp[i].family) or tf.get("pooled")
            if params is None:
                continue
            preds[kp[i].row.id] = float(np.exp(_value_at(logerr[i], pts, params)) * kp[i].row.value)
            params_of[kp[i].row.id] = dict(params)
    return preds, params_of


def _row_fold_heldout(matrices: dict, seed: int) -> tuple[dict[str, float], dict[str, dict]]:
    """Row-fold held-out predictions of every kind (one generator, kinds in KINDS order)."""
    rng = np.random.default_rng(seed)
    preds, params = {}, {}
    for kind, (kp, logerr, pts) in matrices.items():
        p, q = _heldout(kp, logerr, pts, row_folds(len(kp), min(FOLDS, len(kp)), rng))
        preds.update(p)
        params.update(q)
    return preds, params


def _median_abs_err(matrices: dict, preds: dict[str, float]) -> dict[str, float | None]:
    out = {}
    for kind, (kp, _, _) in matrices.items():
        e = [abs(preds[p.row.id] / p.row.value - 1) for p in kp if p.row.id in preds]
        out[kind] = float(np.median(e)) if e else None
    return out


def calibrate(measurements: str | Path, catalog: HardwareCatalog | None = None, progress=None,
              seed: int = SEED) -> FitResult:
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
    heldout_grouped: dict[str, float] = {}
    heldout_grouped_params: dict[str, dict] = {}
    matrices = {}
    for kind in KINDS:
        kp = [p for p in plans if p.group == kind]
        if not kp:
            continue
        logerr, pts = _matrix(kp, base, kind)
        matrices[kind] = (kp, logerr, pts)
        if progress:
            progress(kind)
        fits = _fit_subset(kp, logerr, pts, list(range(len(kp))))
        for fam, vals in fits.items():
            name = f"pooled-{kind}" if fam == "pooled" else fam
            used = [p.row.id for p in kp if fam == "pooled" or p.family == fam]
            families[name] = {"values": vals, "rows": used, "at_grid_edge": grid_edges(vals, GRIDS[kind])}
        p, q = _heldout(kp, logerr, pts, source_folds([source_group(x.row.source) for x in kp]))
        heldout_grouped.update(p)
        heldout_grouped_params.update(q)
    heldout, heldout_params = _row_fold_heldout(matrices, seed)
    seeds = [seed + i for i in range(SEED_CHECK)]
    by_seed = [_median_abs_err(matrices, _row_fold_heldout(matrices, s)[0]) for s in seeds]
    seed_check = {
        "about": "held-out median |error| per kind of the closed-form predictions (validate simulates serving "
                 "rows, so its figures differ): row folds with each seed; source-grouped folds draw nothing",
        "seeds": seeds,
        "row_folds": {k: [m[k] for m in by_seed] for k in matrices},
        "row_folds_spread": {k: _spread([m[k] for m in by_seed]) for k in matrices},
        "source_grouped": _median_abs_err(matrices, heldout_grouped),
    }
    groups: dict[str, list[str]] = {}
    for p in plans:
        groups.setdefault(source_group(p.row.source), []).append(p.row.id)
    fit_file = {
        "about": "Per chip-family efficiency parameters fitted by `infersim calibrate` (grid search, mean |log error|). "
                 "Reproduce with the command below; do not edit by hand.",
        "command": (f"infersim calibrate --measurements {display_path(measurements)} --out infersim-fit.json "
                    "(the shipped src/infersim/calibration/fit.json is such a file, copied in by a commit)"),
        "measurements": display_path(measurements),
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code_version": _git_rev(),
        "grids": {k: {n: [float(x) for x in v] for n, v in g.items()} for k, g in GRIDS.items()},
        "min_family_rows": MIN_FAMILY_ROWS, "folds": FOLDS, "seed": seed,
        "fold_procedures": {
            "heldout": f"{FOLDS} row folds (rows dealt at random with the seed; leave-one-out below {FOLDS} rows)",
            "heldout_grouped": "leave-one-source-out: each source group (below) predicted by the fit on all other "
                               "groups; a group is never split",
        },
        "source_groups": dict(sorted(groups.items())),
        "families": families,
        "heldout_predictions": heldout,
        "heldout_params": heldout_params,
        "heldout_grouped_predictions": heldout_grouped,
        "heldout_grouped_params": heldout_grouped_params,
        "fold_seed_check": seed_check,
    }
    return FitResult(fit_file, plans, skipped, heldout, heldout_grouped)


def _spread(values: list) -> float | None:
    v = [x for x in values if x is not None]
    return float(max(v) - min(v)) if v else None


def write_fit(result: FitResult, out: str | Path) -> None:
    Path(out).write_text(json_text(result.fit_file, indent=1))  # refuses NaN/inf: not JSON
    load_calibration.cache_clear()


def _git_rev() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              timeout=5, cwd=Path(__file__).parent).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
