"""InferenceX serving points: the strict reader, the simulated benchmark client (definitions checked
on hand-built runs, the steady-state shortcut against simulating every prompt), the point ->
deployment mapping's skips, banding and grouping by hand, and the JSON `validate` emits."""
from __future__ import annotations

import csv
import heapq
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from infersim.calibration.efficiency import load_calibration
from infersim.catalog.hardware import load_catalog
from infersim.cli.main import app
from infersim.datasets import inferencex_points
from infersim.deployments.run import simulate_plan
from infersim.errors import InputError
from infersim.serving.metrics import RequestRecords
from infersim.validation.harness import (LENGTH_LOW, SHORTCUT_ROUNDS, harness_lengths, measure, run_harness,
                                         weighted_median)
from infersim.validation.inferencex import read_points
from infersim.validation.inferencex_plan import PointSetup, features, map_point
from infersim.validation.inferencex_report import InferenceXReport, PointResult, band_of, validate_inferencex

runner = CliRunner()
SHIPPED = inferencex_points()


def shipped_rows() -> tuple[list[str], dict[str, dict]]:
    with SHIPPED.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames), {r["point_id"]: r for r in reader}


def write_points(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    return path


# ------------------------------------------------------------------------------------------------ reader


def test_reads_the_shipped_points():
    points = read_points(SHIPPED)
    assert len(points) == 772
    assert len({p.id for p in points}) == 772
    disagg = [p for p in points if p.disagg]
    assert all(p.decode is not None and p.decode_gpus == p.decode.gpus for p in disagg)
    assert all(p.decode_gpus == p.n_gpus for p in points if not p.disagg)


@pytest.mark.parametrize("column, value, expected", [
    ("concurrency", "abc", "column 'concurrency': 'abc' is not an integer"),
    ("concurrency", "0", "column 'concurrency': 0 must be positive"),
    ("isl", "", "column 'isl': empty"),
    ("precision", "int3", "column 'precision': 'int3' is not one of"),
    ("disagg", "maybe", "column 'disagg': 'maybe' is not one of"),
    ("output_tput_per_gpu", "nan", "column 'output_tput_per_gpu': nan is not a finite number"),
    ("tok_s_per_user_stat", "p90 tpot", "column 'tok_s_per_user_stat'"),
    ("point_id", "", "column 'point_id': empty"),
])
def test_a_malformed_field_is_one_error_naming_line_and_column(tmp_path, column, value, expected):
    columns, rows = shipped_rows()
    bad = dict(rows["ix00508"], **{column: value})
    p = write_points(tmp_path / "p.csv", [rows["ix00511"], bad], columns)
    with pytest.raises(InputError) as e:
        read_points(p)
    msg = str(e.value)
    assert "p.csv line 3" in msg and expected in msg and "\n" not in msg


def test_reader_refuses_duplicates_missing_columns_and_unreadable_files(tmp_path):
    columns, rows = shipped_rows()
    with pytest.raises(InputError, match="duplicate id ix00508"):
        read_points(write_points(tmp_path / "d.csv", [rows["ix00508"], rows["ix00508"]], columns))
    with pytest.raises(InputError, match="missing column.*concurrency"):
        read_points(write_points(tmp_path / "m.csv", [], [c for c in columns if c != "concurrency"]))
    with pytest.raises(InputError, match="cannot read InferenceX points file"):
        read_points(tmp_path / "absent.csv")
    (tmp_path / "b.csv").write_bytes(b"point_id\n\xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        read_points(tmp_path / "b.csv")


# ------------------------------------------------------------------------------------------------ harness


def records(send, first, done, out) -> RequestRecords:
    n = len(send)
    return RequestRecords(request_id=np.arange(n), arrival_s=np.asarray(send, float), first_token_s=np.asarray(first, float),
                          completion_s=np.asarray(done, float), input_tokens=np.full(n, 100),
                          output_tokens=np.asarray(out), replica=np.zeros(n, dtype=np.int64))


def test_client_metrics_by_hand():
    # two clients, four requests: (sent, first token, done, output tokens)
    # r0 0, 1, 5, 5 -> TPOT 1.0; r1 0, 2, 4, 3 -> TPOT 1.0; r2 4, 5, 7, 4 -> TPOT 2/3; r3 5, 6, 10, 3 -> TPOT 2.0
    r = records([0, 0, 4, 5], [1, 2, 5, 6], [5, 4, 7, 10], [5, 3, 4, 3])
    m = measure(r, concurrency=2, measured=4, output_tokens_total=15)
    assert m.output_tok_s == pytest.approx(15 / 10)           # all output tokens over the whole run, 0 .. 10 s
    assert m.tpot_median_s == pytest.approx(1.0)              # median of 2/3, 1, 1, 2
    assert m.tpot_mean_s == pytest.approx((1 + 1 + 2 / 3 + 2) / 4)
    assert m.ttft_median_s == pytest.approx(1.0)              # TTFTs 1, 2, 1, 1
    assert m.requests_simulated == m.requests_measured == 4


def test_shortcut_extrapolation_is_exact_for_a_periodic_loop():
    # c clients, every request takes 2 s (TTFT 0.5 s) and has 10 output tokens: round k runs from 2k to 2k + 2,
    # so 10 rounds take 20 s and carry 10 * c * 10 tokens, whatever rounds were simulated
    c, rounds = 30, SHORTCUT_ROUNDS
    send = np.repeat(np.arange(rounds) * 2.0, c)
    r = records(send, send + 0.5, send + 2.0, np.full(rounds * c, 10))
    m = measure(r, concurrency=c, measured=10 * c, output_tokens_total=10 * c * 10)
    assert m.output_tok_s == pytest.approx(10 * c * 10 / 20.0)
    assert m.tpot_median_s == pytest.approx(1.5 / 9)
    assert m.ttft_median_s == pytest.approx(0.5)


def test_weighted_median_counts_weights_as_repetitions():
    v = np.array([3.0, 1.0, 2.0, 10.0])
    assert weighted_median(v, np.ones(4)) == pytest.approx(np.median(v))
    assert weighted_median(v, np.array([1.0, 1.0, 4.0, 1.0])) == pytest.approx(np.median([3, 1, 2, 2, 2, 2, 10]))
    assert weighted_median(v[:3], np.ones(3)) == pytest.approx(2.0)


def test_lengths_are_uniform_on_the_stated_range():
    x = harness_lengths(1024, 20000, np.random.default_rng(1))
    assert x.min() == int(LENGTH_LOW * 1024) and x.max() == 1024
    assert x.mean() == pytest.approx((int(LENGTH_LOW * 1024) + 1024) / 2, rel=0.002)


def fake_server(ttft_s: float, tpot_s: float):
    """A server with room for every request: latency = TTFT + (output - 1) x TPOT, no interference.
    Runs the closed loop itself (the first `concurrency` requests at t = 0, each completion sends the next)."""
    def run(wl) -> RequestRecords:
        out = wl.requests.output_tokens
        run.seen = out
        n, c = len(out), wl.concurrency
        send, first, done = np.zeros(n), np.zeros(n), np.zeros(n)
        free = [0.0] * c
        for i in range(n):
            t = heapq.heappop(free)
            send[i], first[i] = t, t + ttft_s
            done[i] = first[i] + (out[i] - 1) * tpot_s
            heapq.heappush(free, done[i])
        return records(send, first, done, out)
    return run


def test_one_client_runs_its_prompts_back_to_back():
    # one client: the run lasts the sum of the request latencies; TPOT and TTFT are the server's
    server = fake_server(0.2, 0.01)
    m = run_harness(server, concurrency=1, isl=100, osl=50, prompts=7, shortcut=False)
    out = server.seen
    assert len(out) == 7 and out.min() >= 40 and out.max() <= 50
    assert m.output_tok_s == pytest.approx(out.sum() / np.sum(0.2 + (out - 1) * 0.01))
    assert m.tpot_median_s == pytest.approx(0.01)
    assert m.ttft_median_s == pytest.approx(0.2)
    assert m.requests_measured == 7


@pytest.fixture(scope="module")
def ctx():
    return load_catalog(), load_calibration()


@pytest.fixture(scope="module")
def points():
    return {p.id: p for p in read_points(SHIPPED)}


# b200: TRT-LLM 8k/1k c256 (prefills queue in waves for four rounds), SGLang 8k/1k c64, TRT-LLM 1k/1k c128;
# with MTP: SGLang 1k/1k c64 aggregated (multi-token decode runs), Dynamo-SGLang 1k/1k c64 disaggregated
# (1 prefill, 1 decode worker); disaggregated without MTP: GB200 Dynamo-TRT 1k/1k c256 (1 prefill, 4 decode)
@pytest.mark.parametrize("pid", ["ix00455", "ix00344", "ix00530", "ix00246", "ix00053", "ix00833"])
def test_shortcut_agrees_with_simulating_every_prompt(ctx, points, pid):
    """Tolerance: 2% on output tok/s, median TPOT and median TTFT (over the shipped points'
    distinct configurations the largest differences were about 1.0%, 0.1% and 1.2%), aggregated,
    disaggregated and MTP points alike; the known misses below are held to 15%."""
    s = map_point(points[pid], *ctx)
    assert isinstance(s, PointSetup)
    p = s.point

    def loop(wl):
        return simulate_plan(s.plan, wl, engine=s.engine).records
    full = run_harness(loop, p.concurrency, p.isl, p.osl, shortcut=False)
    short = run_harness(loop, p.concurrency, p.isl, p.osl, shortcut=True)
    assert short.requests_simulated == SHORTCUT_ROUNDS * p.concurrency < full.requests_simulated == 10 * p.concurrency
    misses = {stat: getattr(short, stat) / getattr(full, stat) - 1
              for stat in ("output_tok_s", "tpot_median_s", "tpot_mean_s", "ttft_median_s")
              if getattr(short, stat) != pytest.approx(getattr(full, stat), rel=0.02)}
    assert set(misses) == SHORTCUT_KNOWN_MISSES.get(pid, set()), misses
    assert all(abs(m) < 0.15 for m in misses.values()), misses


# Where the shortcut is known to miss by more than 2% (stated here, so that a fix or a new miss shows):
# (ix00833, disaggregated with one prefill worker for c256, was 3.9% high on median TTFT until the first
# token was timed at the KV cache's arrival on the decode worker; it is within 2% since.)
# ix00455 and ix00530 (high-concurrency TRT-LLM): with the overlap scheduler's one-step admission
# delay (serving/replica.py) their TTFTs cluster at whole prefill steps and the per-round median still
# drifts after the shortcut's rounds: median TTFT 11% and 3.6% high.
SHORTCUT_KNOWN_MISSES = {"ix00455": {"ttft_median_s"}, "ix00530": {"ttft_median_s"}}


# ------------------------------------------------------------------------------------------------ mapping


def test_mapping_skips_what_is_not_modelled_with_the_reason(ctx, points):
    from dataclasses import replace
    p = points["ix00508"]
    assert isinstance(map_point(p, *ctx), PointSetup)
    assert "chip mi999 not in catalog" in map_point(replace(p, hardware="mi999"), *ctx).reason
    assert "only single-instance layouts" in map_point(replace(p, n_gpus=16), *ctx).reason
    disagg = points["ix00032"]
    odd = replace(disagg, prefill=replace(disagg.prefill, gpus=5, workers=2))
    assert "do not split into 2 workers" in map_point(odd, *ctx).reason


def test_disaggregated_and_mtp_points_map_to_their_pools(ctx, points):
    """ix00032: 1 prefill worker (tp 4, DP attention) and 6 decode workers (tp 8, no DP attention)
    on B200 with MTP: a pd plan whose pools hold exactly the point's GPUs, drafting with MTP."""
    setup = map_point(points["ix00032"], *ctx)
    assert isinstance(setup, PointSetup)
    pools = {pool.role: pool for pool in setup.plan.pools}
    pre, dec = pools["prefill"], pools["decode"]
    assert (pre.deployment.par.tp, pre.deployment.par.ep, pre.replicas) == (1, 4, 1)
    assert (dec.deployment.par.tp, dec.deployment.par.ep, dec.replicas) == (8, 1, 6)
    gpus = sum(pool.deployment.chips_per_replica * pool.replicas for pool in (pre, dec))
    assert gpus == points["ix00032"].n_gpus == 52
    assert dec.timer.decode_width > 1      # MTP verification steps feed k + 1 tokens


def test_layouts_follow_the_point(ctx, points):
    dp = next(p for p in points.values() if p.dp_attention and p.spec_decode == "none" and p.tp == 8)
    par = map_point(dp, *ctx).plan.decode_pool.deployment.par
    assert (par.tp, par.ep, par.replicas) == (1, 8, 1)   # attention data-parallel over 8 GPUs
    ep = points["ix00508"]                                # tp 8, ep 8, no DP attention
    par = map_point(ep, *ctx).plan.decode_pool.deployment.par
    assert (par.tp, par.ep, par.moe_ep, par.replicas) == (8, 1, 8, 1)  # attention TP8, experts whole per GPU
    assert features(ep) == ("aggregated", "ep") and features(points["ix00032"]) == ("disaggregated", "dp_attention",
                                                                                      "ep", "mtp")
    assert features(points["ix00343"]) == ("aggregated", "tp_only")


# ------------------------------------------------------------------------------------------------ report


@pytest.mark.parametrize("speed, band", [(None, "unknown"), (0.0, "<50"), (49.99, "<50"), (50.0, "50-150"),
                                         (149.9, "50-150"), (150.0, "150-400"), (400.0, "400-1000"), (999.9, "400-1000"), (1000.0, ">1000"), (2000.0, ">1000")])
def test_bands_by_measured_speed(speed, band):
    assert band_of(speed) == band


def result(pid, band, hw, feats, metric, measured, predicted) -> PointResult:
    return PointResult(pid, hw, hw, "trt", "fp8", 1024, 1024, 4, band, feats, metric, measured, predicted)


def test_groups_by_hand():
    rows = [result("a", "<50", "b200", ("aggregated", "ep"), "tok_s_per_user", 40.0, 44.0),      # +10%
            result("b", "<50", "h200", ("aggregated", "tp_only"), "tok_s_per_user", 20.0, 14.0),  # -30%
            result("c", "50-150", "b200", ("aggregated", "ep"), "tok_s_per_user", 100.0, 80.0),   # -20%
            result("c", "50-150", "b200", ("aggregated", "ep"), "ttft_ms", 100.0, 150.0)]         # +50%
    g = {(x["by"], x["group"], x["metric"]): x for x in InferenceXReport(rows, [], "x", 3).groups()}
    assert g[("metric", "all", "tok_s_per_user")]["median_abs_err"] == pytest.approx(0.2)
    assert g[("metric", "all", "tok_s_per_user")]["mean_abs_err"] == pytest.approx(0.2)
    assert g[("band", "<50", "tok_s_per_user")]["median_abs_err"] == pytest.approx(0.2)   # 10% and 30%
    assert g[("band", "<50", "tok_s_per_user")]["n"] == 2
    assert g[("hardware", "b200", "tok_s_per_user")]["median_abs_err"] == pytest.approx(0.15)
    assert g[("feature", "ep", "tok_s_per_user")]["n"] == 2
    assert g[("feature", "aggregated", "tok_s_per_user")]["n"] == 3
    assert g[("feature", "ep", "ttft_ms")]["median_abs_err"] == pytest.approx(0.5)
    assert all(x["set"] == "inferencex" for x in g.values())


ROW_KEYS = {"id", "chip", "hardware", "framework", "precision", "isl", "osl", "concurrency", "band", "features",
            "metric", "measured", "predicted", "error", "abs_error", "method", "assumptions", "set", "closed_form",
            "closed_form_error", "heldout_closed_form", "heldout_closed_form_error"}


def test_validate_json_rows_and_skips(tmp_path):
    columns, rows = shipped_rows()
    unknown = dict(rows["ix00508"], point_id="ix99999", hardware="mi999")   # a chip not in the catalog
    f = write_points(tmp_path / "mine.csv", [rows["ix00508"], unknown], columns)
    res = runner.invoke(app, ["validate", "--inferencex-only", "--inferencex-points", str(f), "--json", "--jobs", "1"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {r["id"] for r in doc["rows"]} == {"ix00508"}
    assert {r["metric"] for r in doc["rows"]} == {"output_tok_s_per_chip", "tok_s_per_user", "ttft_ms"}
    for r in doc["rows"]:
        assert set(r) == ROW_KEYS and r["set"] == "inferencex" and r["chip"] == "b200"
        assert r["error"] == pytest.approx((r["predicted"] - r["measured"]) / r["measured"])
        # the shipped fit's closed-form figures belong to the shipped points file, not to this one
        assert r["closed_form"] is None and r["heldout_closed_form"] is None
    measured = {r["metric"]: r["measured"] for r in doc["rows"]}
    assert measured["output_tok_s_per_chip"] == float(rows["ix00508"]["output_tput_per_gpu"])
    assert measured["ttft_ms"] == float(rows["ix00508"]["ttft_ms_median"])
    assert "chip mi999 not in catalog" in {s["id"]: s["reason"] for s in doc["skipped"]}["ix99999"]
    assert doc["inferencex"]["points"] == 2 and doc["inferencex"]["predicted_points"] == 1
    assert sum(doc["inferencex"]["skipped_by_reason"].values()) == 1
    assert {g["by"] for g in doc["groups"]} == {"metric", "band", "feature", "hardware"}


def test_validate_refuses_both_only_flags_and_a_malformed_points_file(tmp_path):
    res = runner.invoke(app, ["validate", "--inferencex-only", "--measurements-only"])
    assert res.exit_code == 2 and "exclude each other" in res.output
    bad = tmp_path / "bad.csv"
    bad.write_text("point_id,hardware\nix1,b200\n", encoding="utf-8")
    res = runner.invoke(app, ["validate", "--inferencex-only", "--inferencex-points", str(bad)])
    assert res.exit_code == 2 and "missing column" in res.output and "Traceback" not in res.output


def test_table_output_names_the_target(tmp_path):
    columns, rows = shipped_rows()
    f = write_points(tmp_path / "mine.csv", [rows["ix00508"]], columns)
    res = runner.invoke(app, ["validate", "--inferencex-only", "--inferencex-points", str(f), "--jobs", "1"])
    assert res.exit_code == 0, res.output
    assert "ix00508" in res.output and "12% target" in res.output and "1 of 1 points predicted" in res.output


def test_validate_inferencex_keeps_every_point(ctx, tmp_path):
    columns, rows = shipped_rows()
    picked = [rows[i] for i in ("ix00508", "ix00511", "ix00343", "ix00032")]
    rep = validate_inferencex(write_points(tmp_path / "p.csv", picked, columns), *ctx)
    assert {r.id for r in rep.rows} | {s.id for s in rep.skipped} == {r["point_id"] for r in picked}
