"""infersim report: the figure builders on a small results file made here (run_frontier on three
families and three batches), the self-contained HTML, the PNGs (size and non-blank pixels), the
cost-target staircase on hand-made points, and bad input through the CLI."""
from __future__ import annotations

import math
import re
from pathlib import Path

import duckdb
import numpy as np
import pytest
from typer.testing import CliRunner

from cli_checks import assert_fails_cleanly
from infersim.cli.main import app
from infersim.planner.frontier import Point, run_frontier
from infersim.reports.data import family_of, load_report_data
from infersim.reports.figures import FIGURES, build_figures
from infersim.reports.figures.cost_target import _staircase
from infersim.reports.render_png import render_png
from infersim.reports.spec import Axis, FigureSpec, Series
from infersim.sweep.store import ResultStore

runner = CliRunner()
MODEL = "nemotron-3-super"
FAMILIES = ["gpu-vr-nvl72", "afd-1lpx-per-nvl72", "lpu-lpx"]
LENGTHS = (2048, 256)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> tuple[Path, object]:
    db = tmp_path_factory.mktemp("report") / "results.duckdb"
    res = run_frontier(MODEL, *LENGTHS, batches=(1, 8, 64), only=FAMILIES, out=db, sensitivity=False)
    return db, res


@pytest.fixture(scope="module")
def specs(results):
    return build_figures(load_report_data(results[0]))


def test_every_figure_has_finite_data_or_says_why(specs):
    assert [s.key for s in specs] == [k for k, _, _ in FIGURES]
    for s in specs:
        assert s.caption and s.inputs, s.key
        if s.is_empty:
            assert s.empty_reason and not s.empty_reason.startswith("figure not built"), (s.key, s.empty_reason)
        else:
            assert s.assumptions and any(sr.finite() for sr in s.series), s.key
    # on this file every figure has data: three families, AFD rows, points in the headline band
    # (the validation figures need the shipped snapshot, not the file)
    from infersim.reports.validation_snapshot import load_snapshot
    allowed = [] if load_snapshot() else ["validation-parity", "validation-errors"]
    assert [s.key for s in specs if s.is_empty] == allowed


def test_validation_figures_from_a_snapshot_by_hand(monkeypatch, results):
    rows = [{"set": "inferencex", "id": "a", "metric": "tok_s", "measured": 100.0, "predicted": 110.0, "error": 0.10,
             "hardware": "b200", "kind": "gpu", "band": "50-150"},
            {"set": "inferencex", "id": "b", "metric": "tok_s", "measured": 100.0, "predicted": 70.0, "error": -0.30,
             "hardware": "b200", "kind": "gpu", "band": "50-150"},
            {"set": "measurements", "id": "c", "metric": "ttft_s", "measured": 2.0, "predicted": 2.5, "error": 0.25,
             "hardware": "lpu", "kind": "lpu", "band": None}]
    snap = {"command": "infersim validate --json", "code_version": "v", "taken_at": "t", "calibration": "c",
            "rows": rows}
    import infersim.reports.validation_snapshot as vs
    monkeypatch.setattr(vs, "load_snapshot", lambda: snap)
    from infersim.reports.figures.validation import validation_errors, validation_parity
    data = load_report_data(results[0])
    err = validation_errors(data)
    by = {(s.name, x): y for s in err.series for x, y in zip(s.x, s.y)}
    assert by[("by interactivity band (InferenceX)", "50-150 tok/s/user")] == pytest.approx(20.0)  # median(10, 30)
    assert by[("by hardware (all rows)", "b200")] == pytest.approx(20.0)
    assert by[("by hardware (all rows)", "lpu")] == pytest.approx(25.0)
    assert "infersim validate --json" in err.caption
    parity = validation_parity(data)
    assert {s.name for s in parity.series} == {"exact", "b200", "lpu"} and not parity.is_empty
    monkeypatch.setattr(vs, "load_snapshot", lambda: None)
    assert validation_parity(data).is_empty and "snapshot" in validation_parity(data).empty_reason


