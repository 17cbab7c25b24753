"""Bad input, tried as a new user would (issue 8, section 6): every case gives one `error:` line
naming the problem and the fix, exit code 2, no traceback, and loses nothing already written.
Results directories are written atomically and follow the user's umask."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import infersim
from cli_checks import assert_fails_cleanly
from infersim.catalog.hardware import load_catalog
from infersim.catalog.models import load_model
from infersim.cli.main import app
from infersim.errors import InputError, shown
from infersim.mapping.deployment import build_deployment, valid_tensor_parallel

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
PACKAGE = Path(infersim.__file__).resolve().parent
MEASUREMENTS = PACKAGE / "datasets" / "calibration" / "measurements.csv"
LLAMA_CONFIG = PACKAGE / "catalog" / "data" / "models" / "meta-llama__Llama-3.1-8B-Instruct" / "config.json"
EST = ["estimate", "--model", "llama-3.1-8b", "--system", "h100-sxm"]
SIM = ["simulate", "--model", "llama-3.1-8b", "--system", "h100-sxm", "-q"]
SMALL = ["--concurrency", "2", "--requests", "4", "--input-len", "64", "--output-len", "8"]
TOO_LONG = "x" * 300  # longer than any file system's 255-byte name limit


def fails(args: list[str]) -> str:
    return assert_fails_cleanly(runner.invoke(app, args))


@pytest.fixture
def files(tmp_path):
    """A binary file, a directory, a JSON/YAML list (wrong shape)."""
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 8)
    (tmp_path / "folder").mkdir()
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    (tmp_path / "list.json").write_text("[1, 2]\n")
    return tmp_path


# ----------------------------------------------------------------------------- unreadable files

@pytest.mark.parametrize("name,needle", [("binary.yaml", "not UTF-8"), ("folder", "directory"),
                                         ("list.yaml", "expected a mapping"), ("missing.yaml", "not found")])
def test_hardware_file_that_is_not_a_hardware_yaml(files, name, needle):
    assert needle in fails([*EST, "--hardware", str(files / name)])


def test_hardware_entries_of_the_wrong_shape(tmp_path):
    p = tmp_path / "h.yaml"
    p.write_text("chips: [1, 2]\n")
    assert "chips[0]" in fails([*EST, "--hardware", str(p)])
    p.write_text("chips: {name: x}\n")
    assert "must be a list" in fails([*EST, "--hardware", str(p)])


@pytest.mark.parametrize("name,needle", [("binary.yaml", "not UTF-8"), ("folder", "directory"),
                                         ("list.json", "expected a JSON object"), ("missing.json", "not found")])
def test_calibration_file_that_is_not_a_fit(files, name, needle):
    line = fails([*EST, "--calibration", str(files / name)])
    assert needle in line and "'none'" in line


@pytest.mark.parametrize("doc,needle", [
    ({"families": [1]}, "'families' must map"),
    ({"families": {"hopper": {"vals": {}}}}, "must be an object with 'values'"),
    ({"families": {"hopper": {"values": {"mem_eff": 0}}}}, "mem_eff = 0 lies outside (0, 1]"),
    ({"families": {"hopper": {"values": {"compute_eff": 1.5}}}}, "compute_eff = 1.5 lies outside"),
    ({"families": {"hopper": {"values": {"host_scale": -1.0}}}}, "host_scale = -1 lies outside"),
    ({"families": {"hopper": {"values": {"mem_eff": "fast"}}}}, "must be a finite number"),
    ({"families": {"hopper": {"values": {"speed": 1}}}}, "unknown parameter 'speed'"),
])
def test_calibration_values_out_of_range(tmp_path, doc, needle):
    p = tmp_path / "fit.json"
    p.write_text(json.dumps(doc))
    assert needle in fails([*EST, "--calibration", str(p)])


def test_names_longer_than_the_file_system_allows(tmp_path):
    assert "unknown model" in fails(["estimate", "--model", TOO_LONG, "--system", "h100-sxm"])
    assert "longer than the file system allows" in fails(["estimate", "--model", f"./{TOO_LONG}/config.json",
                                                         "--system", "h100-sxm"])
    assert "longer than the file system allows" in fails([*SIM, *SMALL, "--out", str(tmp_path / TOO_LONG)])
    assert "longer than the file system allows" in fails([*EST, "--calibration", str(tmp_path / TOO_LONG)])
    assert "longer than the file system allows" in fails([*EST, "--hardware", str(tmp_path / TOO_LONG)])


def test_a_directory_as_trace_says_so(tmp_path):
    line = fails([*SIM, "--trace", str(tmp_path)])
    assert "is a directory" in line and "not found" not in line


def test_echoed_values_are_cut_short():
    huge = "y" * 100_000
    for args in (["estimate", "--model", "llama-3.1-8b", "--system", huge],
                 ["estimate", "--model", huge, "--system", "h100-sxm"],
                 [*EST, "--set", f"h100-sxm.{huge}=1"],
                 [*SIM, "--rate", "1", "--arrivals", huge]):
        line = fails(args)
        assert len(line) < 600 and "..." in line, line[:300]


def test_shown_keeps_short_values_and_cuts_long_ones():
    assert shown("h100-sxm") == "h100-sxm"
    cut = shown("a" * 50 + "b" * 100)
    assert len(cut) == 80 and cut.startswith("a" * 50) and cut.endswith("b" * 26) and "..." in cut
    assert "\n" not in shown("two\nlines")


# ----------------------------------------------------------------------------- physical quantities

@pytest.mark.parametrize("override,needle", [
    ("h100-sxm.mem_bw_bytes_per_s=0", "must be positive"),
    ("h100-sxm.mem_bw_bytes_per_s=-3e12", "must be positive"),
    ("h100-sxm.peak_flops.bf16=0", "peak_flops.bf16 value must be positive"),
    ("h100-sxm.mem_bytes=80", "unit slip"),  # 80 bytes: GB meant
    ("nvlink4.latency_s=-1", "must be at least 0"),
    ("nvlink4.latency_s=2", "unit slip"),  # 2 s: microseconds meant
    ("nvlink4.bw_bytes_per_s_per_dir=0", "must be positive"),
])
def test_non_physical_overrides_are_refused_by_every_command(override, needle):
    for args in ([*EST, "--tp", "2"], [*SIM, "--tp", "2", *SMALL], ["chips"], ["systems"]):
        line = fails([*args, "--set", override])
        assert needle in line and override.split(".")[0] in line


def test_negative_rack_power_is_refused():
    line = fails(["systems", "--set", "gb200-nvl72.power_w=-5"])
    assert "gb200-nvl72" in line and "power_w" in line and "must be positive" in line


def _chip_yaml(tmp_path, **fields) -> Path:
    base = {"mem_bytes": "{value: 8.0e10, basis: spec, source: s}",
            "mem_bw_bytes_per_s": "{value: 3.0e12, basis: spec, source: s}",
            "peak_flops": "{bf16: {value: 1.0e15, basis: spec, source: s}}",
            "tdp_w": "{value: 700, basis: spec, source: s}"} | fields
    p = tmp_path / "chip.yaml"
    p.write_text("chips:\n  - name: mychip\n    kind: gpu\n    family: hopper\n    vendor: v\n    description: d\n"
                 "    memory_kind: hbm\n" + "".join(f"    {k}: {v}\n" for k, v in base.items()))
    return p


def test_unpublished_value_the_cost_model_needs_is_refused_at_load(tmp_path):
    p = _chip_yaml(tmp_path, mem_bw_bytes_per_s="{value: null, basis: estimate, source: s, note: unpublished}")
    line = fails(["estimate", "--model", "llama-3.1-8b", "--system", "mychip", "--hardware", str(p)])
    assert "mychip" in line and "mem_bw_bytes_per_s" in line and "unpublished" in line


def test_unpublished_peak_and_power_stay_allowed_until_used(tmp_path):
    p = _chip_yaml(tmp_path, tdp_w="{value: null, basis: estimate, source: s, note: unpublished}",
                   peak_flops="{bf16: {value: null, basis: estimate, source: s, note: unpublished}}")
    cat = load_catalog((p,))
    with pytest.raises(InputError, match="bf16 peak of chip 'mychip' is not published"):
        cat.chip("mychip").flops("bf16")


def test_unpublished_peak_a_deployment_needs_names_chip_and_field(tmp_path):
    """Never a KeyError/TypeError from inside the cost model."""
    p = _chip_yaml(tmp_path, peak_flops="{bf16: {value: null, basis: estimate, source: s, note: unpublished}}")
    line = fails(["estimate", "--model", "llama-3.1-8b", "--system", "mychip", "--hardware", str(p)])
    assert "bf16 peak of chip 'mychip' is not published" in line and "mychip.peak_flops.bf16=" in line


@pytest.mark.parametrize("value", [".inf", ".nan", "-1.0e12"])
def test_non_finite_or_negative_quantities_in_hardware_yaml(tmp_path, value):
    p = _chip_yaml(tmp_path, mem_bw_bytes_per_s=f"{{value: {value}, basis: spec, source: s}}")
    line = fails(["estimate", "--model", "llama-3.1-8b", "--system", "mychip", "--hardware", str(p)])
    assert "mychip" in line and "mem_bw_bytes_per_s" in line


def test_estimate_json_is_strict_json():
    r = runner.invoke(app, [*EST, "--json"])
    assert r.exit_code == 0

    def refuse(token):
        raise AssertionError(f"non-JSON token {token}")
    json.loads(r.stdout, parse_constant=refuse)


def test_json_writer_refuses_nan_naming_where():
    from infersim.results import json_text
    with pytest.raises(InputError, match=r"at 'phases\.decode\.time_s' \(nan\)"):
        json_text({"phases": {"prefill": {"time_s": 1.0}, "decode": {"time_s": math.nan}}})
    with pytest.raises(InputError, match=r"at 'xs\[1\]' \(inf\)"):
        json_text({"xs": [1.0, math.inf]})


# ----------------------------------------------------------------------------- config.json sizes

@pytest.mark.parametrize("field", ["num_hidden_layers", "hidden_size", "vocab_size", "num_attention_heads"])
def test_zero_sized_config_blames_the_field(tmp_path, field):
    cfg = json.loads(LLAMA_CONFIG.read_text())
    cfg[field] = 0
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    line = fails(["estimate", "--model", str(tmp_path / "config.json"), "--system", "h100-sxm"])
    assert f"'{field}' is 0" in line and "--pp" not in line


# ----------------------------------------------------------------------------- tensor parallel

def test_valid_tensor_parallel_degrees_hand_computed():
    # 32 heads / 8 KV heads: tp divides 32, and 8 % tp == 0 or tp % 8 == 0
    assert valid_tensor_parallel(load_model("llama-3.1-8b")) == [1, 2, 4, 8, 16, 32]
    # 232 heads / 8 KV heads: divisors of 232 = 1, 2, 4, 8, 29, 58, 116, 232; of those 29, 58, 116
    # neither divide 8 nor are multiples of it
    assert valid_tensor_parallel(load_model("falcon-180b")) == [1, 2, 4, 8, 232]
    # MLA (128 heads, latent cache on every chip): the divisors of 128
    assert valid_tensor_parallel(load_model("deepseek-r1")) == [1, 2, 4, 8, 16, 32, 64, 128]
    # 32 attention heads / 2 KV heads and 128 Mamba heads
    assert valid_tensor_parallel(load_model("nemotron-3-super")) == [1, 2, 4, 8, 16, 32]


@pytest.mark.parametrize("tp", ["3", "1024", "64"])
def test_tp_that_does_not_split_the_heads_is_refused(tp):
    line = fails([*EST, "--tp", tp])
    assert f"tp {tp}" in line and "1, 2, 4, 8, 16, 32" in line


def test_tp_check_also_guards_the_api_and_chip_counts():
    with pytest.raises(InputError, match="tp 3 does not split"):
        build_deployment(load_model("llama-3.1-8b"), "h100-sxm", tp=3)
    assert "tp 3" in fails([*EST, "--chips", "3"])  # tp follows from --chips


# ----------------------------------------------------------------------------- workload ranges and memory

@pytest.mark.parametrize("args,needle", [
    (["--rate", "1e-300"], "--rate 1e-300 requests/s is outside"),
    (["--rate", "1e300"], "is outside"),
    (["--arrivals", "gamma", "--rate", "1", "--cv", "1e9"], "--cv"),
])
def test_rates_outside_a_sane_range_are_refused(args, needle):
    assert needle in fails([*SIM, *args, "--requests", "3"])


def test_rate_scale_outside_a_sane_range_is_refused(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.68,374,44\n")
    assert "--rate-scale" in fails([*SIM, "--trace", str(trace), "--rate-scale", "1e-300"])


def test_huge_request_count_is_refused_before_allocating(monkeypatch):
    import infersim.capacity as capacity
    monkeypatch.setattr(capacity, "available_memory_bytes", lambda: 8_000_000_000)
    started = time.perf_counter()
    line = fails([*SIM, "--rate", "10", "--requests", "1000000000"])
    assert time.perf_counter() - started < 20  # refused up front, not after allocating gigabytes
    per = capacity.bytes_per_request()
    assert f"{per} bytes" in line and "8 GB is available" in line
    assert f"at most about {8_000_000_000 // per:,} requests" in line
    # the default of 10 requests per closed-loop user is checked too
    assert "the default of" in fails([*SIM, "--concurrency", "1000000000"])


def test_memory_estimate_bounds_what_the_simulator_uses():
    """The per-request estimate is an upper bound of the memory a run grows by per request
    (tracemalloc slope between two sizes), and not a gross overestimate either."""
    import tracemalloc

    from infersim.capacity import bytes_per_request
    from infersim.serving.simulate import simulate
    from infersim.workload.synthetic import poisson, sampled_lengths
    dep = build_deployment(load_model("llama-3.1-8b"), "h100-sxm", replicas=8)

    def peak(n: int) -> int:
        tracemalloc.start()
        reqs = poisson(2000.0, n, sampled_lengths(64, n, 1, "fixed"), sampled_lengths(4, n, 2, "fixed"), 0)
        res = simulate(reqs, dep)
        import pyarrow as pa  # the Arrow copy --out makes
        from infersim.serving.metrics import REQUEST_COLUMNS
        table = pa.table({c: pa.array(getattr(res.records, c)) for c in REQUEST_COLUMNS})
        size = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        del table, res
        return size
    peak(500)  # warm caches (catalog, imports) outside the measurement
    slope = (peak(8000) - peak(2000)) / 6000
    assert slope <= bytes_per_request() <= 4 * slope, (slope, bytes_per_request())


# ----------------------------------------------------------------------------- results: never lose them

def _write(out: Path, *extra: str):
    return runner.invoke(app, [*SIM, *SMALL, "--out", str(out), *extra])


def test_existing_results_are_kept_unless_overwrite(tmp_path):
    out = tmp_path / "run"
    assert _write(out).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    line = assert_fails_cleanly(_write(out, "--seed", "1", "--length-dist", "uniform"))
    assert "already holds results" in line and "--overwrite" in line
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    r = _write(out, "--overwrite", "--length-dist", "uniform", "--seed", "1")
    assert r.exit_code == 0, (r.stderr, r.exception)
    assert sorted(p.name for p in out.iterdir()) == ["requests.parquet", "summary.json"]
    assert (out / "summary.json").read_bytes() != before["summary.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temporary left beside it


def test_overwrite_never_deletes_files_that_are_not_results(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    line = assert_fails_cleanly(_write(tmp_path, "--overwrite"))
    assert "holds other files (notes.txt)" in line
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_out_is_checked_before_the_run(tmp_path, monkeypatch):
    import infersim.serving.simulate as sim

    def must_not_run(*a, **kw):
        raise AssertionError("the simulation ran before --out was checked")
    monkeypatch.setattr(sim, "simulate", must_not_run)
    (tmp_path / "afile").write_text("x")
    assert "cannot write there" in assert_fails_cleanly(_write(tmp_path / "afile" / "run"))
    assert "is a file" in assert_fails_cleanly(_write(tmp_path / "afile"))
    deep = tmp_path / "new" / "deeper" / "run"
    monkeypatch.undo()
    assert _write(deep).exit_code == 0  # missing parents are created
    assert (deep / "summary.json").is_file()


def _records_and_summary(n: int, tag: float):
    import numpy as np

    from infersim.serving.metrics import RequestRecords
    t = np.arange(n, dtype=float)
    rec = RequestRecords(request_id=np.arange(n), arrival_s=t, first_token_s=t + 1, completion_s=t + 2,
                         input_tokens=np.full(n, 10), output_tokens=np.full(n, 5), replica=np.zeros(n, dtype=int))
    return rec, {"tag": tag, "requests": n}


def test_failure_between_the_two_files_leaves_the_old_results_intact(tmp_path, monkeypatch):
    import infersim.results as results
    from infersim.serving.metrics import write_results
    out = tmp_path / "run"
    write_results(out, *_records_and_summary(5, 1.0))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real, calls = results._write_file, []

    def second_fails(path, write):
        calls.append(path.name)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(path, write)
    monkeypatch.setattr(results, "_write_file", second_fails)
    with pytest.raises(OSError):
        write_results(out, *_records_and_summary(7, 2.0))
    assert calls == ["requests.parquet", "summary.json"]  # the parquet was written, then the failure
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_sigkill_mid_write_leaves_old_or_new_results_never_a_mix(tmp_path):
    """A writer killed after the new parquet is written but before the summary: the target still
    holds the old, complete pair."""
    from infersim.serving.metrics import write_results
    out = tmp_path / "run"
    write_results(out, *_records_and_summary(5, 1.0))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import infersim.results as results
        from test_bad_input import _records_and_summary
        from infersim.serving.metrics import write_results
        real = results._write_file
        def slow(path, write):
            real(path, write)
            if path.name == "requests.parquet":
                print("parquet written", flush=True)
                time.sleep(60)
        results._write_file = slow
        write_results({str(out)!r}, *_records_and_summary(7, 2.0))
    """)
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "parquet written"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_result_files_follow_the_umask(tmp_path, umask, mode):
    from infersim.serving.metrics import write_results
    old = os.umask(umask)
    try:
        write_results(tmp_path / "run", *_records_and_summary(3, 1.0))
    finally:
        os.umask(old)
    for p in (tmp_path / "run").iterdir():
        assert p.stat().st_mode & 0o777 == mode, (p.name, oct(p.stat().st_mode))
    assert (tmp_path / "run").stat().st_mode & 0o777 == 0o777 & ~umask


