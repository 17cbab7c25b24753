"""`infersim simulate`: result files and JSON shapes, the workload sources (synthetic open loop,
closed loop, trace, P/D), determinism of the outputs, and clean failure (exit code 2, one `error:`
line on stderr) on bad input. Tiny workloads (<= 50 requests of llama-3.1-8b on h100-sxm)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from cli_checks import assert_fails_cleanly
from infersim.cli.main import app

runner = CliRunner()
BASE = ["simulate", "--model", "llama-3.1-8b", "--system", "h100-sxm"]
POISSON = ["--arrivals", "poisson", "--rate", "8", "--input-len", "256", "--output-len", "32", "--requests", "40"]
REQUIRED_COLUMNS = ["request_id", "arrival_s", "first_token_s", "completion_s", "input_tokens", "output_tokens",
                    "replica"]
AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens"
AZURE_ROWS = ["2023-11-16 18:15:46.6805900,374,44", "2023-11-16 18:15:50.9951690,396,109",
              "2023-11-16 18:15:51.1200000,1200,12", "2023-11-16 18:15:53.0000001,80,300",
              "2023-11-16 18:15:53.5000000,2048,64"]


def _ok(args):
    r = runner.invoke(app, [*BASE, *args])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    return r


def _json(args) -> dict:
    return json.loads(_ok([*args, "--json"]).stdout)


def _fails_cleanly(args) -> str:
    return assert_fails_cleanly(runner.invoke(app, [*BASE, *args]))


def _trace(path: Path, rows, header=AZURE_HEADER) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_poisson_run_writes_parquet_and_summary(tmp_path):
    out = tmp_path / "run"
    r = _ok([*POISSON, "--out", str(out), "--slo", "ttft_p99=2s,tpot_p99=100ms"])
    assert "serving summary" in r.stdout and "TTFT" in r.stdout and "ttft_p99" in r.stdout
    table = pq.read_table(out / "requests.parquet")
    assert table.column_names[:len(REQUIRED_COLUMNS)] == REQUIRED_COLUMNS
    assert table.num_rows == 40
    rows = table.to_pydict()
    assert rows["request_id"] == list(range(40))
    assert set(rows["input_tokens"]) == {256} and set(rows["output_tokens"]) == {32}
    assert all(a <= f <= c for a, f, c in zip(rows["arrival_s"], rows["first_token_s"], rows["completion_s"]))
    s = json.loads((out / "summary.json").read_text())
    for key in ("requests_completed", "duration_s", "output_tok_s", "goodput"):
        assert key in s
    for key in ("ttft_s", "tpot_s", "e2e_s"):
        assert set(s[key]) >= {"p50", "p90", "p99", "mean"}
    assert s["requests_completed"] == 40
    assert s["slo"]["ttft_p99"]["target_s"] == 2.0 and s["slo"]["tpot_p99"]["target_s"] == 0.1
    assert s["workload"]["closed_loop_concurrency"] is None


def test_json_output_parses_and_equals_summary_file(tmp_path):
    r = _ok([*POISSON, "--json", "--out", str(tmp_path)])
    s = json.loads(r.stdout)
    assert s["requests_injected"] == 40 and s["deployment"]["serving"]["chip"] == "h100-sxm"
    assert r.stdout == (tmp_path / "summary.json").read_text()
    assert "wall-clock" in r.stderr and "wall-clock" not in r.stdout


def test_closed_loop_defaults_to_ten_requests_per_user():
    s = _json(["--concurrency", "4", "--input-len", "300", "--output-len", "20"])
    assert s["workload"]["closed_loop_concurrency"] == 4
    assert s["requests_injected"] == s["requests_completed"] == 40


def test_gamma_arrivals_with_sampled_lengths():
    s = _json(["--arrivals", "gamma", "--rate", "10", "--cv", "3", "--requests", "30", "--input-len", "200",
               "--output-len", "20", "--length-dist", "exponential", "--seed", "7"])
    assert s["requests_completed"] == 30
    assert s["workload"]["source"].startswith("gamma(rate=10/s, cv=3") and "seed=7" in s["workload"]["source"]
    assert any("exponential" in a for a in s["workload"]["assumptions"])


def test_disaggregated_run_reports_kv_transfers():
    args = [*POISSON, "--prefill-replicas", "1", "--decode-replicas", "2"]
    s = _json(args)
    assert s["kv_transfers"] == 40
    assert s["deployment"]["prefill"]["replicas"] == 1 and s["deployment"]["decode"]["replicas"] == 2
    r = _ok(args)
    assert "KV transfers" in r.stdout and "prefill:" in r.stdout and "decode:" in r.stdout


def test_azure_trace_open_and_closed_loop(tmp_path):
    trace = _trace(tmp_path / "azure.csv", AZURE_ROWS)
    s = _json(["--trace", str(trace)])
    assert s["requests_completed"] == 5 and s["workload"]["source"] == "azure.csv"
    s = _json(["--trace", str(trace), "--requests", "3", "--rate-scale", "2"])
    assert s["requests_injected"] == 3
    s = _json(["--trace", str(trace), "--concurrency", "2"])
    assert s["workload"]["closed_loop_concurrency"] == 2 and s["requests_completed"] == 5


@pytest.mark.parametrize("rows, header, where", [
    ([AZURE_ROWS[0], "2023-11-16 18:15:50.9951690,-396,109"], AZURE_HEADER, "bad.csv:3"),  # negative tokens
    (["2023-11-16 18:15:46.6805900,374"], "TIMESTAMP,ContextTokens", "bad.csv:1"),  # missing column
    ([AZURE_ROWS[1], AZURE_ROWS[0]], AZURE_HEADER, "bad.csv:3"),  # unsorted
])
def test_malformed_trace_fails_cleanly_naming_file_and_line(tmp_path, rows, header, where):
    line = _fails_cleanly(["--trace", str(_trace(tmp_path / "bad.csv", rows, header))])
    assert where in line


@pytest.mark.parametrize("args, needle", [
    ([], "no workload"),
    ([*POISSON, "--concurrency", "4"], "together"),
    (["--trace", "x.csv", "--rate", "3"], "together"),
    ([*POISSON, "--slo", "garbage"], "--slo"),
    ([*POISSON, "--slo", "ttft_p99=fast"], "--slo"),
    (["--arrivals", "gamma"], "--rate"),
    (["--rate", "3", "--cv", "2"], "--cv"),
    (["--rate", "-1"], "--rate"),
    ([*POISSON, "--seed", "-1"], "--seed"),
    (["--trace", "x.csv", "--rate-scale", "0"], "--rate-scale"),
    (["--trace", "x.csv", "--input-len", "10"], "--input-len"),
    ([*POISSON, "--router", "random"], "--router"),
    ([*POISSON, "--prefill-replicas", "1"], "--decode-replicas"),
    ([*POISSON, "--model", "no-such-model"], "unknown model"),
    ([*POISSON, "--model", "llama-3.1-70b"], "no room for a KV cache"),
    (["--trace", "/no/such/trace.csv"], "not found"),
])
def test_bad_input_fails_cleanly(args, needle):
    assert needle in _fails_cleanly(args)


def test_identical_runs_write_identical_files(tmp_path):
    args = [*POISSON, "--length-dist", "uniform", "--slo", "ttft_p90=50ms"]
    for d in ("a", "b"):
        _ok([*args, "--out", str(tmp_path / d)])
    for name in ("requests.parquet", "summary.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_results_are_written_before_printing(tmp_path, monkeypatch):
    import infersim.cli.simulate_cmd as cmd

    def broken(*a, **kw):
        raise RuntimeError("terminal went away")
    monkeypatch.setattr(cmd, "print_simulation", broken)
    r = runner.invoke(app, [*BASE, *POISSON, "--out", str(tmp_path)])
    assert r.exit_code != 0
    assert (tmp_path / "requests.parquet").is_file() and (tmp_path / "summary.json").is_file()


def test_queue_order_and_preemption_flags_reach_the_engine():
    s = _json([*POISSON, "--queue-order", "shortest-prompt", "--preemption", "fewest-tokens", "--router", "slo-class"])
    e = s["engine"]
    assert (e["queue_order"], e["preemption"], e["router"]) == ("shortest-prompt", "fewest-tokens", "slo-class")
    assert s["requests_completed"] == 40


@pytest.mark.parametrize("flag, name, known", [("--queue-order", "lifo", "fcfs, priority, shortest-prompt"),
                                               ("--preemption", "oldest", "newest, fewest-tokens, lowest-priority")])
def test_unknown_policy_flags_fail_cleanly_listing_the_choices(flag, name, known):
    line = _fails_cleanly([*POISSON, flag, name])
    assert f"'{name}'" in line and known in line


def test_premium_fraction_marks_a_seeded_share_and_priority_serves_it_first():
    """--premium-fraction draws the SLO classes; under load the priority queue order admits the
    premium class first, so its TTFT drops below FCFS's while the standard class waits longer."""
    from infersim.catalog.models import load_model
    from infersim.mapping.deployment import build_deployment
    from infersim.serving.config import EngineConfig
    from infersim.serving.simulate import simulate as run
    from infersim.workload.synthetic import poisson, with_premium_share

    reqs = with_premium_share(poisson(40.0, 600, 2000, 100, seed=3), 0.2, seed=0)
    premium = reqs.priority == 0
    assert 0.15 < premium.mean() < 0.25 and set(np.unique(reqs.priority)) == {0, 1}
    dep = build_deployment(load_model("llama-3.1-8b"), "h100-sxm", tp=1, precision="bf16")
    ttft = {}
    for order in ("fcfs", "priority"):
        r = run(reqs, dep, engine=EngineConfig(max_batch=16, queue_order=order)).records
        t = r.ttft_s()
        ttft[order] = (float(np.median(t[premium])), float(np.median(t[~premium])))
    assert ttft["priority"][0] < 0.5 * ttft["fcfs"][0]
    assert ttft["priority"][1] > ttft["fcfs"][1]
    r = runner.invoke(app, ["simulate", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--concurrency", "4",
                            "--requests", "8", "--premium-fraction", "0.5", "--queue-order", "priority", "--json",
                            "-q"])
    assert r.exit_code == 0, r.stderr
    assert any("premium (priority 0)" in a for a in json.loads(r.stdout)["workload"]["assumptions"])
    assert_fails_cleanly(runner.invoke(app, ["simulate", "--model", "llama-3.1-8b", "--system", "h100-sxm",
                                             "--concurrency", "4", "--premium-fraction", "1.5"]))
