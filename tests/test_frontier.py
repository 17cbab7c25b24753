"""infersim frontier: the Pareto function on hand-made points, the verdict logic on made-up
families, the CLI's JSON schema on a small grid, and bad input."""
from __future__ import annotations

import json
import math

import duckdb
import pytest
from typer.testing import CliRunner

from cli_checks import assert_fails_cleanly
from infersim.cli.main import app
from infersim.interactivity import BAND_NAMES
from infersim.planner.frontier import Point
from infersim.planner.pareto import pareto_front
from infersim.planner.verdict import decide, margin_swings

runner = CliRunner()
MAX_BOTH = [(lambda p: p[0], "max"), (lambda p: p[1], "max")]
MAX_MIN = [(lambda p: p[0], "max"), (lambda p: p[1], "min")]


def test_pareto_keeps_the_undominated_points_once_in_input_order():
    pts = [(1, 5), (2, 4), (3, 3), (2, 2), (1, 1), (3, 3), (1, 4)]
    # (2, 2) < (2, 4); (1, 1) < everything; the second (3, 3) repeats; (1, 4) < (1, 5)
    assert pareto_front(pts, MAX_BOTH) == [(1, 5), (2, 4), (3, 3)]


def test_pareto_with_one_objective_minimised():
    pts = [(1, 10), (2, 5), (3, 7), (4, 6), (5, 9)]
    # faster and cheaper wins: (3, 7) loses to (4, 6); (1, 10) to (2, 5)
    assert pareto_front(pts, MAX_MIN) == [(2, 5), (4, 6), (5, 9)]


def test_pareto_edge_cases():
    assert pareto_front([], MAX_BOTH) == []
    assert pareto_front([(1, 1)], MAX_BOTH) == [(1, 1)]
    assert pareto_front([(1, None), (0, 2)], MAX_BOTH) == [(0, 2)]  # not comparable: left out


def pt(family, user, mw, cost):
    return Point(family, f"{family}-dep", 1, user, 1000.0, mw, cost)


POINTS = [pt("A", 30, 100.0, 2.0), pt("A", 45, 80.0, 1.0), pt("B", 40, 50.0, 4.0), pt("B", 100, 40.0, 3.0),
          pt("C", 120, 10.0, None), pt("C", 500, None, 9.0)]


def test_verdict_picks_the_best_point_of_each_family_in_the_band():
    v = decide(POINTS, "<50", "tok_s_per_mw")
    assert (v.winner, v.runner_up, v.winner_point.tok_s_per_user) == ("A", "B", 30)
    assert v.margin == pytest.approx(100.0 / 50.0)
    c = decide(POINTS, "<50", "cost_per_mtok_usd")
    assert (c.winner, c.runner_up) == ("A", "B")
    assert c.margin == pytest.approx(4.0 / 1.0)  # runner-up's cost over the winner's: >= 1


def test_verdict_without_runner_up_or_points():
    assert decide(POINTS, "50-150", "tok_s_per_mw").margin == pytest.approx(40.0 / 10.0)
    alone = decide(POINTS, "50-150", "cost_per_mtok_usd")  # C has no price there
    assert (alone.winner, alone.runner_up, alone.margin) == ("B", None, None)
    empty = decide(POINTS, "150-400", "tok_s_per_mw")
    assert empty.winner is None and empty.margin is None
    assert decide(POINTS, "400-1000", "tok_s_per_mw").winner is None  # C's only point there has no power figure


def test_margin_swings_move_both_deployments_for_a_shared_input_and_flag_flips():
    # winner baseline 15, runner-up 5: margin 3
    winner = {"x": (1, 2, 10.0, 20.0), "b": (0, 1, None, 15.0)}
    runner = {"x": (1, 2, 5.0, 5.0), "y": (0, 1, 4.0, 10.0), "z": (0, 1, 5.0, 20.0)}
    swings = {s.name: s for s in margin_swings(winner, runner, 15.0, 5.0, "tok_s_per_mw")}
    assert (swings["x"].margin_low, swings["x"].margin_high) == (pytest.approx(2.0), pytest.approx(4.0))
    assert (swings["y"].margin_low, swings["y"].margin_high) == (pytest.approx(3.75), pytest.approx(1.5))
    assert swings["z"].margin_high == pytest.approx(0.75) and swings["z"].flips
    assert not swings["x"].flips and swings["b"].breaks
    order = [s.name for s in margin_swings(winner, runner, 15.0, 5.0, "tok_s_per_mw")]
    assert order == ["b", "z", "y", "x"]  # breaking first, then by largest move of the margin: 2.25, 1.5, 1.0
    assert math.isinf(swings["b"].effect(3.0))


SMALL = ["--model", "llama-3.1-8b", "--input-len", "1024", "--output-len", "128", "--batches", "1,64",
         "--families", "gpu-vr-nvl72,pd-vr-nvl72,lpu-lpx"]


def test_json_schema_on_a_small_grid_and_the_store(tmp_path):
    db = tmp_path / "f.duckdb"
    r = runner.invoke(app, ["frontier", *SMALL, "--json", "--out", str(db)])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    assert set(doc) >= {"families", "verdicts"} and doc["power_basis"] == "rated"
    assert [f["family"] for f in doc["families"]] == ["gpu-vr-nvl72", "pd-vr-nvl72", "lpu-lpx"]
    for f in doc["families"]:
        assert set(f) == {"family", "points"} and f["points"]
        for p in f["points"]:
            assert set(p) >= {"deployment", "tok_s_per_user", "tok_s_per_mw", "cost_per_mtok_usd", "output_tok_s"}
            assert p["evaluation"] == "analytical"
            assert p["tok_s_per_user"] > 0 and p["output_tok_s"] > 0
    assert len(doc["verdicts"]) == 2 * len(BAND_NAMES)  # every band x (tok/s per MW, cost per Mtok)
    for v in doc["verdicts"]:
        assert set(v) >= {"band", "winner", "margin", "sensitive_to"}  # the keys, and more
        assert v["margin"] is None or v["margin"] >= 1.0
        assert len(v["sensitive_to"]) <= 3
    assert any(v["sensitive_to"] for v in doc["verdicts"])
    screened = int(r.stderr.split("screened ")[1].split()[0])
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("select count(*) from results").fetchone()[0] == screened
    assert con.execute("select count(distinct status) from results where status not in ('ok', 'infeasible')"
                       ).fetchone()[0] == 0


@pytest.mark.parametrize("args", [
    ["--model", "no-such-model", "--input-len", "8", "--output-len", "8"],
    ["--model", "llama-3.1-8b", "--input-len", "0", "--output-len", "8"],
    ["--model", "llama-3.1-8b", "--input-len", "8", "--output-len", "-1"],
    ["--model", "llama-3.1-8b", "--input-len", "8", "--output-len", "8", "--batches", "0,4"],
    ["--model", "llama-3.1-8b", "--input-len", "8", "--output-len", "8", "--batches", "x"],
    ["--model", "llama-3.1-8b", "--input-len", "8", "--output-len", "8", "--families", "nope"],
])
def test_bad_input_is_one_line_exit_2(args):
    assert_fails_cleanly(runner.invoke(app, ["frontier", *args]))