# ----------------------------------------------------------------------------- calibrate

def test_calibrate_writes_beside_the_user_never_into_the_package(tmp_path, monkeypatch):
    """Where calibrate writes, not what it fits: the first rows of the shipped CSV alone
    (--no-inferencex) keep it quick."""
    monkeypatch.chdir(tmp_path)
    rows = tmp_path / "rows.csv"
    rows.write_text("".join(MEASUREMENTS.read_text().splitlines(keepends=True)[:13]))
    shipped = (PACKAGE / "calibration" / "fit.json").read_bytes()
    r = runner.invoke(app, ["calibrate", "--no-inferencex", "--measurements", str(rows), "--json"])
    assert r.exit_code == 0, (r.stderr, r.exception)
    assert (tmp_path / "infersim-fit.json").is_file()
    assert (PACKAGE / "calibration" / "fit.json").read_bytes() == shipped
    # the written fit is accepted by --calibration
    r = runner.invoke(app, [*EST, "--calibration", "infersim-fit.json", "--json"])
    assert r.exit_code == 0 and "infersim-fit.json" in json.loads(r.stdout)["calibration"]
    # an existing file is kept unless --overwrite
    written = (tmp_path / "infersim-fit.json").read_bytes()
    line = fails(["calibrate", "--no-inferencex", "--measurements", str(rows)])
    assert "exists" in line and "--overwrite" in line
    assert (tmp_path / "infersim-fit.json").read_bytes() == written
    assert runner.invoke(app, ["calibrate", "--no-inferencex", "--measurements", str(rows), "--overwrite"]).exit_code == 0
    # never inside the package, not even with --overwrite
    line = fails(["calibrate", "--no-inferencex", "--measurements", str(rows), "--overwrite",
                  "--out", str(PACKAGE / "calibration" / "fit.json")])
    assert "commit" in line
    assert (PACKAGE / "calibration" / "fit.json").read_bytes() == shipped


