"""InferenceX points in `calibrate`: configuration folds (a curve is never split), the closed form's
monotonicity in the fitted parameters, the fit file's record of its sets, and held-out predictions
that come from a fit without their configuration."""
from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from infersim.calibration.efficiency import load_calibration
from infersim.catalog.hardware import load_catalog
from infersim.datasets import inferencex_points, measurements_csv
from infersim.validation import fit
from infersim.validation.inferencex import read_points
from infersim.validation.inferencex_fit import configuration, inferencex_plans
from infersim.validation.scenarios import layout_values

SHIPPED_POINTS = read_points(inferencex_points())
# three aggregated configurations on two families (blackwell, hopper), with several concurrencies each
CONFIGS = {("b200", "trt", "fp8", 1024, 1024, 8, 1, False), ("b200", "trt", "fp8", 1024, 1024, 8, 8, True),
           ("h200", "trt", "fp8", 1024, 1024, 8, 1, False)}
MEASUREMENT_IDS = ("M182", "M183", "M186", "M187", "M197", "M198")


def _key(p):
    return (p.hardware, p.framework, p.precision, p.isl, p.osl, p.tp, p.ep, p.dp_attention)


def _copy_rows(src: Path, dst: Path, id_col: str, keep) -> Path:
    with src.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if keep(r[id_col])]
        cols = reader.fieldnames
    with dst.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return dst


@pytest.fixture(scope="module")
def small_sets(tmp_path_factory):
    d = tmp_path_factory.mktemp("ixfit")
    chosen = {p.id for p in SHIPPED_POINTS if _key(p) in CONFIGS and not p.disagg and p.spec_decode == "none"}
    assert len(chosen) >= 8
    meas = _copy_rows(measurements_csv(), d / "m.csv", "id", lambda i: i in MEASUREMENT_IDS)
    points = _copy_rows(inferencex_points(), d / "ix.csv", "point_id", lambda i: i in chosen)
    return d, meas, points, chosen


@pytest.fixture(scope="module")
def small_fit(small_sets):
    _, meas, points, _ = small_sets
    return fit.calibrate(meas, inferencex=points)


@settings(max_examples=40, deadline=None)
@given(i=st.integers(0, len(SHIPPED_POINTS) - 1), conc=st.integers(1, 4096), date=st.text(max_size=12),
       prompts=st.none() | st.integers(1, 10**5))
def test_configuration_ignores_what_moves_along_a_curve(i, conc, date, prompts):
    p = SHIPPED_POINTS[i]
    assert configuration(replace(p, concurrency=conc, run_date=date, num_prompts=prompts, id="ix99999")) \
        == configuration(p)


@settings(max_examples=40, deadline=None)
@given(i=st.integers(0, len(SHIPPED_POINTS) - 1),
       change=st.sampled_from(["hardware", "framework", "precision", "isl", "osl", "tp", "ep", "spec_decode"]))
def test_configuration_separates_different_deployments(i, change):
    p = SHIPPED_POINTS[i]
    other = {"hardware": "zz", "framework": "zz", "precision": "bf16" if p.precision != "bf16" else "fp8",
             "isl": p.isl + 1, "osl": p.osl + 1, "tp": (p.tp or 0) + 1, "ep": (p.ep or 0) + 1,
             "spec_decode": "mtp" if p.spec_decode == "none" else "none"}[change]
    if p.disagg and change in ("tp", "ep"):  # a disaggregated point's layout is its pools'
        changed = replace(p, decode=replace(p.decode, **{change: (getattr(p.decode, change) or 0) + 1}))
    else:
        changed = replace(p, **{change: other})
    assert configuration(changed) != configuration(p)


def test_folds_never_split_a_configuration(small_fit, small_sets):
    """Every row of a configuration (all its concurrencies and dates) is held out together: one
    configuration group each, and all its rows share their held-out parameters."""
    _, _, _, chosen = small_sets
    ff = small_fit.fit_file
    groups = ff["inferencex_configurations"]
    by_point = {p.id: configuration(p) for p in SHIPPED_POINTS if p.id in chosen}
    assert len(groups) == len(set(by_point.values())) == len(CONFIGS)
    for group, rids in groups.items():
        assert {r.split(":")[0] for r in rids} == {pid for pid, g in by_point.items() if g == group}
        params = [ff["heldout_grouped_params"][r] for r in rids]
        assert all(x == params[0] for x in params), group


def test_the_fit_file_lists_its_sets(small_fit, small_sets):
    _, meas, points, chosen = small_sets
    ff = small_fit.fit_file
    assert ff["sets"]["measurements"] == str(meas) and ff["sets"]["inferencex"] == str(points)
    assert "--inferencex-points" in ff["command"] and str(points) in ff["command"]
    planned_ix = {p.row.id for p in small_fit.plans if p.row.id.startswith("ix")}
    assert {r.split(":")[0] for r in planned_ix} == chosen
    for name, entry in ff["families"].items():
        n = entry["rows_by_set"]
        assert n["measurements"] + n["inferencex"] == len(entry["rows"]), name
        assert n["inferencex"] == sum(r in planned_ix for r in entry["rows"]), name
    assert ff["families"]["blackwell"]["rows_by_set"]["measurements"] == 0
    assert ff["families"]["blackwell"]["rows_by_set"]["inferencex"] > 0
    assert set(ff["inferencex_insample_predictions"]) == planned_ix
    only_csv = fit.calibrate(meas).fit_file
    assert only_csv["sets"]["inferencex"] is None and "--no-inferencex" in only_csv["command"]


