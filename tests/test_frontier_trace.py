"""infersim frontier --trace (frontier points confirmed by trace simulation) and --power-basis, on a
small model, a tiny seeded trace and two families: where the figures come from, the store's rows,
the power basis's physics, and bad input."""
from __future__ import annotations

import json

import duckdb
import numpy as np
import pytest
from typer.testing import CliRunner

from cli_checks import assert_fails_cleanly
from infersim.cli.main import app

runner = CliRunner()
FAST = ["--model", "llama-3.1-8b", "--batches", "1,4,16", "--families", "lpu-lpx,pd-vr-nvl72"]


def _trace(path, n=120, seed=0):
    """An Azure-format trace: n requests one second apart, lengths drawn with `seed`."""
    rng = np.random.default_rng(seed)
    rows = [f"2023-11-16 18:{15 + i // 60:02d}:{i % 60:02d}.0000000,{rng.integers(100, 2000)},{rng.integers(10, 300)}"
            for i in range(n)]
    path.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n" + "\n".join(rows) + "\n")
    return path


def _run(args):
    r = runner.invoke(app, ["frontier", *args])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return r


@pytest.fixture(scope="module")
def confirmed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tf")
    trace, db = _trace(tmp / "tiny.csv"), tmp / "f.duckdb"
    r = _run([*FAST, "--trace", str(trace), "--json", "--out", str(db)])
    return json.loads(r.stdout), r.stderr, db, trace


def test_confirmed_points_come_from_the_simulation(confirmed):
    doc, stderr, _, _ = confirmed
    assert doc["workload"]["trace"] == "tiny.csv" and doc["workload"]["trace_requests"] == 120
    points = [p for f in doc["families"] for p in f["points"]]
    assert points
    differs = 0
    for p in points:
        a = p["analytical"]
        assert p["evaluation"] == "trace-simulation" and a["config_id"] != p["config_id"]
        assert 0 < p["ttft_s"] <= p["ttft_p99_s"]           # percentiles ordered
        assert p["tok_s_per_user"] > 0 and p["output_tok_s"] > 0 and 0 < p["utilisation"] <= 1
        assert p["requests"] <= 120 and p["underloaded"] == (p["requests"] < p["concurrency"])
        # several users share a replica: the replay's queueing and mixed prefill/decode steps move
        # the figures away from the steady state (nothing makes them equal by construction)
        if p["concurrency"] > p["batch"] or p["batch"] > 1:
            differs += any(abs(p[k] / a[k] - 1) > 0.01 for k in ("tok_s_per_user", "output_tok_s", "ttft_s"))
    assert differs > 0
    screened = int(stderr.split("screened ")[1].split()[0])
    simulated = int(stderr.split("simulated ")[1].split()[0])
    assert doc["stages"]["screened"] == screened and doc["stages"]["simulated"] == simulated >= len(points)
    assert all(k in doc["stages"] for k in ("screen_s", "simulate_s", "verdicts_s"))


def test_verdicts_rank_the_confirmed_points(confirmed):
    doc, _, _, _ = confirmed
    best = {}
    for f in doc["families"]:
        for p in f["points"]:
            best.setdefault(f["family"], []).append(p)
    for v in doc["verdicts"]:
        if v["winner"] is not None:
            assert v["winner"] in best
            assert v["margin"] is None or v["margin"] >= 1.0


def test_every_confirmed_point_is_one_row_of_the_store(confirmed):
    doc, stderr, db, _ = confirmed
    con = duckdb.connect(str(db), read_only=True)
    screened = int(stderr.split("screened ")[1].split()[0])
    simulated = int(stderr.split("simulated ")[1].split()[0])
    assert con.execute("select count(*) from results where sweep = 'frontier'").fetchone()[0] == screened
    assert con.execute("select count(*) from results where sweep = 'frontier-simulated'").fetchone()[0] == simulated
    assert con.execute("select count(distinct trace) from results").fetchone()[0] == 1
    assert con.execute("select max(trace) from results").fetchone()[0] == "tiny.csv"
    for f in doc["families"]:
        for p in f["points"]:
            rows = con.execute("select sweep, load_kind, load, batch, tok_s_per_user, ttft_s from results where "
                               "config_id = ?", [p["config_id"]]).fetchall()
            assert len(rows) == 1
            sweep, kind, load, batch, user, ttft = rows[0]
            assert (sweep, kind, load, batch) == ("frontier-simulated", "concurrency", p["concurrency"], p["batch"])
            assert user == pytest.approx(p["tok_s_per_user"]) and ttft == pytest.approx(p["ttft_s"])
            twin = con.execute("select count(*), max(sweep) from results where config_id = ?",
                               [p["analytical"]["config_id"]]).fetchone()
            assert twin == (1, "frontier")