def test_frontier_figure_agrees_with_run_frontier(results, specs):
    """The report reads the stored rows back into families and gets run_frontier's verdicts."""
    _, res = results
    table = {row[0]: row[1] for row in next(s for s in specs if s.key == "frontier-mw").table.rows}
    for v in res.verdicts:
        if v.objective == "tok_s_per_mw":
            assert table[v.band] == (v.winner or "no point in this band")
    fronts = {s.name: s for s in next(s for s in specs if s.key == "frontier-mw").series if s.kind == "line"}
    for f in res.families:
        if f.mw_front:
            assert sorted(fronts[f.name].x) == sorted(p.tok_s_per_user for p in f.mw_front)


def test_family_of_labels():
    assert family_of("gpu-vr-nvl72[tp=8,ep=1,precision=fp4]") == "gpu-vr-nvl72"
    assert family_of("afd-mtp-2lpx-per-nvl72[racks=1,k=1]") == "afd-mtp"
    assert family_of("my-deployment") == "my-deployment"


def _pt(speed, cost):
    return Point("f", f"d{speed}", 1, speed, speed, None, cost)


def test_cost_staircase_by_hand():
    pts = [_pt(10, 1.0), _pt(20, 3.0), _pt(30, 2.0), _pt(40, 5.0)]
    # speed target T is met by points at T or faster: the cheapest of them
    xs, ys, _ = _staircase(pts, lambda p: p.tok_s_per_user, True)
    assert xs == [10, 20, 30, 40] and ys == [1.0, 2.0, 2.0, 5.0]
    # a "at most T" target (TTFT-like) is met by points at T or below
    xs, ys, _ = _staircase(pts, lambda p: p.tok_s_per_user, False)
    assert xs == [10, 20, 30, 40] and ys == [1.0, 1.0, 1.0, 1.0]


def test_html_is_self_contained(results, tmp_path):
    out = tmp_path / "r.html"
    r = runner.invoke(app, ["report", str(results[0]), "--out", str(out)])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert str(out.resolve()) in r.stdout.replace("\n", "")
    text = out.read_text()
    from plotly.offline import get_plotlyjs
    assert get_plotlyjs()[:200] in text                       # the plotly.js bundle, inlined
    assert not re.search(r"<script[^>]*\bsrc\s*=", text, re.I)   # nothing loaded from elsewhere
    assert MODEL in text and "simulated prediction" in text
    for key, _, _ in FIGURES:
        assert f'id="fig-{key}"' in text
    assert not list(tmp_path.glob(".*.tmp"))                   # no temp file left behind


def _pixels_vary(path: Path) -> bool:
    import matplotlib.image
    img = matplotlib.image.imread(str(path))
    return bool((img != img[0, 0]).any())  # more than one colour


def test_png_files_are_written_and_not_blank(results, tmp_path):
    folder = tmp_path / "png"
    r = runner.invoke(app, ["report", str(results[0]), "--out", str(tmp_path / "r.html"), "--png", str(folder)])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    for key, _, _ in FIGURES:
        p = folder / f"{key}.png"
        assert p.stat().st_size > 10_000, key
        assert _pixels_vary(p), key


def test_an_empty_figure_says_why_in_png_and_html(tmp_path):
    spec = FigureSpec("x", "t", "c", Axis("a"), Axis("b"), empty_reason="no AFD rows in the file")
    assert spec.is_empty
    p = tmp_path / "x.png"
    p.write_bytes(render_png(spec))
    assert _pixels_vary(p)
    nan_only = FigureSpec("y", "t", "c", Axis("a"), Axis("b"), series=[Series("s", [math.nan], [1.0])])
    assert nan_only.is_empty and "no data" in nan_only.why_empty()
    from infersim.reports.render_plotly import figure_block
    assert "No figure: no AFD rows in the file" in figure_block(spec, {})


def test_figures_without_afd_rows_say_so(tmp_path):
    db = tmp_path / "lpu.duckdb"
    run_frontier(MODEL, *LENGTHS, batches=(1, 8), only=["lpu-lpx"], out=db, sensitivity=False)
    ratio = build_figures(load_report_data(db), ["lpx-ratio"])[0]
    assert ratio.is_empty and "no AFD rows" in ratio.empty_reason


# -- bad input: one line, exit 2, files untouched --