# ----------------------------------------------------------------------------- bench script

@pytest.mark.parametrize("script,args,needle", [
    ("hetero_table.py", ["--requests", "0"], "--requests must be at least 1"),
    ("hetero_table.py", ["--out", "{tmp}/afile/table.md"], "cannot write there"),
    ("lpu_breakdown.py", ["--input", "0"], "--input must be at least 1"),
    ("lpu_breakdown.py", ["--out", "{tmp}/afile/table.md"], "cannot write there")])
def test_bench_tables_refuse_bad_arguments_before_running(tmp_path, script, args, needle):
    (tmp_path / "afile").write_text("x")
    args = [a.format(tmp=tmp_path) for a in args]
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent)}
    r = subprocess.run([sys.executable, str(REPO / "bench" / script), *args], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0]


# ----------------------------------------------------------------------------- found while trying every command

@pytest.mark.parametrize("slo", ["ttft_p99=1e300s", "tpot_p99=1e-10"])
def test_slo_durations_outside_a_sane_range(slo):
    assert "outside the sane range" in fails([*SIM, *SMALL, "--slo", slo])


def test_kv_block_larger_than_any_engine_offers():
    assert "--block-tokens 100,000,000 tokens is outside" in fails([*SIM, *SMALL, "--block-tokens", "100000000"])