def test_max_simulated_bounds_the_replays_and_says_so(confirmed):
    _, _, _, trace = confirmed
    r = _run([*FAST, "--trace", str(trace), "--json", "--max-simulated", "1", "--no-sensitivity"])
    doc = json.loads(r.stdout)
    assert all(len(f["points"]) <= 1 for f in doc["families"])
    assert doc["stages"]["simulated"] <= 2 and "left unsimulated by --max-simulated" in r.stderr


def test_facility_power_gives_no_more_tokens_per_mw_than_rated():
    """Facility power is the draw (<= rated) times PUE (>= 1), both from infersim.economics."""
    base = ["--model", "llama-3.1-8b", "--input-len", "1024", "--output-len", "128", "--batches", "1,64",
            "--families", "gpu-vr-nvl72,lpu-lpx", "--json", "--no-sensitivity"]
    rated = json.loads(_run(base).stdout)
    facility = json.loads(_run([*base, "--power-basis", "facility"]).stdout)
    assert (rated["power_basis"], facility["power_basis"]) == ("rated", "facility")
    by_id = {p["config_id"]: p for f in rated["families"] for p in f["points"]}
    pairs = [(by_id[p["config_id"]], p) for f in facility["families"] for p in f["points"] if p["config_id"] in by_id]
    assert pairs
    for r, f in pairs:
        assert f["tok_s_per_mw"] <= r["tok_s_per_mw"]
        assert f["tok_s_per_user"] == r["tok_s_per_user"]  # the basis changes power only


def test_facility_basis_on_confirmed_points(confirmed):
    doc, _, _, trace = confirmed
    fac = json.loads(_run([*FAST, "--trace", str(trace), "--json", "--no-sensitivity", "--power-basis",
                           "facility"]).stdout)
    rated = {p["config_id"]: p for f in doc["families"] for p in f["points"]}
    pairs = [(rated[p["config_id"]], p) for f in fac["families"] for p in f["points"] if p["config_id"] in rated]
    assert pairs
    for r, f in pairs:
        assert f["tok_s_per_mw"] <= r["tok_s_per_mw"]
    r = _run([*FAST, "--trace", str(trace), "--no-sensitivity", "--power-basis", "facility", "--max-simulated", "1"])
    assert "facility power" in r.stdout and "simulated" in r.stdout


@pytest.mark.parametrize("extra", [
    ["--trace", "tiny.csv", "--input-len", "8"],                       # both sources
    [],                                                                 # neither
    ["--trace", "no-such-trace.csv"],
    ["--trace", "."],                                                   # a directory
    ["--input-len", "8", "--output-len", "8", "--power-basis", "wall"],
    ["--trace", "tiny.csv", "--max-simulated", "0"],
    ["--trace", "empty.csv"],
    ["--trace", "tiny.csv", "--jobs", "0"],
])
def test_bad_trace_input_is_one_line_exit_2(extra, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _trace(tmp_path / "tiny.csv", n=10)
    (tmp_path / "empty.csv").write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n")
    line = assert_fails_cleanly(runner.invoke(app, ["frontier", "--model", "llama-3.1-8b", *extra]))
    assert any(w in line for w in ("--trace", "--power-basis", "--max-simulated", "--jobs", "workload", "trace"))


def test_replays_in_worker_processes_match_replays_in_this_one(confirmed):
    doc, _, _, trace = confirmed
    serial = json.loads(_run([*FAST, "--trace", str(trace), "--json", "--jobs", "1"]).stdout)
    pooled = json.loads(_run([*FAST, "--trace", str(trace), "--json", "--jobs", "2"]).stdout)
    for other in (serial, pooled):
        assert other["families"] == doc["families"] and other["verdicts"] == doc["verdicts"]
    assert pooled["stages"]["jobs"] == 2 and pooled["stages"]["simulated"] >= 8  # enough replays to use the pool


def test_sending_window_rate_by_hand():
    from types import SimpleNamespace
    from infersim.planner.confirm import sending_window_tok_s
    a = np.array
    rec = SimpleNamespace(arrival_s=a([0.0, 0.0, 1.0, 2.0]), first_token_s=a([0.5, 0.5, 1.5, 2.5]),
                          completion_s=a([1.0, 2.0, 2.5, 3.5]), output_tokens=a([11, 11, 11, 11]))
    # window [0, 2]: the first two complete in it (11 + 11), the third is half way (1 + 10 x 0.5),
    # the fourth has not started its output: 28 tokens in 2 s
    assert sending_window_tok_s(rec) == pytest.approx(14.0)
    burst = SimpleNamespace(**{**vars(rec), "arrival_s": np.zeros(4)})
    assert sending_window_tok_s(burst) is None  # every request sent at once: no window
