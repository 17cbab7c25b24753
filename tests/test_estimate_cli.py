"""The `infersim` command line: JSON shapes of `models` and `estimate`, the issue's example commands,
and clean failure (exit code 2, one `error:` line on stderr, no traceback) on bad input."""
from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli_checks import assert_fails_cleanly
from infersim.calibration.efficiency import load_calibration
from infersim.cli.main import app

runner = CliRunner()
INFERSIM = Path(sys.executable).parent / "infersim"

NEMOTRON_EXAMPLE = ["estimate", "--model", "nemotron-3-super", "--system", "gb200-nvl72", "--tp", "8", "--precision",
                    "fp8", "--batch", "64", "--input", "4096", "--output", "512"]
GROQ_EXAMPLE = ["estimate", "--model", "llama-3.3-70b", "--system", "groq-lpu-v1", "--chips", "576", "--batch", "1",
                "--input", "1024", "--output", "256"]

COLUMNS = ["id", "model", "chip", "n_chips", "precision", "scenario", "input_len", "output_len", "batch", "concurrency",
           "request_rate", "spec_decode", "metric", "stat", "value", "unit", "software", "trust", "source", "notes"]
GOOD_ROW = {"id": "M1", "model": "meta-llama/Llama-3.1-8B-Instruct", "chip": "h100-sxm", "n_chips": "1",
            "precision": "bf16", "scenario": "fixed_batch", "input_len": "128", "output_len": "128", "batch": "1",
            "spec_decode": "no", "metric": "tpot_ms", "stat": "mean", "value": "10", "unit": "ms"}