@pytest.mark.parametrize("name,needle", [("binary.yaml", "not UTF-8"), ("folder", "directory"),
                                         ("list.yaml", "expected a mapping")])
def test_deployment_file_that_is_not_a_deployment(files, name, needle):
    for cmd in ("estimate", "simulate", "sensitivity"):
        args = [cmd, "--deployment", str(files / name), "--model", "gpt-oss-120b"]
        assert needle in fails(args + (SMALL if cmd == "simulate" else []))


def test_deployment_file_with_infinite_ratio(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text("name: x\nmode: afd\ngpu: {system: vr-nvl72, tp: 8}\nlpu: {system: lpx, racks_per_gpu_rack: .inf}\n"
                 "link: gpu-lpu-direct\n")
    assert "racks_per_gpu_rack" in fails(["estimate", "--deployment", str(p), "--model", "gpt-oss-120b"])


@pytest.mark.parametrize("name,needle", [("binary.yaml", "not UTF-8"), ("folder", "directory")])
def test_measurements_that_are_not_a_csv(files, name, needle):
    assert needle in fails(["validate", "--measurements", str(files / name)])
    assert needle in fails(["calibrate", "--measurements", str(files / name), "--out", str(files / "fit.json")])
    assert not (files / "fit.json").exists()


def test_unforeseen_file_and_memory_failures_still_give_one_line():
    """The CLI wrapper's safety net: an OSError or MemoryError no reader anticipated is one line too."""
    import typer

    from infersim.cli.common import fails_cleanly
    one = typer.Typer()

    @one.command()
    @fails_cleanly
    def boom(kind: str):
        if kind == "os":
            raise PermissionError(13, "Permission denied", "/some/where")
        raise MemoryError()
    line = assert_fails_cleanly(runner.invoke(one, ["os"]))
    assert "'/some/where'" in line and "permission denied" in line
    assert "out of memory" in assert_fails_cleanly(runner.invoke(one, ["memory"]))
