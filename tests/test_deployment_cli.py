"""`infersim estimate --deployment` and `infersim simulate --deployment`: every example file runs
(gpt-oss-120b fits all five), JSON shapes, options the file decides are refused, the engine options
override the file's `engine:` only when given, SLO routing reports both classes, and every bad
deployment fails cleanly (exit code 2, one `error:` line). Tiny workloads (24 requests)."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from cli_checks import assert_fails_cleanly
from deployment_by_hand import racks_and_power
from infersim.cli.main import app

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "deployments"
FILES = ["vr-nvl72", "lpx", "cs3", "vr-nvl72-lpx-afd", "vr-nvl72-lpx-spec"]
MODEL = ["--model", "gpt-oss-120b"]
WORKLOAD = ["--concurrency", "8", "--requests", "24", "--input-len", "256", "--output-len", "32"]
ESTIMATE_KEYS = {"ttft_s", "tpot_s", "tok_s_per_user", "output_tok_s", "tok_s_per_rack", "tok_s_per_mw", "racks",
                 "power_w", "time_shares", "max_batch_at_context", "notes"}
SUMMARY_KEYS = {"output_tok_s", "output_tok_s_per_rack", "output_tok_s_per_mw", "racks", "power_w", "ttft_s",
                "tpot_s", "requests_completed"}


def _example(name: str) -> str:
    return str(EXAMPLES / f"{name}.yaml")


def _run(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    return r


def _estimate(name: str, *extra) -> dict:
    return json.loads(_run(["estimate", "--deployment", _example(name), *MODEL, "--batch", "16", "--input", "1000",
                            "--output", "200", *extra, "--json"]).stdout)


def _simulate(path: str, *extra) -> dict:
    return json.loads(_run(["simulate", "--deployment", path, *MODEL, *WORKLOAD, "--quiet", *extra, "--json"]).stdout)


def _fails(args) -> str:
    return assert_fails_cleanly(runner.invoke(app, args))


def _variant(tmp_path: Path, name: str, edit) -> str:
    """A temp copy of an example with `edit(dict)` applied."""
    d = yaml.safe_load(Path(_example(name)).read_text())
    edit(d)
    p = tmp_path / f"{name}-variant.yaml"
    p.write_text(yaml.safe_dump(d), encoding="utf-8")
    return str(p)


# ------------------------------------------------------------------------------------------------ estimate

@pytest.mark.parametrize("name", FILES)
def test_every_example_estimates(name):
    d = _estimate(name)
    assert ESTIMATE_KEYS <= d.keys()
    assert d["deployment"] == name and d["model"] == "gpt-oss-120b"
    assert d["ttft_s"] > 0 and d["tpot_s"] > 0 and d["output_tok_s"] > 0
    # racks and watts counted from the file and the catalog's system files, not from the output
    racks, power = racks_and_power(yaml.safe_load(Path(_example(name)).read_text()))
    assert sum(d["racks"].values()) == racks and d["power_w"] == pytest.approx(power)
    assert d["tok_s_per_rack"] == pytest.approx(d["output_tok_s"] / racks)
    assert d["tok_s_per_mw"] == pytest.approx(d["output_tok_s"] / (power / 1e6))
    for kind, shares in d["time_shares"].items():
        assert kind in ("gpu", "lpu", "wafer", "link") and all(0 <= v <= 1 for v in shares.values())
    if d["mode"] == "afd":
        assert {"parts_s", "bottleneck"} <= d["afd"].keys()
        assert d["afd"]["bottleneck"] in ("chain", "gpu", "lpu", "link", "host")  # host: costmodel/afd.py
        assert d["afd"]["binding"]["binding"] == d["afd"]["bottleneck"]
        assert {st["status"] for st in d["afd"]["binding"]["stages"].values()} <= {
            "never binds", "binds at any ratio", "stops binding"}
        pipe = d["afd"]["pipeline"]
        assert len(pipe["layers"]) == pipe["layers_n"] and all(
            len(row) == 4 * pipe["micro_batches"] for row in pipe["layers"])
        assert d["tpot_s"] * (1 - 1e-9) <= pipe["step_s"] <= pipe["strict_sum_s"] * (1 + 1e-9)
        assert set(d["racks"]) == {"gpu", "lpu"}
    if d["mode"] == "spec":
        assert {"draft_s", "link_s", "verify_s", "expected_tokens_per_verify"} <= d["spec"].keys()
        # the file's k = 4 drafts at acceptance 0.7 yield 1 + 0.7 + 0.7^2 + 0.7^3 + 0.7^4 = 2.7731
        # tokens per draft-verify cycle
        assert d["tok_s_per_user"] == pytest.approx(2.7731 / d["spec"]["cycle_s"], rel=1e-12)


def test_file_and_flags_agree_on_decode_speed():
    """vr-nvl72.yaml is one NVL72 rack at tp 8 in fp8: the same layout given as flags decodes at the
    same speed. The file's steady-state throughput cannot beat 9 replicas (72 GPUs / tp 8) each
    emitting its 16 sequences' tokens once per decode step."""
    d = _estimate("vr-nvl72")
    flags = json.loads(_run(["estimate", *MODEL, "--system", "vr-nvl72", "--tp", "8", "--precision", "fp8", "--batch",
                             "16", "--input", "1000", "--output", "200", "--json"]).stdout)
    assert flags["parallel"] == {"tp": 8, "pp": 1, "ep": 1, "moe_ep": 1, "replicas": 9}
    assert d["tpot_s"] == pytest.approx(flags["tpot_s"], rel=1e-12)
    assert d["tok_s_per_user"] == pytest.approx(flags["tok_s_per_user"], rel=1e-12)
    assert d["output_tok_s"] <= 9 * 16 / d["tpot_s"]


