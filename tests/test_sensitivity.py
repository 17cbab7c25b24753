"""`infersim sensitivity` and `infersim.deployments.sensitivity`: what is swept, the baseline, the
order of the rows, physics checks (link latency, rack power), "does not fit" points, and the CLI
(--json, clean failure). Each sweep is a few dozen closed-form estimates (well under a second)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli_checks import assert_fails_cleanly
from deployment_by_hand import racks_and_power, system_power, system_power_w
from infersim.catalog.engines import load_engines
from infersim.catalog.hardware import load_catalog
from infersim.catalog.models import load_model
from infersim.deployments.sensitivity import METRICS, sensitivity
from infersim.modes import load_spec
from infersim.cli.main import app
from infersim.calibration.efficiency import DEFAULTS_FILE

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "deployments"
AFD = EXAMPLES / "vr-nvl72-lpx-afd.yaml"
LPX = EXAMPLES / "lpx.yaml"
POINT = dict(batch=32, input_len=2000, output_len=500)
runner = CliRunner()


@pytest.fixture(scope="module")
def afd_reports():
    """The sweeps at POINT with the sourced default efficiencies (defaults.json), not the refitted
    fit.json: which side binds at this point (the GPU->LPU->GPU chain, the GPUs) moves with every
    refit (with the MLPerf rows in the fit, the pooled GPU fit that Rubin falls back to makes the
    GPUs bind at the catalog link latency), and these tests check the physics of the chain."""
    from infersim.calibration.efficiency import load_calibration
    spec, model, defaults = load_spec(AFD), load_model("gpt-oss-120b"), load_calibration("none")
    return {m: sensitivity(spec, model, metric=m, calibration=defaults, **POINT)
            for m in ("tok_s_per_user", "tok_s_per_mw", "tok_s_per_rack", "output_tok_s")}


def _row(rep, name):
    hits = [r for r in rep.rows if r.name == name]
    assert hits, f"no row {name}: {[r.name for r in rep.rows]}"
    return hits[0]


def test_rows_are_uncertain_inputs_with_a_range(afd_reports):
    cat = load_catalog()
    for rep in afd_reports.values():
        assert rep.rows
        for r in rep.rows:
            assert r.basis in ("estimate", "assumption", "derived"), r
            assert r.low < r.high and r.low <= r.base <= r.high, r
            assert r.source
            entry, field = r.name.split(".", 1)
            if entry != "calibration":   # catalog rows name a real entry and field
                q = None
                for table in (cat.chips, cat.links, cat.systems):
                    if entry in table:
                        obj = table[entry]
                        q = obj.peak_flops[field.split(".")[1]] if field.startswith("peak_flops.") else getattr(obj, field)
                assert q is not None and (q.low, q.value, q.high) == (r.low, r.base, r.high), r


def test_swept_inputs_cover_the_plan(afd_reports):
    names = {r.name for r in afd_reports["tok_s_per_user"].rows}
    for expected in ("gpu-lpu-direct.latency_s", "gpu-lpu-direct.bw_bytes_per_s_per_dir", "lpx.power_w",
                     "vr-nvl72.power_w", "groq3-lpu.tdp_w", "groq3-c2c.latency_s", "nvlink6.latency_s",
                     "rubin.peak_flops.fp8", "calibration.groq3.layer_s", "calibration.rubin.host_scale"):
        assert expected in names
    # links the file does not use are not swept
    assert "gpu-lpu-ethernet-host.latency_s" not in names and "gpu-lpu-on-package.latency_s" not in names


def test_baseline_per_user_speed_lies_on_the_link_latency_line(tmp_path):
    """With a slow LPU layer pipeline (layer_s 40 us, twice the LPU kind's prior, in place of LP30's
    derived ~1.2 us, at which the GPUs bind here) one micro-batch's GPU->LPU->GPU chain sets the
    decode step at this point (batch 32, 2 micro-batches), and that chain crosses the link twice
    per FFN layer: gpt-oss-120b's config has 36 layers, each with an MoE block, so 72 crossings.
    TPOT = 1 / tok_s_per_user is then affine in the link latency with slope 72: the baseline
    (latency at its catalog value) and the two sweep ends must lie on that line. A baseline taken
    at another point or with another latency is off it."""
    from infersim.calibration.efficiency import load_calibration
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"families": {"groq3": {"values": {"layer_s": 4e-5}}}}))
    load_calibration.cache_clear()
    rep = sensitivity(load_spec(AFD), load_model("gpt-oss-120b"), calibration=load_calibration(str(path)), **POINT)
    load_calibration.cache_clear()
    r = _row(rep, "gpu-lpu-direct.latency_s")
    assert r.base == float(load_catalog().link("gpu-lpu-direct").latency_s.value)
    crossings = 2 * 36
    tpot_base, tpot_low, tpot_high = 1 / rep.baseline, 1 / r.metric_low, 1 / r.metric_high
    assert tpot_base - tpot_low == pytest.approx(crossings * (r.base - r.low), rel=1e-9)
    assert tpot_high - tpot_base == pytest.approx(crossings * (r.high - r.base), rel=1e-9)


def test_per_rack_and_per_mw_baselines_follow_the_files_racks_and_power(afd_reports):
    """Racks and watts counted here from the deployment file and the catalog's system files
    (1 NVL72 + 1 LPX rack, 210 + 160 kW): per rack = output / racks, per MW = output / MW. Sweeping
    only the LPX rack's power to the ends of its catalog range scales per-MW by the power ratio."""
    racks, power = racks_and_power(yaml.safe_load(AFD.read_text()))
    assert (racks, power) == (2, system_power_w("vr-nvl72") + system_power_w("lpx"))
    out = afd_reports["output_tok_s"].baseline
    assert afd_reports["tok_s_per_rack"].baseline == pytest.approx(out / racks, rel=1e-12)
    assert afd_reports["tok_s_per_mw"].baseline == pytest.approx(out / (power / 1e6), rel=1e-12)
    lpx = system_power("lpx")
    r = _row(afd_reports["tok_s_per_mw"], "lpx.power_w")
    assert (r.low, r.high) == (lpx["low"], lpx["high"])
    other = power - lpx["value"]
    assert r.metric_low == pytest.approx(out / ((other + lpx["low"]) / 1e6), rel=1e-12)
    assert r.metric_high == pytest.approx(out / ((other + lpx["high"]) / 1e6), rel=1e-12)