def test_heldout_configuration_comes_from_the_fit_without_it(small_fit, small_sets):
    d, meas, points, chosen = small_sets
    ff = small_fit.fit_file
    for group, rids in ff["inferencex_configurations"].items():
        ids = {r.split(":")[0] for r in rids}
        rest = _copy_rows(points, d / "rest.csv", "point_id", lambda i: i not in ids)
        without = fit.calibrate(meas, inferencex=rest).fit_file["families"]
        family = "hopper" if group.startswith("inferencex: h200") else "blackwell"
        want = (without.get(family) or without["pooled-gpu"])["values"]
        for rid in rids:
            assert ff["heldout_grouped_params"][rid] == pytest.approx(want, rel=1e-12), (group, rid)


def test_closed_form_is_monotone_in_mem_eff_and_host_scale():
    """More achieved bandwidth never slows a point; more host work per step never speeds it up
    (aggregated, disaggregated and MTP closed forms alike)."""
    catalog, none = load_catalog(), load_calibration("none")
    plans, _, _ = inferencex_plans(inferencex_points(), catalog, none)
    picked = {}
    for p in plans:  # one plan per hardware and kind of closed form, at a low and a high concurrency
        picked.setdefault((p.family, p.row.concurrency <= 8, "disaggregated" in p.tags, "mtp" in p.tags), p)
    assert any(k[2] for k in picked) and any(k[3] for k in picked)
    for p in picked.values():
        dep = p.layouts[0]
        for name, grid, sign in (("mem_eff", np.linspace(0.35, 0.95, 7), 1), ("host_scale", np.array(
                [0.0, 0.5, 1.0, 4.0, 16.0]), -1)):
            eff = replace(none.for_chip(p.group, p.family), **{name: grid})
            values = p.closed_form(eff) if p.closed_form else layout_values(p, replace(dep, eff=eff))[0]
            for metric in ("output_tok_s_per_chip", "tok_s_per_user"):
                v = np.asarray(values[metric])
                assert np.all(np.isfinite(v)) and np.all(v > 0), (p.row.id, name, metric)
                assert np.all(sign * np.diff(v) >= -1e-9 * v[:-1]), (p.row.id, name, metric, v)


def test_validate_shows_the_fits_closed_form_and_heldout_figures(small_sets, small_fit, tmp_path):
    """validate attaches, to each point the fit used, the fit's closed-form in-sample and held-out
    (by configuration) predictions, and only when the points file is the one the fit was made on."""
    from infersim.validation.inferencex_report import validate_inferencex
    _, meas, points, chosen = small_sets
    low = {p.id for p in SHIPPED_POINTS if p.id in chosen and p.concurrency <= 4}
    few = _copy_rows(points, tmp_path / "few.csv", "point_id", lambda i: i in low)
    res = fit.calibrate(meas, inferencex=few)
    fit.write_fit(res, tmp_path / "fit.json")
    cal = load_calibration(str(tmp_path / "fit.json"))
    rep = validate_inferencex(few, calibration=cal)
    fitted = [r for r in rep.rows if r.metric in ("output_tok_s_per_chip", "tok_s_per_user")]
    assert {r.id for r in fitted} == low
    for r in fitted:
        key = f"{r.id}:{r.metric}"
        assert r.heldout == res.fit_file["heldout_grouped_predictions"][key]
        assert r.closed_form == res.fit_file["inferencex_insample_predictions"][key]
    assert all(r.heldout is None for r in rep.rows if r.metric == "ttft_ms")
    other = validate_inferencex(_copy_rows(few, tmp_path / "copy.csv", "point_id", lambda i: True), calibration=cal)
    assert all(r.heldout is None and r.closed_form is None for r in other.rows)


def test_row_folds_draw_nothing(small_sets, small_fit):
    """Row folds are leave-one-out: another seed gives the same held-out predictions and parameters
    (the seed only moves the single-split comparison in fold_seed_check)."""
    _, meas, points, _ = small_sets
    other = fit.calibrate(meas, inferencex=points, seed=fit.SEED + 7)
    assert other.heldout == small_fit.heldout and small_fit.heldout
    assert other.fit_file["heldout_params"] == small_fit.fit_file["heldout_params"]
    check = small_fit.fit_file["fold_seed_check"]
    assert check["row_folds_leave_one_out"]["gpu"] is not None and len(check["row_folds"]["gpu"]) == fit.SEED_CHECK


def test_uncertainty_spans_the_fold_fits(small_fit):
    """Each fitted value lies in its recorded range, and every leave-one-group-out fit of the family
    (the held-out parameters of the rows that fit predicted) lies in it too."""
    ff = small_fit.fit_file
    for name, entry in ff["families"].items():
        for param, u in entry["uncertainty"].items():
            assert u["low"] <= entry["values"][param] <= u["high"], (name, param)
            assert u["low"] < u["high"], (name, param)  # an all-equal range is widened to the grid's resolution
    hopper = ff["families"]["hopper"]
    for rid in hopper["rows"]:
        params = ff["heldout_grouped_params"].get(rid)
        if params is not None and rid.startswith("ix"):  # fitted by hopper's own fit on the other groups
            for param, u in hopper["uncertainty"].items():
                assert u["low"] - 1e-12 <= params[param] <= u["high"] + 1e-12, (rid, param)