def test_afd_estimate_prints_parts_bottleneck_and_power():
    r = _run(["estimate", "--deployment", _example("vr-nvl72-lpx-afd"), *MODEL, "--batch", "32", "--input", "2000",
              "--output", "500"])
    text = r.stdout
    for s in ("vr-nvl72-lpx-afd (afd)", "1 x vr-nvl72 (gpu) + 1 x lpx (lpu)", "kW from catalog power figures",
              "TTFT", "TPOT", "tokens/s per user", "output tokens/s per rack", "output tokens/s per MW",
              "max batch at this context", "where the time goes", "attention (GPU)", "FFN (LPU)", "bottleneck:",
              "the binding stage", "over LPX : NVL72 ratios (this file 1;", "LPU pool ", "link ",
              "AFD per-layer pipeline (36 FFN layers x 2 micro-batch(es))", "layer 0 mb 0: attention 0.0-",
              "layer 1 mb 1:", "per step:", "note: AFD"):
        assert s in text, s
    assert "layer 2 mb 0" not in text   # the first layers only; --json has every layer


def test_spec_estimate_prints_cycle():
    r = _run(["estimate", "--deployment", _example("vr-nvl72-lpx-spec"), *MODEL])
    assert "expected tokens per verification" in r.stdout and "draft" in r.stdout and "verify" in r.stdout


def test_model_comes_from_the_file_when_not_given(tmp_path):
    path = _variant(tmp_path, "vr-nvl72", lambda d: d.update(model="llama-3.1-8b"))
    d = json.loads(_run(["estimate", "--deployment", path, "--json"]).stdout)
    assert d["model"] == "llama-3.1-8b"
    assert json.loads(_run(["estimate", "--deployment", path, *MODEL, "--json"]).stdout)["model"] == "gpt-oss-120b"


def test_set_and_calibration_reach_the_plan():
    base = _estimate("vr-nvl72")
    more_power = _estimate("vr-nvl72", "--set", "vr-nvl72.power_w=420000", "--calibration", "none")
    assert more_power["power_w"] == pytest.approx(2 * base["power_w"])


# ------------------------------------------------------------------------------------------------ simulate

@pytest.mark.parametrize("name", FILES)
def test_every_example_simulates(name, tmp_path):
    s = _simulate(_example(name), "--out", str(tmp_path / "run"))
    assert SUMMARY_KEYS <= s.keys()
    assert s["requests_completed"] == 24
    # throughput from the per-request file (24 x 32 tokens by the last completion; the run starts at
    # t = 0), racks and watts from the deployment file and the catalog's system files
    table = pq.read_table(tmp_path / "run" / "requests.parquet").to_pydict()
    assert sum(table["output_tokens"]) == 24 * 32
    tok_s = 24 * 32 / max(table["completion_s"])
    racks, power = racks_and_power(yaml.safe_load(Path(_example(name)).read_text()))
    assert s["output_tok_s"] == pytest.approx(tok_s, rel=1e-12)
    assert s["output_tok_s_per_rack"] == pytest.approx(tok_s / racks, rel=1e-12)
    assert s["output_tok_s_per_mw"] == pytest.approx(tok_s / (power / 1e6), rel=1e-12)
    if name.endswith("afd"):
        assert s["afd"]["lpu_pools"] >= 1 and "decode" in s["deployment"]
    if name.endswith("spec"):
        assert s["spec"]["expected_tokens_per_verify"] > 1