def test_link_latency_never_speeds_up_a_user(afd_reports):
    r = _row(afd_reports["tok_s_per_user"], "gpu-lpu-direct.latency_s")
    # never faster; here the GPUs bind at every swept latency (LP30's derived per-layer latency keeps
    # the chain short), so it may not move at all: the chain regime is checked on the line above
    assert r.fits and r.metric_high <= r.metric_low and r.swing >= 0


def test_rack_power_moves_per_mw_but_not_per_user(afd_reports):
    user = _row(afd_reports["tok_s_per_user"], "lpx.power_w")
    mw = _row(afd_reports["tok_s_per_mw"], "lpx.power_w")
    assert user.swing == pytest.approx(0.0, abs=1e-12)
    assert mw.swing > 0.05 and mw.metric_low > mw.metric_high   # more watts, fewer tokens per MW


def test_calibration_sweeps(afd_reports):
    rep = afd_reports["tok_s_per_user"]
    host = _row(rep, "calibration.rubin.host_scale")
    q = load_engines().quantity(load_spec(AFD).engine.name, "host_step_s")  # the file engine's stated range
    assert host.low == pytest.approx(host.base * q.low / q.value) and host.high == pytest.approx(host.base * q.high / q.value)
    assert host.metric_low >= host.metric_high  # more host work never speeds a user up
    layer = _row(rep, "calibration.groq3.layer_s")  # LP30's derived value, swept over its stated range
    derived = json.loads(DEFAULTS_FILE.read_text())["families"]["groq3"]["uncertainty"]["layer_s"]
    assert (layer.basis, layer.low, layer.high) == ("derived", derived["low"], derived["high"])
    assert layer.metric_low >= layer.metric_high  # the GPUs bind here: never faster, maybe equal


def test_rows_sorted_by_swing(afd_reports):
    for rep in afd_reports.values():
        swings = [r.swing for r in rep.rows]
        assert all(s is not None for s in swings)
        assert swings == sorted(swings, reverse=True)
        assert rep.most_sensitive is rep.rows[0]


def test_point_that_does_not_fit_is_reported_not_raised():
    # give the LPU's SRAM a range whose low end no longer holds gpt-oss-120b in two LPX racks
    cat = load_catalog().with_overrides(["groq3-lpu.mem_bytes=5e8", "groq3-lpu.mem_bytes.low=1e8",
                                         "groq3-lpu.mem_bytes.high=6e8"])
    rep = sensitivity(load_spec(LPX), "gpt-oss-120b", metric="tok_s_per_user", catalog=cat)
    r = _row(rep, "groq3-lpu.mem_bytes")
    assert not r.fits and r.metric_low is None and r.low_error.startswith("does not fit")
    assert r.high_error is None and r.metric_high is not None and r.swing is None
    assert rep.rows[0] is r and rep.breaking == [r]   # inputs that can break the deployment come first
    assert rep.to_dict()["does_not_fit"] == ["groq3-lpu.mem_bytes"]


