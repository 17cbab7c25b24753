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
catalog/data/engines.yaml); LPU layer_s; wafer layer_s and hop_scale (the inter-wafer hop latency
as a multiple of the cerebras-swarmx link's catalog latency).

Two cross-validations (validation/folds.py): row folds by leave-one-out (heldout_*: each measurement
row predicted by the fit on all the others; nothing drawn, so no seed moves it: one random FOLDS-fold
split moved the GPU median by ~4 points with its seed, which `fold_seed_check` still records for
comparison), and leave-one-source-out folds that never split a source group (heldout_grouped_*; each
InferenceX configuration is one group). The by-source figure is the one the targets apply to. The
fit file lists the groups, flags every fitted value on its grid's edge (`at_grid_edge`) and gives
each fitted value's uncertainty (`uncertainty`: its range over the leave-one-group-out fits, which
`infersim sensitivity` sweeps).
"""
from __future__ import annotations

import itertools
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from infersim.catalog.hardware import HardwareCatalog, load_catalog
from infersim.calibration.efficiency import Calibration, Efficiency, load_calibration
from infersim.datasets import display_path
from infersim.results import json_text
from infersim.validation.folds import fold_range, grid_edges, row_folds, rows_resting_on, source_folds, source_group
from infersim.validation.inferencex_fit import SET as INFERENCEX, inferencex_plans
from infersim.validation.measurements import read_measurements
from infersim.validation.scenarios import RowPlan, Skip, layout_values, plan_row, predict

GRIDS = {
    "gpu": {"compute_eff": np.linspace(0.2, 0.95, 16), "mem_eff": np.linspace(0.35, 0.95, 13),
            "host_scale": np.array([0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0])},
    "lpu": {"layer_s": np.geomspace(1e-6, 2e-4, 40)},
    "wafer": {"layer_s": np.geomspace(2e-7, 5e-5, 40),
              "hop_scale": np.array([0.0, 0.03, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0, 3.0])},
}
MIN_FAMILY_ROWS = 5
FOLDS = 5
SEED = 20261126
SEED_CHECK = 5  # seeds SEED, SEED+1, ... the row-fold figure is recomputed with
KINDS = ("gpu", "lpu", "wafer")
MEASUREMENTS = "measurements"
# Which fitting procedure wrote a fit file (its rows, folds, records). 2: every InferenceX point that
# maps (P/D and MTP closed forms), leave-one-out row folds, each value's uncertainty. A fit file of
# another procedure is not what calibrate now reproduces (files without the field are procedure 1).
PROCEDURE = 2


@dataclass
class FitResult:
    fit_file: dict
    plans: list[RowPlan]
    skipped: list[Skip]
    heldout: dict[str, float]  # row id -> cross-validated prediction (row folds)
    heldout_grouped: dict[str, float] | None = None  # row id -> leave-one-source-out prediction
    inferencex_skipped: list[Skip] | None = None  # InferenceX points kept out of the fit, with the reason


def _grid_points(kind: str) -> dict[str, np.ndarray]:
    g = GRIDS[kind]
    names = list(g)
    mesh = list(itertools.product(*(g[n] for n in names)))
    return {n: np.array([p[i] for p in mesh]) for i, n in enumerate(names)}


def _matrix(plans: list[RowPlan], calibration: Calibration, kind: str,
            shared: dict[str, tuple] | None = None) -> tuple[np.ndarray, dict]:
    """log(pred/measured) for each plan (rows) at each grid point (columns). Rows with equal keys
    in `shared` (one layout each: the metrics of one InferenceX point, and its repeats on other
    dates) are predicted once."""
    pts = _grid_points(kind)
    out = np.empty((len(plans), len(next(iter(pts.values())))))
    cache: dict[tuple, dict] = {}
    for i, p in enumerate(plans):
        base = calibration.for_chip(kind, p.family)
        eff = Efficiency(**{f: pts.get(f, getattr(base, f)) for f in base.__dataclass_fields__})
        with np.errstate(all="ignore"):
            key = (shared or {}).get(p.row.id)
            if key is None:
                pred = predict(p, eff)
            else:
                if key not in cache:
                    cache[key] = (p.closed_form(eff) if p.closed_form is not None
                                  else layout_values(p, replace(p.layouts[0], eff=eff))[0])
                pred = np.asarray(cache[key][p.row.metric], dtype=float)
            out[i] = np.log(np.maximum(pred, 1e-30) / p.row.value)
    return out, pts


def _best(logerr: np.ndarray, rows: np.ndarray, sets: np.ndarray) -> int:
    """The grid point minimising the mean |log error| of each set of rows, summed over the sets:
    every set weighs the same in a fit, whatever its row count (1,000 InferenceX rows of two models
    would otherwise drown the measurement CSV's rows of many models)."""
    e, s = np.abs(logerr[rows]), sets[rows]
    loss = sum(np.nanmean(e[s == name], axis=0) for name in np.unique(s))
    return int(np.nanargmin(loss))


def _fit_subset(kind_plans, logerr, pts, train_idx, sets) -> dict[str, dict]:
    """{family or pooled-kind: {param: value}} fitted on the given row indices."""
    fits = {}
    if len(train_idx) == 0:
        return fits
    g = _best(logerr, np.asarray(train_idx), sets)
    fits["pooled"] = {k: float(v[g]) for k, v in pts.items()}
    fams: dict[str, list[int]] = {}
    for i in train_idx:
        fams.setdefault(kind_plans[i].family, []).append(i)
    for fam, idx in fams.items():
        if len(idx) >= MIN_FAMILY_ROWS:
            g = _best(logerr, np.asarray(idx), sets)
            fits[fam] = {k: float(v[g]) for k, v in pts.items()}
    return fits


def _value_at(logerr_row, pts, params) -> float:
    g = np.ones(len(logerr_row), dtype=bool)
    for k, v in params.items():
        g &= np.isclose(pts[k], v)
    return float(logerr_row[np.argmax(g)])


def _heldout(kp, logerr, pts, sets, folds: np.ndarray, fold_fits: list | None = None
             ) -> tuple[dict[str, float], dict[str, dict]]:
    """({row id: prediction}, {row id: parameters}) of each row from the fit on the other folds;
    each fold's fit ({family: values}) is appended to `fold_fits` when given."""
    preds, params_of = {}, {}
    for f in np.unique(folds):
        test = np.where(folds == f)[0]
        train = np.where(folds != f)[0]
        tf = _fit_subset(kp, logerr, pts, list(train), sets)
        if fold_fits is not None:
            fold_fits.append(tf)
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
    for kind, (kp, logerr, pts, sets) in matrices.items():
        p, q = _heldout(kp, logerr, pts, sets, row_folds(len(kp), min(FOLDS, len(kp)), rng))
        preds.update(p)
        params.update(q)
    return preds, params


def _leave_one_out(matrices: dict) -> tuple[dict[str, float], dict[str, dict]]:
    """Each measurement row predicted by the fit on every other row (InferenceX rows, held out by
    configuration only, stay in every fit and share one fold of their own): nothing is drawn."""
    preds, params = {}, {}
    for kind, (kp, logerr, pts, sets) in matrices.items():
        folds = np.where(sets == MEASUREMENTS, np.arange(len(kp)), len(kp))
        p, q = _heldout(kp, logerr, pts, sets, folds)
        preds.update(p)
        params.update(q)
    return preds, params


def _median_abs_err(matrices: dict, preds: dict[str, float], only: str = MEASUREMENTS) -> dict[str, float | None]:
    """Median |error| per kind of the rows of set `only` that have a prediction."""
    out = {}
    for kind, (kp, _, _, sets) in matrices.items():
        e = [abs(preds[p.row.id] / p.row.value - 1) for p, s in zip(kp, sets) if p.row.id in preds and s == only]
        out[kind] = float(np.median(e)) if e else None
    return out


def calibrate(measurements: str | Path, catalog: HardwareCatalog | None = None, progress=None,
              seed: int = SEED, inferencex: str | Path | None = None) -> FitResult:
    """Fit on the measurement CSV and, when `inferencex` names a points file, on its InferenceX
    points too (validation/inferencex_fit.py says which points enter and why)."""
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
    set_of = {p.row.id: MEASUREMENTS for p in plans}
    group_of = {p.row.id: source_group(p.row.source) for p in plans}
    ix_skipped, shared = [], {}
    if inferencex is not None:
        ix_plans, ix_skipped, ix_groups = inferencex_plans(inferencex, catalog, base)
        plans += ix_plans
        group_of.update(ix_groups)
        set_of.update({p.row.id: INFERENCEX for p in ix_plans})
        # a point's metrics, and its repeats on other dates, share one prediction
        shared = {p.row.id: (ix_groups[p.row.id], p.row.concurrency) for p in ix_plans}
    families: dict[str, dict] = {}
    heldout_grouped: dict[str, float] = {}
    heldout_grouped_params: dict[str, dict] = {}
    insample: dict[str, float] = {}  # InferenceX row id -> closed-form prediction with the fit
    matrices = {}
    for kind in KINDS:
        kp = [p for p in plans if p.group == kind]
        if not kp:
            continue
        logerr, pts = _matrix(kp, base, kind, shared)
        sets = np.array([set_of[p.row.id] for p in kp])
        matrices[kind] = (kp, logerr, pts, sets)
        if progress:
            progress(kind)
        fits = _fit_subset(kp, logerr, pts, list(range(len(kp))), sets)
        fold_fits: list[dict] = []
        p, q = _heldout(kp, logerr, pts, sets, source_folds([group_of[x.row.id] for x in kp]), fold_fits)
        heldout_grouped.update(p)
        heldout_grouped_params.update(q)
        for fam, vals in fits.items():
            name = f"pooled-{kind}" if fam == "pooled" else fam
            used = [p.row.id for p in kp if fam == "pooled" or p.family == fam]
            by_set = {s: sum(set_of[r] == s for r in used) for s in (MEASUREMENTS, INFERENCEX)}
            idx = [i for i, x in enumerate(kp) if fam == "pooled" or x.family == fam]
            rest = rows_resting_on(logerr[idx], pts, vals,
                                   [kp[i].row.id if sets[i] == MEASUREMENTS else None for i in idx])
            families[name] = {"values": vals, "rows": used, "rows_by_set": by_set, "rows_per_parameter": rest,
                              "at_grid_edge": grid_edges(vals, GRIDS[kind]),
                              "uncertainty": fold_range(vals, [tf[fam] for tf in fold_fits if fam in tf], GRIDS[kind])}
        for i, x in enumerate(kp):
            if set_of[x.row.id] == INFERENCEX:
                params = fits.get(x.family) or fits["pooled"]
                insample[x.row.id] = float(np.exp(_value_at(logerr[i], pts, params)) * x.row.value)
    # row folds: leave-one-out, which draws nothing (one random FOLDS-fold split moved the GPU median
    # by ~4 points with the seed: fold_seed_check); InferenceX points are held out by configuration
    # only (row folds would split their curves), so only measurement rows keep a row-fold prediction
    heldout, heldout_params = _leave_one_out(matrices)
    heldout = {k: v for k, v in heldout.items() if set_of[k] == MEASUREMENTS}
    heldout_params = {k: v for k, v in heldout_params.items() if set_of[k] == MEASUREMENTS}
    seeds = [seed + i for i in range(SEED_CHECK)]
    by_seed = [_median_abs_err(matrices, _row_fold_heldout(matrices, s)[0]) for s in seeds]
    seed_check = {
        "about": "held-out median |error| per kind of the closed-form predictions (validate simulates serving "
                 f"rows, so its figures differ): row folds by leave-one-out (`row_folds_leave_one_out`, the "
                 f"figure reported; no seed), and one random {FOLDS}-fold split per seed (`row_folds`, for "
                 "comparison: how far a single split moves); source-grouped folds draw nothing",
        "seeds": seeds,
        "row_folds_leave_one_out": _median_abs_err(matrices, heldout),
        "row_folds": {k: [m[k] for m in by_seed] for k in matrices},
        "row_folds_spread": {k: _spread([m[k] for m in by_seed]) for k in matrices},
        "source_grouped": _median_abs_err(matrices, heldout_grouped),
        "inferencex_configuration_grouped": _median_abs_err(matrices, heldout_grouped, INFERENCEX),
        "inferencex_configuration_grouped_by_tag": _median_by_tag(plans, heldout_grouped, set_of),
    }
    groups: dict[str, list[str]] = {}
    configurations: dict[str, list[str]] = {}
    for p in plans:
        into = groups if set_of[p.row.id] == MEASUREMENTS else configurations
        into.setdefault(group_of[p.row.id], []).append(p.row.id)
    fit_file = {
        "about": "Per chip-family efficiency parameters fitted by `infersim calibrate` (grid search, mean |log error|). "
                 "Reproduce with the command below; do not edit by hand.",
        "command": (f"infersim calibrate --measurements {display_path(measurements)} "
                    + ("--no-inferencex " if inferencex is None else
                       f"--inferencex-points {display_path(inferencex)} ")
                    + "--out infersim-fit.json "
                    "(the shipped src/infersim/calibration/fit.json is such a file, copied in by a commit)"),
        "measurements": display_path(measurements),
        "sets": {MEASUREMENTS: display_path(measurements),
                 INFERENCEX: None if inferencex is None else display_path(inferencex),
                 "weighting": "each set weighs the same in a family's loss (mean |log error| per set, summed)",
                 "inferencex_rows": "every point that maps (aggregated, disaggregated, MTP), output tok/s per GPU "
                                    "(per decode GPU when disaggregated) and tok/s per user, in closed form "
                                    "(validation/inferencex_fit.py, inferencex_closed.py); points that do not map "
                                    "or fit memory are listed in inferencex_left_out"},
        "inferencex_left_out": _count_reasons(ix_skipped),
        "procedure": PROCEDURE,
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "code_version": _git_rev(),
        "grids": {k: {n: [float(x) for x in v] for n, v in g.items()} for k, g in GRIDS.items()},
        "min_family_rows": MIN_FAMILY_ROWS, "folds": FOLDS, "seed": seed,
        "fold_procedures": {
            "heldout": "leave-one-out over the measurement rows (each row predicted by the fit on all other rows, "
                       "InferenceX points included); no seed. fold_seed_check compares single random "
                       f"{FOLDS}-fold splits drawn with seeds from the seed",
            "uncertainty": "per family and fitted parameter: the lowest and highest value over the "
                           "leave-one-group-out fits (heldout_grouped; the family's own fits only), widened to the "
                           "neighbouring grid points when every fold agrees (the grid's resolution); "
                           "`infersim sensitivity` sweeps these ranges",
            "heldout_grouped": "leave-one-group-out: each measurement source group and each InferenceX "
                               "configuration (below) predicted by the fit on all other groups; a group is never split",
        },
        "source_groups": dict(sorted(groups.items())),
        "inferencex_configurations": dict(sorted(configurations.items())),
        "inferencex_insample_predictions": insample,
        "families": families,
        "heldout_predictions": heldout,
        "heldout_params": heldout_params,
        "heldout_grouped_predictions": heldout_grouped,
        "heldout_grouped_params": heldout_grouped_params,
        "fold_seed_check": seed_check,
    }
    return FitResult(fit_file, plans, skipped, heldout, heldout_grouped, ix_skipped)


def _count_reasons(skips: list[Skip]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for x in skips:
        counts[x.reason] = counts.get(x.reason, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def _median_by_tag(plans: list[RowPlan], preds: dict[str, float], set_of: dict[str, str]) -> dict[str, dict]:
    """{metric: {tag: median |error|, ..., "all": ...}} of the InferenceX rows held out by configuration,
    by tag (aggregated / disaggregated / mtp / ... / hardware X), with the row counts."""
    out: dict[str, dict] = {}
    for p in plans:
        if set_of[p.row.id] != INFERENCEX or p.row.id not in preds:
            continue
        e = abs(preds[p.row.id] / p.row.value - 1)
        for tag in ("all", *p.tags):
            out.setdefault(p.row.metric, {}).setdefault(tag, []).append(e)
    return {m: {t: {"n": len(e), "median_abs_err": float(np.median(e))} for t, e in sorted(by.items())}
            for m, by in out.items()}


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