def test_simulate_prints_racks_power_and_afd(tmp_path):
    out = tmp_path / "run"
    r = _run(["simulate", "--deployment", _example("vr-nvl72-lpx-afd"), *MODEL, *WORKLOAD, "--out", str(out)])
    for s in ("serving summary", "latency", "1 x vr-nvl72 (gpu) + 1 x lpx (lpu)", "output tokens/s per rack",
              "AFD:", "wrote"):
        assert s in r.stdout, s
    assert pq.read_table(out / "requests.parquet").num_rows == 24
    assert "output_tok_s_per_mw" in json.loads((out / "summary.json").read_text())


def test_engine_options_override_the_file_only_when_given(tmp_path):
    path = _variant(tmp_path, "vr-nvl72", lambda d: d.update(engine={"max_batch": 4, "block_tokens": 32,
                                                                     "prefix_caching": False,
                                                                     "router": "round-robin"}))
    eng = _simulate(path)["engine"]
    assert (eng["max_batch"], eng["block_tokens"], eng["prefix_caching"], eng["router"]) == (4, 32, False,
                                                                                             "round-robin")
    eng = _simulate(path, "--max-batch", "6", "--prefix-cache", "--router", "least-outstanding")["engine"]
    assert (eng["max_batch"], eng["block_tokens"], eng["prefix_caching"], eng["router"]) == (6, 32, True,
                                                                                             "least-outstanding")


def test_plain_simulate_keeps_its_engine_defaults():
    s = json.loads(_run(["simulate", "--model", "llama-3.1-8b", "--system", "h100-sxm", *WORKLOAD, "-q",
                         "--json"]).stdout)
    e = s["engine"]
    assert (e["max_batch"], e["max_tokens_per_step"], e["block_tokens"], e["prefix_caching"], e["router"]) == \
        (256, 8192, 16, True, "least-outstanding")


def _routing_file(tmp_path: Path) -> str:
    p = tmp_path / "routed.yaml"
    p.write_text(yaml.safe_dump({
        "name": "routed", "mode": "gpu", "model": "gpt-oss-120b",
        "gpu": {"system": "vr-nvl72", "racks": 1, "tp": 8, "precision": "fp8"},
        "lpu": {"system": "lpx", "racks": 2, "precision": "mixed"},
        "routing": {"premium_fraction": 0.25, "premium_path": "lpu"}}), encoding="utf-8")
    return str(p)


def test_routing_simulates_both_classes(tmp_path):
    path = _routing_file(tmp_path)
    s = _simulate(path)
    assert set(s["classes"]) == {"standard", "premium"}
    assert sum(c["requests_completed"] for c in s["classes"].values()) == s["requests_completed"] == 24
    assert s["racks"] == {"gpu": 1, "lpu": 2}
    for c in s["classes"].values():
        assert c["output_tok_s"] > 0 and c["ttft_s"]["p99"] > 0 and c["tpot_s"]["p50"] > 0
    r = _run(["simulate", "--deployment", path, *WORKLOAD, "--out", str(tmp_path / "run")])
    assert "SLO classes" in r.stdout and "standard" in r.stdout and "premium" in r.stdout
    assert "[premium] serving" in r.stdout
    assert pq.read_table(tmp_path / "run" / "requests.parquet").num_rows == 24


def test_routing_estimate_runs(tmp_path):
    r = _run(["estimate", "--deployment", _routing_file(tmp_path)])
    assert "SLO routing" in r.stdout


# ------------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("cmd", ["estimate", "simulate"])
@pytest.mark.parametrize("opt", [["--system", "vr-nvl72"], ["--tp", "4"], ["--pp", "1"], ["--ep", "2"],
                                 ["--chips", "8"], ["--replicas", "2"], ["--precision", "fp8"],
                                 ["--kv-precision", "fp8"]])
def test_options_the_file_decides_are_refused(cmd, opt):
    extra = WORKLOAD if cmd == "simulate" else []
    line = _fails([cmd, "--deployment", _example("vr-nvl72"), *MODEL, *opt, *extra])
    assert opt[0] in line and "--deployment" in line