def test_bad_metric_and_failing_baseline():
    with pytest.raises(ValueError, match="unknown metric"):
        sensitivity(load_spec(AFD), "gpt-oss-120b", metric="speed")
    with pytest.raises(ValueError, match="does not fit"):
        sensitivity(load_spec(AFD), "gpt-oss-120b", batch=100000, input_len=2000, output_len=500)
    assert set(METRICS) >= {"tok_s_per_user", "tok_s_per_mw", "ttft_s"}


def test_cli_json():
    r = runner.invoke(app, ["sensitivity", "--deployment", str(AFD), "--model", "gpt-oss-120b", "--batch", "32",
                            "--input", "2000", "--output", "500", "--json", "--top", "3"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    d = json.loads(r.stdout)
    assert d["metric"] == "tok_s_per_user" and d["baseline"] > 0 and d["swept"] > 3 and len(d["rows"]) == 3
    assert d["most_sensitive"]["name"] == d["rows"][0]["name"]
    assert {"name", "basis", "source", "low", "base", "high", "metric_low", "metric_high", "swing"} <= set(d["rows"][0])


def test_cli_table():
    r = runner.invoke(app, ["sensitivity", "--deployment", str(AFD), "--model", "gpt-oss-120b", "--metric", "tpot_s",
                            "--batch", "32", "--input", "2000", "--output", "500"])
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    assert "gpu-lpu-direct.latency_s" in r.stdout and "most sensitive: " in r.stdout


@pytest.mark.parametrize("args", [
    ["--deployment", "no-such-file.yaml"],
    ["--deployment", str(AFD), "--model", "gpt-oss-120b", "--metric", "speed"],
    ["--deployment", str(AFD), "--model", "gpt-oss-120b", "--top", "0"],
    ["--deployment", str(AFD), "--model", "gpt-oss-120b", "--batch", "100000"],
])
def test_cli_bad_input_fails_cleanly(args):
    assert_fails_cleanly(runner.invoke(app, ["sensitivity", *args]))


def test_cli_bad_file_fails_cleanly(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nmode: afd\n")
    line = assert_fails_cleanly(runner.invoke(app, ["sensitivity", "--deployment", str(bad)]))
    assert "needs a 'gpu' section" in line


def _fit_file(tmp_path, uncertainty) -> str:
    """A fit file whose pooled GPU fit (what Rubin falls back to) carries `uncertainty`."""
    values = {"compute_eff": 0.7, "mem_eff": 0.6, "host_scale": 2.0}
    entry = {"values": values} if uncertainty is None else {"values": values, "uncertainty": uncertainty}
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"families": {"pooled-gpu": entry}}))
    return str(path)


def test_fitted_values_are_swept_over_the_fits_range(tmp_path):
    """With the fit's uncertainty recorded, each fitted value is swept over that range (basis `fit`),
    not over the engine's prior; without it host_scale keeps its prior range and the efficiencies
    are not swept."""
    from infersim.calibration.efficiency import load_calibration
    spec, model = load_spec(AFD), load_model("gpt-oss-120b")
    ranges = {"compute_eff": (0.6, 0.8), "mem_eff": (0.55, 0.65), "host_scale": (1.0, 4.0)}
    fitted = load_calibration(_fit_file(tmp_path, {k: {"low": lo, "high": hi, "basis": "test"}
                                                   for k, (lo, hi) in ranges.items()}))
    rep = sensitivity(spec, model, calibration=fitted, **POINT)
    for name, (lo, hi) in ranges.items():
        r = _row(rep, f"calibration.rubin.{name}")
        assert (r.basis, r.low, r.high) == ("fit", lo, hi), r
        assert r.low <= r.base <= r.high
    load_calibration.cache_clear()
    prior = sensitivity(spec, model, calibration=load_calibration(_fit_file(tmp_path, None)), **POINT)
    host = _row(prior, "calibration.rubin.host_scale")
    q = load_engines().quantity(load_spec(AFD).engine.name, "host_step_s")
    assert host.basis == "assumption" and host.low == pytest.approx(2.0 * q.low / q.value)
    assert not [r for r in prior.rows if r.name.endswith(("compute_eff", "mem_eff"))]
    load_calibration.cache_clear()


def test_an_inverted_uncertainty_fails_cleanly(tmp_path):
    path = _fit_file(tmp_path, {"host_scale": {"low": 4.0, "high": 1.0}})
    line = assert_fails_cleanly(runner.invoke(app, ["sensitivity", "--deployment", str(AFD), "--model",
                                                    "gpt-oss-120b", "--calibration", path]))
    assert "uncertainty.host_scale has low 4 above high 1" in line