def _foreign(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("create table t (a int)")
    con.close()


def _wrong_columns(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute("create table infersim_meta (key VARCHAR PRIMARY KEY, value VARCHAR)")
    con.execute("insert into infersim_meta values ('schema_version', '2')")
    con.execute("create table results (config_id VARCHAR, model VARCHAR)")
    con.close()


def _empty_results(path: Path) -> None:
    ResultStore(path).close()


@pytest.mark.parametrize("make, needle", [
    (None, "does not exist"),
    (lambda p: p.write_text("not a database"), "not a DuckDB"),
    (_foreign, "something else"),
    (_wrong_columns, "other columns"),
    (_empty_results, "no results rows"),
])
def test_bad_results_file(tmp_path, make, needle):
    db = tmp_path / "in.duckdb"
    if make:
        make(db)
    before = db.read_bytes() if db.exists() else None
    r = runner.invoke(app, ["report", str(db), "--out", str(tmp_path / "r.html")])
    assert needle in assert_fails_cleanly(r)
    assert (db.read_bytes() if db.exists() else None) == before
    assert not (tmp_path / "r.html").exists()


def test_unknown_model_and_existing_output(results, tmp_path):
    r = runner.invoke(app, ["report", str(results[0]), "--model", "no-such-model", "--out", str(tmp_path / "r.html")])
    assert "no rows of model" in assert_fails_cleanly(r)
    out = tmp_path / "exists.html"
    out.write_text("keep me")
    r = runner.invoke(app, ["report", str(results[0]), "--out", str(out)])
    assert "--overwrite" in assert_fails_cleanly(r)
    assert out.read_text() == "keep me"
    png = tmp_path / "png"
    png.mkdir()
    (png / "frontier-mw.png").write_bytes(b"old")
    r = runner.invoke(app, ["report", str(results[0]), "--out", str(tmp_path / "new.html"), "--png", str(png)])
    assert "--overwrite" in assert_fails_cleanly(r)
    assert (png / "frontier-mw.png").read_bytes() == b"old" and not (tmp_path / "new.html").exists()


# -- from nothing: report --model M --trace T runs (then resumes) the frontier --

def _tiny_trace(path: Path) -> None:
    """Three requests of one session copied from the shipped coding-agent trace, lengths set by hand."""
    import json
    from infersim.workload.traces import resolve_trace_path
    first = json.loads(resolve_trace_path("exgentic_swebench_claude_code_shard12.jsonl").open().readline())
    lines = []
    for i, (inp, out) in enumerate(((1000, 10), (2000, 20), (3001, 31))):
        row = dict(first, input_tokens=inp, output_tokens=out)
        for key in ("start_time_s", "end_time_s"):
            if key in row:
                row[key] = row[key] + 60.0 * i
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")


def test_report_from_a_trace_runs_then_resumes_the_frontier(tmp_path, monkeypatch):
    import infersim.planner.families as fams
    real = fams.families
    monkeypatch.setattr(fams, "families", lambda *a: [f for f in real(*a) if f.name == "gpu-vr-nvl72"])
    trace = tmp_path / "tiny.jsonl"
    _tiny_trace(trace)
    db, html = tmp_path / "res.duckdb", tmp_path / "r.html"
    args = ["report", str(db), "--model", MODEL, "--trace", str(trace), "--out", str(html)]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert "1 families run" in r.stderr and html.exists() and "tiny.jsonl" in html.read_text()
    # the rows carry the trace and its mean lengths (1000/2000/3001 and 10/20/31, rounded), and
    # the frontier points were replayed: the report draws the simulated ones
    data = load_report_data(db)
    assert (data.trace, data.input_len, data.output_len) == ("tiny.jsonl", 2000, 20)
    assert data.simulated and all(p.evaluation == "trace-simulation" for p in data.points())
    n_rows = len(data.rows)
    r = runner.invoke(app, [*args, "--overwrite"])
    assert r.exit_code == 0 and "0 families run, 1 already in" in r.stderr, r.stderr
    assert len(load_report_data(db).rows) == n_rows  # resumed: nothing run again, nothing replaced
    r = runner.invoke(app, ["report", "--trace", str(trace), "--out", str(tmp_path / "x.html")])
    assert "--model" in assert_fails_cleanly(r)


def test_a_log_axis_whose_values_are_all_equal_gets_a_range_plotly_can_draw():
    # every request with the same TPOT (up to float rounding): plotly's autorange of a zero-width
    # log span puts ticks at -Infinity (a console error in the browser); the renderer sets a decade
    from infersim.reports.render_plotly import to_plotly
    from infersim.reports.spec import Axis, FigureSpec, Series
    xs = [0.0024499293874900106, 0.0024499293874900107, 0.0024499293874900106]
    spec = FigureSpec("t", "t", "c", Axis("TPOT", "s", log=True), Axis("share"), [Series("a", xs, [0.3, 0.6, 1.0])])
    lo, hi = to_plotly(spec).layout.xaxis.range
    assert lo < math.log10(xs[0]) < hi and hi - lo == pytest.approx(1.0)
    spread = FigureSpec("t", "t", "c", Axis("TPOT", "s", log=True), Axis("share"),
                        [Series("a", [0.001, 0.01], [0.5, 1.0])])
    assert to_plotly(spread).layout.xaxis.range is None  # autorange when the values differ


# -- a trace: the report's fronts and verdicts are frontier --trace's confirmed ones --

@pytest.fixture(scope="module")
def traced(tmp_path_factory):
    """Two families on the shipped coding-agent trace, 3 batches, at most 2 replays per family."""
    db = tmp_path_factory.mktemp("traced") / "results.duckdb"
    res = run_frontier(MODEL, trace="exgentic_swebench_claude_code_shard12.jsonl", batches=(1, 8, 64),
                       only=["gpu-vr-nvl72", "lpu-lpx"], out=db, sensitivity=False, max_simulated=2)
    return db, res


def test_simulated_figures_agree_with_run_frontier_on_a_trace(traced):
    db, res = traced
    data = load_report_data(db)
    assert data.simulated and data.trace == "exgentic_swebench_claude_code_shard12.jsonl"
    specs = {s.key: s for s in build_figures(data, ["frontier-mw", "frontier-cost", "cost-vs-speed-target",
                                                     "cost-vs-ttft-target", "roi-payback", "lpx-ratio"])}
    confirmed = [p for f in res.families for p in f.confirmed]
    assert sorted(p.config_id for p in data.points()) == sorted(p.config_id for p in confirmed)
    for key, objective in (("frontier-mw", "tok_s_per_mw"), ("frontier-cost", "cost_per_mtok_usd")):
        spec = specs[key]
        assert "Simulated" in spec.caption
        table = {row[0]: row[1] for row in spec.table.rows}
        for v in res.verdicts:
            if v.objective == objective:
                assert table[v.band] == (v.winner or "no point in this band"), (key, v.band)
        fronts = {s.name: s for s in spec.series if s.kind == "line"}
        for f in res.families:
            front = f.mw_front if objective == "tok_s_per_mw" else f.cost_front
            if front:
                assert sorted(fronts[f.name].x) == pytest.approx(sorted(p.tok_s_per_user for p in front))
        screen = [s for s in spec.series if s.group == "analytical screen"]
        assert len(screen) == 1 and sorted(screen[0].x) == pytest.approx(sorted(
            p.tok_s_per_user for f in res.families for p in f.points if getattr(p, objective) is not None))
    # the other figures say which evaluation they show
    for key in ("cost-vs-speed-target", "cost-vs-ttft-target", "roi-payback"):
        assert "Simulated" in specs[key].caption, key
    assert not specs["roi-payback"].is_empty or "band" in specs["roi-payback"].empty_reason


@pytest.mark.parametrize("model, trace, needle", [
    ("no-such-model", "exgentic_swebench_claude_code_shard12.jsonl", "unknown model"),
    (MODEL, "no-such-trace.jsonl", "trace file not found"),
    (MODEL, "exgentic_swebench_claude_code_shard12.jsonl", "--overwrite"),  # --out exists
])
def test_report_from_a_trace_refuses_bad_input_before_any_work(tmp_path, model, trace, needle):
    html, db = tmp_path / "r.html", tmp_path / "res.duckdb"
    if needle == "--overwrite":
        html.write_text("keep me")
    r = runner.invoke(app, ["report", str(db), "--model", model, "--trace", trace, "--out", str(html)])
    assert needle in assert_fails_cleanly(r)
    assert not db.exists() and (not html.exists() or html.read_text() == "keep me")