@pytest.mark.parametrize("opt", [["--prefill-replicas", "1"], ["--decode-replicas", "2"]])
def test_pd_options_are_refused_with_a_deployment(opt):
    line = _fails(["simulate", "--deployment", _example("vr-nvl72"), *MODEL, *opt, *WORKLOAD])
    assert opt[0] in line


@pytest.mark.parametrize("cmd", ["estimate", "simulate"])
def test_system_still_required_without_a_deployment(cmd):
    r = runner.invoke(app, [cmd, *MODEL])
    assert r.exit_code == 2 and "Missing option '--system'" in r.output


@pytest.mark.parametrize("cmd", ["estimate", "simulate"])
def test_ffn_weights_over_lpu_sram(cmd):
    extra = WORKLOAD if cmd == "simulate" else []
    line = _fails([cmd, "--deployment", _example("vr-nvl72-lpx-afd"), "--model", "deepseek-v3", *extra])
    assert "racks_per_gpu_rack" in line


@pytest.mark.parametrize("cmd", ["estimate", "simulate"])
def test_acceptance_outside_unit_interval(tmp_path, cmd):
    path = _variant(tmp_path, "vr-nvl72-lpx-spec", lambda d: d["spec"].update(acceptance=1.5))
    extra = WORKLOAD if cmd == "simulate" else []
    assert "acceptance" in _fails([cmd, "--deployment", path, *MODEL, *extra])


@pytest.mark.parametrize("name", ["vr-nvl72-lpx-afd", "vr-nvl72-lpx-spec"])
def test_mode_needing_a_link_without_one(tmp_path, name):
    path = _variant(tmp_path, name, lambda d: d.pop("link"))
    assert "link" in _fails(["estimate", "--deployment", path, *MODEL])
    assert "link" in _fails(["simulate", "--deployment", path, *MODEL, *WORKLOAD])


@pytest.mark.parametrize("edit, field", [(lambda d: d.update(colour="blue"), "colour"),
                                         (lambda d: d["gpu"].update(tpp=2), "gpu.tpp")])
def test_unknown_field_is_named(tmp_path, edit, field):
    path = _variant(tmp_path, "vr-nvl72", edit)
    assert field in _fails(["estimate", "--deployment", path, *MODEL])
    assert field in _fails(["simulate", "--deployment", path, *MODEL, *WORKLOAD])


def test_kv_cache_over_hbm(tmp_path):
    line = _fails(["estimate", "--deployment", _example("vr-nvl72"), "--model", "llama-3.1-8b", "--batch", "10000000",
                   "--input", "8000"])
    assert "HBM" in line and "--batch" in line


def test_missing_model_file_and_yaml(tmp_path):
    assert "names no model" in _fails(["estimate", "--deployment", _example("vr-nvl72")])
    assert "not found" in _fails(["estimate", "--deployment", str(tmp_path / "nope.yaml"), *MODEL])
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [x,\n", encoding="utf-8")
    assert "YAML" in _fails(["simulate", "--deployment", str(bad), *MODEL, *WORKLOAD])


def test_engine_policies_come_from_the_file_and_the_flags(tmp_path):
    path = _variant(tmp_path, "vr-nvl72", lambda d: d.update(engine={"queue_order": "shortest-prompt",
                                                                     "preemption": "fewest-tokens",
                                                                     "router": "slo-class"}))
    eng = _simulate(path)["engine"]
    assert (eng["queue_order"], eng["preemption"], eng["router"]) == ("shortest-prompt", "fewest-tokens", "slo-class")
    eng = _simulate(path, "--queue-order", "priority", "--preemption", "lowest-priority")["engine"]
    assert (eng["queue_order"], eng["preemption"], eng["router"]) == ("priority", "lowest-priority", "slo-class")


@pytest.mark.parametrize("field, name, known", [("queue_order", "lifo", "fcfs, priority, shortest-prompt"),
                                                ("preemption", "oldest", "newest, fewest-tokens, lowest-priority"),
                                                ("router", "random", "least-outstanding, round-robin"),
                                                ("admission", "lazy", "eager, reserve")])
def test_unknown_engine_policy_in_the_file_lists_the_registered_ones(tmp_path, field, name, known):
    path = _variant(tmp_path, "vr-nvl72", lambda d: d.update(engine={field: name}))
    line = _fails(["simulate", "--deployment", path, *MODEL, *WORKLOAD])
    assert f"engine.{field}" in line and f"'{name}'" in line and known in line