def _csv(path: Path, rows: list[dict], columns=COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


def _ok(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    return r


_fails_cleanly = assert_fails_cleanly


# ------------------------------------------------------------------------------------------------
# models / estimate JSON
# ------------------------------------------------------------------------------------------------


def test_models_json_lists_every_model_with_param_counts():
    rows = json.loads(_ok(["models", "--json"]).stdout)
    assert isinstance(rows, list) and rows
    for row in rows:
        assert {"name", "hf_id", "total_params", "active_params"} <= set(row)
        # active weights (per token, without the input embedding) are a subset of all weights
        assert 0 < row["active_params"] <= row["total_params"]
    names = [r["name"] for r in rows]
    assert len(names) == len(set(names))
    by = {r["name"]: r for r in rows}
    # Llama-3.1-8B by hand: embedding and untied lm_head 2 x 128256 x 4096, 32 layers of
    # attention (4096 x (4096 + 1024 + 1024) + 4096 x 4096) + SwiGLU (3 x 4096 x 14336) + 2 norms,
    # final norm 4096 -> 8,030,261,248; active drops the input embedding (128256 x 4096).
    assert by["llama-3.1-8b"]["total_params"] == 8_030_261_248
    assert by["llama-3.1-8b"]["active_params"] == 8_030_261_248 - 128256 * 4096
    assert by["llama-3.1-8b"]["hf_id"] == "meta-llama/Llama-3.1-8B-Instruct"


@pytest.mark.parametrize("args,chips,replicas", [(NEMOTRON_EXAMPLE, 72, 9), (GROQ_EXAMPLE, 576, 1)],
                         ids=["nemotron-gb200", "llama-groq"])
def test_issue_example_commands_work(args, chips, replicas):
    d = json.loads(_ok(args + ["--json"]).stdout)
    assert {"ttft_s", "tpot_s", "tok_s_per_user", "output_tok_s", "bottleneck"} <= set(d)
    assert set(d["bottleneck"]) == {"prefill", "decode"}
    for phase in ("prefill", "decode"):
        assert d["bottleneck"][phase] in ("compute", "memory", "interconnect", "overhead")
    for k in ("ttft_s", "tpot_s", "tok_s_per_user", "output_tok_s"):
        assert math.isfinite(d[k]) and d[k] > 0
    # 72 GPUs at tp=8 are 9 replicas; the LPU run is one 576-chip pipeline
    assert d["chips"] == chips and d["parallel"]["replicas"] == replicas
    # the human-readable form works too and mentions both latencies
    text = _ok(args).stdout
    assert "TTFT" in text and "TPOT" in text


def test_estimate_json_memory_by_hand():
    """The defaults (batch 1, 1024 + 128 tokens, bf16, one H100 of 80 GB): Llama-3.1-8B's 8,030,261,248
    weights at 2 B; K and V of 8 heads x 128 dims in 32 layers at 2 B = 131,072 B per token for 1152
    tokens; activations (memory.py's accounting: 4 hidden-sized bf16 tensors and the 2 x 14336 FFN
    intermediates per prompt token, one fp32 row of 128,256 logits per sequence); the reserve is the
    calibration's fraction of the 80 GB. Free memory is what the hand-computed parts leave."""
    d = json.loads(_ok(["estimate", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--json"]).stdout)
    mem = d["memory_per_chip"]
    weights = 8_030_261_248 * 2
    kv = 1152 * 32 * 2 * 8 * 128 * 2
    acts = 1024 * (4 * 4096 + 2 * 14336) * 2 + 128256 * 4
    reserve = 80e9 * load_calibration().for_chip("gpu", "hopper").mem_reserve
    assert (weights, kv, acts) == (16_060_522_496, 150_994_944, 92_787_712)
    assert mem["capacity_bytes"] == 80e9
    assert mem["weights_bytes"] == pytest.approx(weights, rel=1e-12)
    assert mem["kv_cache_bytes"] == pytest.approx(kv, rel=1e-12)
    assert mem["activations_bytes"] == pytest.approx(acts, rel=1e-12)
    assert mem["free_bytes"] == pytest.approx(80e9 - reserve - weights - kv - acts, rel=1e-12)


def test_estimate_set_override_changes_the_hardware():
    """A higher HBM bandwidth given with --set never slows the memory-bound decode."""
    base = json.loads(_ok(["estimate", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--json"]).stdout)
    fast = json.loads(_ok(["estimate", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--json",
                           "--set", "h100-sxm.mem_bw_bytes_per_s=6.7e12"]).stdout)
    assert fast["tpot_s"] < base["tpot_s"]


# ------------------------------------------------------------------------------------------------
# Bad input: exit 2, one line
# ------------------------------------------------------------------------------------------------

E = ["estimate", "--model", "llama-3.1-8b", "--system", "h100-sxm"]


@pytest.mark.parametrize("args,needle", [
    (["estimate", "--model", "llama-9-1t", "--system", "h100-sxm"], "unknown model"),
    (["estimate", "--model", "llama-3.1-8b", "--system", "h900-sxm"], "unknown chip or system"),
    (E + ["--chips", "6", "--tp", "4"], "conflicting parallelism"),
    (E + ["--chips", "8", "--tp", "2", "--replicas", "3"], "conflicting parallelism"),
    (E + ["--set", "h100-sxm.mem_bw_bytes_per_s"], "bad override"),
    (E + ["--set", "h100-sxm.mem_bw_bytes_per_s=fast"], "not a finite number"),
    (E + ["--set", "h100-sxm.warp_drive=1"], "unknown field"),
    (E + ["--set", "nochip.tdp_w=1"], "unknown"),
    (E + ["--precision", "fp4"], "fp4"),
    (E + ["--precision", "fp7"], "unknown precision"),
    (E + ["--kv-precision", "fp9"], "KV-cache precision"),
    (E + ["--tp", "0"], "--tp"),
    (E + ["--batch", "0"], "at least 1"),
    (E + ["--input", "200000"], "exceeds"),
    (["estimate", "--model", "llama-3.1-405b", "--system", "h100-sxm", "--chips", "2", "--tp", "2", "--precision", "bf16"],
     "short by"),
    (["estimate", "--model", "llama-3.3-70b", "--system", "groq-lpu-v1", "--chips", "100"], "does not fit"),
    (["estimate", "--model", "llama-3.1-8b", "--system", "gb200-nvl72", "--chips", "100"], "only 72 chips"),
    (E + ["--hardware", "/nonexistent/extra.yaml"], "cannot read"),
])
def test_estimate_bad_input_fails_cleanly(args, needle):
    line = _fails_cleanly(runner.invoke(app, args))
    assert needle in line


def test_missing_measurements_file_fails_cleanly(tmp_path):
    line = _fails_cleanly(runner.invoke(app, ["validate", "--measurements", str(tmp_path / "nope.csv")]))
    assert "nope.csv" in line


def test_malformed_measurements_csv_fails_cleanly(tmp_path):
    path = _csv(tmp_path / "bad.csv", [GOOD_ROW, {**GOOD_ROW, "id": "M2", "n_chips": "eight"}])
    for cmd in ("validate", "calibrate"):
        args = [cmd, "--measurements", str(path)] + (["--out", str(tmp_path / "fit.json")] if cmd == "calibrate" else [])
        line = _fails_cleanly(runner.invoke(app, args))
        assert "line 3" in line and "column 'n_chips'" in line
    assert not (tmp_path / "fit.json").exists()


def test_row_with_missing_trailing_fields_fails_cleanly(tmp_path):
    path = tmp_path / "short.csv"
    path.write_text(",".join(COLUMNS) + "\n"
                    "M1,meta-llama/Llama-3.1-8B-Instruct,h100-sxm,1,bf16,fixed_batch,128,128,1,,,no,tpot_ms,mean\n")
    _fails_cleanly(runner.invoke(app, ["validate", "--measurements", str(path)]))


def test_non_utf8_measurements_fail_cleanly(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes((",".join(COLUMNS) + "\n"
                      "M1,meta-llama/Llama-3.1-8B-Instruct,h100-sxm,1,bf16,fixed_batch,128,128,1,,,no,tpot_ms,mean,"
                      "10,ms,,,,caf\xe9\n").encode("latin-1"))
    _fails_cleanly(runner.invoke(app, ["validate", "--measurements", str(path)]))


def test_missing_calibration_file_fails_cleanly(tmp_path):
    _fails_cleanly(runner.invoke(app, E + ["--calibration", str(tmp_path / "typo.json")]))


def test_malformed_calibration_file_fails_cleanly(tmp_path):
    bad = tmp_path / "fit.json"
    bad.write_text("{not json")
    line = _fails_cleanly(runner.invoke(app, E + ["--calibration", str(bad)]))
    assert "invalid JSON" in line


def test_installed_console_script_fails_cleanly_and_runs_the_example():
    """The real entry point (not only the in-process runner): exit 2 and one stderr line."""
    if not INFERSIM.exists():
        pytest.skip("infersim console script not installed next to this interpreter")
    bad = subprocess.run([str(INFERSIM), "estimate", "--model", "no-such-model", "--system", "h100-sxm"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
    assert "Traceback" not in bad.stderr
    good = subprocess.run([str(INFERSIM), *GROQ_EXAMPLE, "--json"], capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    assert json.loads(good.stdout)["tpot_s"] > 0
