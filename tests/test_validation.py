"""Validation against published measurements: the strict CSV reader, `validate` (every row is either
predicted or skipped with a reason, never silently dropped) and `calibrate` (held-out predictions
for every usable row, fitted values inside the search grid, fit written only where asked)."""
from __future__ import annotations

import csv
import json
import math
import pathlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from infersim.catalog.hardware import load_catalog
from infersim.cli.main import app
from infersim.calibration.efficiency import load_calibration
from infersim.datasets import measurements_csv
from infersim.errors import InputError
from infersim.validation import fit
from infersim.validation.measurements import REQUIRED_COLUMNS, read_measurements
from infersim.validation.report import validate
from infersim.catalog.models import load_model   # the estimate API: a second path to the same figures
from infersim.estimate import estimate
from infersim.validation.scenarios import plan_row, predict

runner = CliRunner()
SHARED_CSV = measurements_csv()  # the shipped copy of the shared calibration set

COLUMNS = list(REQUIRED_COLUMNS) + ["software", "trust", "source", "notes"]
L8B = "meta-llama/Llama-3.1-8B-Instruct"
L70B = "meta-llama/Llama-3.3-70B-Instruct"


def row(**kw) -> dict:
    base = {"id": "M1", "model": L8B, "chip": "h100-sxm", "n_chips": "1", "precision": "bf16",
            "scenario": "fixed_batch", "input_len": "128", "output_len": "128", "batch": "1", "spec_decode": "no",
            "metric": "tpot_ms", "stat": "mean", "value": "10", "unit": "ms"}
    base.update({k: str(v) for k, v in kw.items()})
    return base


def write_csv(path: Path, rows: list[dict], columns=COLUMNS) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow(r)
    return path


# ------------------------------------------------------------------------------------------------
# Measurement reader
# ------------------------------------------------------------------------------------------------


def test_reads_a_good_file_and_keeps_empty_fields_unknown(tmp_path):
    p = write_csv(tmp_path / "m.csv", [row(), row(id="M2", scenario="concurrency", batch="", concurrency="32",
                                               metric="output_tok_s", value="1234.5", unit="tok/s")])
    a, b = read_measurements(p)
    assert (a.id, a.n_chips, a.input_len, a.batch, a.value) == ("M1", 1, 128, 1, 10.0)
    assert a.line == 2 and b.line == 3
    # an empty field means unknown, never zero
    assert b.batch is None and b.request_rate is None and b.concurrency == 32


@pytest.mark.parametrize("bad_line", [2, 3])
def test_non_numeric_n_chips_names_file_line_and_column(tmp_path, bad_line):
    rows = [row(id="M1"), row(id="M2")]
    rows[bad_line - 2]["n_chips"] = "eight"
    p = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(InputError) as ei:
        read_measurements(p)
    msg = str(ei.value)
    assert "bad.csv" in msg and f"line {bad_line}" in msg and "column 'n_chips'" in msg and "eight" in msg


def test_line_numbers_count_physical_lines_of_quoted_multiline_fields(tmp_path):
    # row M1 spans lines 2-3 (a quoted newline in notes), so the bad row M2 is on line 4
    p = write_csv(tmp_path / "multi.csv", [row(id="M1", notes="first line\nsecond line"),
                                           row(id="M2", input_len="1k")])
    with pytest.raises(InputError, match=r"line 4, column 'input_len'"):
        read_measurements(p)


@pytest.mark.parametrize("dropped", ["metric", "n_chips", "value"])
def test_missing_column_is_named(tmp_path, dropped):
    p = write_csv(tmp_path / "m.csv", [row()], columns=[c for c in COLUMNS if c != dropped])
    with pytest.raises(InputError, match=f"missing column.*{dropped}"):
        read_measurements(p)


def test_empty_file_reports_missing_columns(tmp_path):
    p = tmp_path / "empty.csv"
    p.write_text("")
    with pytest.raises(InputError, match="missing column"):
        read_measurements(p)


@pytest.mark.parametrize("field,value,needle", [
    ("scenario", "batch_mode", "column 'scenario'"),
    ("metric", "tokens_per_joule", "column 'metric'"),
    ("precision", "fp6", "column 'precision'"),
    ("value", "0", "must be positive"),
    ("value", "-3", "must be positive"),
    ("value", "", "column 'value': empty"),
    ("value", "fast", "column 'value'"),
    ("batch", "2.5", "column 'batch'"),
    ("request_rate", "-1", "column 'request_rate'"),
    ("id", "", "column 'id': empty"),
])
def test_bad_field_is_rejected_with_line_and_column(tmp_path, field, value, needle):
    p = write_csv(tmp_path / "m.csv", [row(id="M0"), row(**{field: value})])
    with pytest.raises(InputError) as ei:
        read_measurements(p)
    assert needle in str(ei.value) and "line 3" in str(ei.value)


def test_duplicate_id_is_rejected(tmp_path):
    p = write_csv(tmp_path / "m.csv", [row(id="M7"), row(id="M8"), row(id="M7", value="11")])
    with pytest.raises(InputError, match=r"line 4, column 'id': duplicate id M7"):
        read_measurements(p)


def test_extra_unquoted_comma_is_rejected(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text(",".join(COLUMNS) + "\n" + ",".join(row().get(c, "") for c in COLUMNS) + ",stray,field\n")
    with pytest.raises(InputError, match="more fields than the header"):
        read_measurements(p)


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="cannot read measurements file"):
        read_measurements(tmp_path / "absent.csv")


@pytest.mark.parametrize("value", ["nan", "inf"])
def test_non_finite_value_is_rejected(tmp_path, value):
    p = write_csv(tmp_path / "m.csv", [row(value=value)])
    with pytest.raises(InputError, match="column 'value'"):
        read_measurements(p)


def test_unit_that_contradicts_the_metric_is_rejected(tmp_path):
    p = write_csv(tmp_path / "m.csv", [row(metric="tpot_ms", unit="s", value="0.01")])
    with pytest.raises(InputError, match="column 'unit'"):
        read_measurements(p)


def test_row_shorter_than_header_is_an_input_error(tmp_path):
    p = tmp_path / "short.csv"
    p.write_text(",".join(COLUMNS) + "\n" + ",".join(row().get(c, "") for c in COLUMNS[:14]) + "\n")
    with pytest.raises(InputError, match="line 2"):
        read_measurements(p)


def test_non_utf8_file_is_an_input_error(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes((",".join(COLUMNS) + "\n" + ",".join(row(notes="caf\xe9").get(c, "") for c in COLUMNS)
                   + "\n").encode("latin-1"))
    with pytest.raises(InputError):
        read_measurements(p)


# ------------------------------------------------------------------------------------------------
# validate: every row predicted or skipped with a reason
# ------------------------------------------------------------------------------------------------


def _csv_rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _check_conservation(rep: dict, csv_rows: list[dict]):
    for r in rep["rows"]:
        assert {"id", "chip", "metric", "measured", "predicted"} <= set(r)
        assert math.isfinite(r["predicted"]) and r["predicted"] > 0
    for s in rep["skipped"]:
        assert set(s) >= {"id", "reason"} and s["reason"].strip()
    seen = [r["id"] for r in rep["rows"]] + [s["id"] for s in rep["skipped"]]
    assert sorted(seen) == sorted(r["id"] for r in csv_rows), "a row was dropped or reported twice"
    by_id = {r["id"]: r for r in csv_rows}
    for r in rep["rows"]:  # the measured value is the published one, untouched
        assert r["measured"] == float(by_id[r["id"]]["value"])
        assert r["chip"] == by_id[r["id"]]["chip"] and r["metric"] == by_id[r["id"]]["metric"]
    return {s["id"]: s["reason"] for s in rep["skipped"]}


def test_validate_json_accounts_for_every_published_row():
    # the closed-form serving predictions keep this test fast; the simulated path has its own test
    r = runner.invoke(app, ["validate", "--json", "--method", "analytical", "--measurements-only", "--measurements", str(SHARED_CSV)])
    assert r.exit_code == 0, (r.stderr, r.exception)
    rep = json.loads(r.stdout)
    rows = _csv_rows(SHARED_CSV)
    skipped = _check_conservation(rep, rows)
    assert rep["rows"], "no published row could be predicted"
    # speculative-decoding rows are predicted with a draft/acceptance model whose inputs are listed
    spec = [x["id"] for x in rows if x["spec_decode"] == "yes"]
    by_id = {r["id"]: r for r in rep["rows"]}
    for rid in spec:
        got = by_id.get(rid)
        assert got is not None or "speculative decoding" in skipped.get(rid, ""), rid
        if got is not None:
            assert any("speculative decoding" in a for a in got["assumptions"])
            assert any("acceptance" in a for a in got["assumptions"])


def test_validate_synthetic_rows_are_predicted_or_skipped_with_reasons(tmp_path):
    rows = [
        row(id="A1"),
        row(id="A2", spec_decode="yes"),
        row(id="A3", model="acme/Nonexistent-1T"),
        row(id="A4", chip="tpu-v9"),
        row(id="A5", metric="total_tok_s", unit="tok/s", value="5000"),
        row(id="A6", scenario="server", input_len="", batch="", request_rate="2", metric="output_tok_s",
            unit="tok/s", value="500", notes="dataset=sharegpt"),
        row(id="A7", precision="int4"),
        row(id="A8", model="meta-llama/Llama-3.1-405B-Instruct", n_chips="1"),  # cannot fit one H100
        row(id="A9", scenario="single_stream", metric="ttft_ms", batch=""),
        row(id="A10", chip="groq-lpu-v1", n_chips="", precision="", model=L70B, scenario="single_stream",
            input_len="", output_len="", batch="", metric="tok_s_per_user", unit="tok/s/user", value="250"),
    ]
    p = write_csv(tmp_path / "m.csv", rows)
    rep = validate(p).to_dict()
    skipped = _check_conservation(rep, _csv_rows(p))
    assert "unknown model" in skipped["A3"]
    assert "tpu-v9" in skipped["A4"]
    assert "total_tok_s" in skipped["A5"]
    assert "input length" in skipped["A6"]
    assert "int4" in skipped["A7"]
    assert "does not fit" in skipped["A8"]
    predicted = {r["id"] for r in rep["rows"]}
    assert {"A1", "A2", "A9", "A10"} <= predicted
    # a speculative row without published draft or acceptance says what it assumed
    a2 = next(r for r in rep["rows"] if r["id"] == "A2")
    assert any("draft model unpublished" in a for a in a2["assumptions"])
    assert any("acceptance unpublished" in a for a in a2["assumptions"])
    # assumptions made for unpublished fields are reported with the row
    a10 = next(r for r in rep["rows"] if r["id"] == "A10")
    assert any("precision" in a for a in a10["assumptions"]) and any("input_len" in a for a in a10["assumptions"])


def test_validate_predictions_respect_units_and_the_roofline(tmp_path):
    """Llama-3.1-8B (8.03e9 bf16 weights = 16.06 GB) alone on an H100 (3.35 TB/s, 989 TFLOP/s bf16).
    Any token needs >= 16.06e9 / 3.35e12 = 4.79 ms of weight streaming, so TPOT >= 4.79 ms,
    a single user gets <= 208 tok/s, and TTFT of a 128-token prompt >= 4.79 ms too.

    Each metric is also checked against the static-batch `estimate` API (its own path to TTFT, TPOT
    and tokens/s) in seconds: the row's unit conversions and scenario arithmetic must agree with it.
    Two chips hold at least two independent copies, so they give at least twice one chip's tokens/s,
    and per chip is that total over the row's 2 chips."""
    floor_ms = 8_030_261_248 * 2 / 3.35e12 * 1e3  # = 4.794 ms
    two = dict(n_chips="2", batch="4")
    rows = [row(id="U1", metric="tpot_ms"), row(id="U2", metric="tok_s_per_user", unit="tok/s/user"),
            row(id="U3", metric="ttft_ms"), row(id="U4", metric="itl_ms"),
            row(id="U5", metric="output_tok_s", unit="tok/s", batch="4"),
            row(id="U6", metric="output_tok_s", unit="tok/s", **two),
            row(id="U7", metric="output_tok_s_per_chip", unit="tok/s/chip", **two)]
    rep = validate(write_csv(tmp_path / "m.csv", rows))
    pred = {r.id: r.predicted for r in rep.rows}
    assert set(pred) == {"U1", "U2", "U3", "U4", "U5", "U6", "U7"}
    assert pred["U1"] >= floor_ms and pred["U3"] >= floor_ms * 0.99  # prefill need not read the lm_head twice
    assert pred["U2"] <= 1e3 / floor_ms
    m = load_model("llama-3.1-8b")
    one = estimate(m, "h100-sxm", batch=1, input_len=128, output_len=128, precision="bf16")
    four = estimate(m, "h100-sxm", batch=4, input_len=128, output_len=128, precision="bf16")
    assert pred["U1"] == pytest.approx(one.tpot_s * 1e3, rel=1e-9)
    assert pred["U2"] == pytest.approx(one.tok_s_per_user, rel=1e-9)
    assert pred["U3"] == pytest.approx(one.ttft_s * 1e3, rel=1e-9)
    assert pred["U4"] == pytest.approx(one.tpot_s * 1e3, rel=1e-9)   # static batch: one token per step each
    assert pred["U5"] == pytest.approx(four.output_tok_s, rel=1e-9)
    assert pred["U6"] >= 2 * pred["U5"] * (1 - 1e-9)
    assert pred["U7"] == pytest.approx(pred["U6"] / 2, rel=1e-9)


def test_speculative_rows_gain_at_most_the_expected_tokens_per_step(tmp_path):
    """MTP-3 with 3.1 tokens per verification: each verification step costs at least a plain decode
    step (it processes 4 tokens per sequence plus 3 draft layers), so the per-user speed can rise
    by at most 3.1x over the same row without speculation, and must rise at all."""
    base = dict(model="deepseek-ai/DeepSeek-R1", chip="b200", n_chips="8", precision="fp8", scenario="single_stream",
                input_len="1000", output_len="2000", batch="", metric="tok_s_per_user", unit="tok/s/user", value="300")
    rows = [row(id="P1", spec_decode="no", **base),
            row(id="P2", spec_decode="yes", notes="MTP-3 drafting, acceptance rate ~3.1 tokens/step", **base)]
    got = {r.id: r for r in validate(write_csv(tmp_path / "m.csv", rows)).rows}
    assert 1.0 < got["P2"].predicted / got["P1"].predicted <= 3.1
    assert any("3.1 tokens per step" in a for a in got["P2"].assumptions)


def test_serving_rows_are_simulated_and_bounded_by_physics(tmp_path):
    """offline / concurrency rows go through the serving simulator. Llama-3.1-8B on one H100:
    every decode step streams the 16.06 GB of weights (>= 4.79 ms), so no engine can exceed
    max_batch / 4.79 ms output tokens per second; a closed loop of 8 users cannot beat 8 x the
    single-user speed of 1 / 4.79 ms either. Both layouts here need a real queue to form."""
    floor_s = 8_030_261_248 * 2 / 3.35e12
    rows = [row(id="S1", scenario="offline", batch="", input_len="256", output_len="256", metric="output_tok_s",
                unit="tok/s", value="10000", software="vLLM 0.10"),
            row(id="S2", scenario="concurrency", batch="", concurrency="8", input_len="512", output_len="64",
                metric="output_tok_s", unit="tok/s", value="1000", software="TensorRT-LLM 1.0")]
    rep = validate(write_csv(tmp_path / "m.csv", rows))
    got = {r.id: r for r in rep.rows}
    assert {r.method for r in rep.rows} == {"simulated"}
    assert 0 < got["S1"].predicted <= 256 / floor_s
    assert 0 < got["S2"].predicted <= 8 / floor_s
    assert any("vLLM defaults" in a for a in got["S1"].assumptions)
    assert any("TensorRT-LLM defaults" in a for a in got["S2"].assumptions)
    fast = {r.id: r for r in validate(write_csv(tmp_path / "m.csv", rows), method="analytical").rows}
    assert {r.method for r in fast.values()} == {"analytical"}
    with pytest.raises(InputError, match="unknown validation method"):
        validate(tmp_path / "m.csv", method="guess")


# ------------------------------------------------------------------------------------------------
# calibrate
# ------------------------------------------------------------------------------------------------


def _synthetic_rows() -> list[dict]:
    """A small made-up data set: enough H100 rows to fit the hopper family on its own, a few LPU
    and wafer rows (pooled fits). Values are plausible but invented; only structure is checked."""
    rows = []
    n_gpu = max(fit.MIN_FAMILY_ROWS, 6)
    for i in range(n_gpu):
        b = 2 ** i
        rows.append(row(id=f"G{i}", batch=b, value=f"{8.0 * (1 + b / 64):.3f}"))
    for i, inp in enumerate((512, 1024, 2048)):
        rows.append(row(id=f"L{i}", model=L70B, chip="groq-lpu-v1", n_chips="576", precision="", scenario="single_stream",
                        input_len=inp, output_len="256", batch="", metric="tok_s_per_user", unit="tok/s/user",
                        value=str(250 - 10 * i)))
    for i, out in enumerate((128, 512)):
        rows.append(row(id=f"W{i}", chip="cerebras-wse3", n_chips="1", scenario="single_stream", input_len="1000",
                        output_len=out, batch="", metric="tok_s_per_user", unit="tok/s/user", value=str(1800 + 100 * i)))
    rows.append(row(id="S1", spec_decode="yes"))
    return rows


def _kind_of_family(res) -> dict:
    kinds = {p.family: p.group for p in res.plans}
    return lambda fam: fam.split("-", 1)[1] if fam.startswith("pooled-") else kinds[fam]


def _check_fit(res, measurement_ids=None):
    """`measurement_ids`: the CSV's row ids when the fit also used InferenceX points (those are held
    out by configuration, recorded in the fit file, not in `heldout`)."""
    every = {p.row.id for p in res.plans}
    planned = every if measurement_ids is None else every & set(measurement_ids)
    assert set(res.heldout) == planned, "a planned row has no held-out prediction"
    assert all(math.isfinite(v) and v > 0 for v in res.heldout.values())
    # by source: every row whose kind has rows from another source (the rest have no fit to hold out from)
    assert set(res.heldout_grouped) <= every
    assert all(math.isfinite(v) and v > 0 for v in res.heldout_grouped.values())
    kind_of = _kind_of_family(res)
    for fam, entry in res.fit_file["families"].items():
        grid = fit.GRIDS[kind_of(fam)]
        assert set(entry["values"]) == set(grid)
        for name, v in entry["values"].items():
            assert float(np.min(grid[name])) <= v <= float(np.max(grid[name])), (fam, name, v)
        assert set(entry["rows"]) <= every


def test_calibrate_synthetic_subset(tmp_path, monkeypatch):
    written = []
    real_write = pathlib.Path.write_text

    def spy(self, *a, **kw):
        written.append(Path(self).resolve())
        return real_write(self, *a, **kw)

    monkeypatch.setattr(pathlib.Path, "write_text", spy)
    p = write_csv(tmp_path / "m.csv", _synthetic_rows())
    res = fit.calibrate(p)
    assert {s.id for s in res.skipped} == {"S1"}
    _check_fit(res)
    fams = res.fit_file["families"]
    assert {"pooled-gpu", "pooled-lpu", "pooled-wafer", "hopper"} <= set(fams)
    assert len(fams["hopper"]["rows"]) == max(fit.MIN_FAMILY_ROWS, 6)

    out = tmp_path / "fit.json"
    fit.write_fit(res, out)
    assert written and all(w == out.resolve() for w in written), "calibrate wrote outside the requested file"
    assert json.loads(out.read_text()) == json.loads(json.dumps(res.fit_file))
    # the written fit is what a later estimate picks up for that family
    cal = load_calibration(str(out))
    eff = cal.for_chip("gpu", "hopper")
    for name, v in fams["hopper"]["values"].items():
        assert getattr(eff, name) == v
    assert "hopper" in cal.provenance("gpu", "hopper")
    # a GPU family without rows falls back to the pooled GPU fit
    assert cal.for_chip("gpu", "cdna3").compute_eff == fams["pooled-gpu"]["values"]["compute_eff"]


def test_calibrate_cli_writes_only_to_out(tmp_path, monkeypatch):
    written = []
    real_write = pathlib.Path.write_text
    monkeypatch.setattr(pathlib.Path, "write_text",
                        lambda self, *a, **kw: (written.append(Path(self).resolve()), real_write(self, *a, **kw))[1])
    p = write_csv(tmp_path / "m.csv", _synthetic_rows())
    out = tmp_path / "sub.json"
    r = runner.invoke(app, ["calibrate", "--no-inferencex", "--measurements", str(p), "--out", str(out), "--json"])
    assert r.exit_code == 0, (r.stderr, r.exception)
    assert written == [out.resolve()]
    assert json.loads(r.stdout)["families"] == json.loads(out.read_text())["families"]


@pytest.fixture(scope="module")
def shipped_sets_fit():
    """calibrate on the packaged measurement set and InferenceX points (the shipped fit's inputs),
    computed once for the tests below (about a minute and a half)."""
    from infersim.datasets import inferencex_points, measurements_csv
    return fit.calibrate(measurements_csv(), inferencex=inferencex_points())


def test_calibrate_on_published_rows_cross_validates_every_usable_row(shipped_sets_fit):
    res = shipped_sets_fit
    rows = _csv_rows(SHARED_CSV)
    ids = {r["id"] for r in rows}
    _check_fit(res, ids)
    assert len([p for p in res.plans if p.row.id in ids]) + len(res.skipped) == len(rows)
    # a held-out prediction comes from a fit that did not see the row, so it is a genuine forecast
    assert len(res.heldout) == len([p for p in res.plans if p.row.id in ids]) > 0


def test_validate_scoped_to_a_deployment_uses_its_chips_and_spec_inputs(tmp_path):
    """--deployment keeps only rows measured on the file's chips; a speculative row that publishes
    neither draft nor acceptance takes them from the file's spec: section."""
    import yaml
    body = {"name": "wafer-spec", "mode": "spec", "gpu": {"system": "vr-nvl72", "tp": 8},
            "lpu": {"system": "cs3", "racks_per_gpu_rack": 4}, "link": "gpu-lpu-direct",
            "spec": {"draft_model": "llama-3.1-8b", "k": 3, "acceptance": 0.55}}
    f = tmp_path / "d.yaml"
    f.write_text(yaml.safe_dump(body))
    r = runner.invoke(app, ["validate", "--json", "--method", "analytical", "--measurements-only", "--deployment", str(f),
                            "--measurements", str(SHARED_CSV)])
    assert r.exit_code == 0, (r.stderr, r.exception)
    rep = json.loads(r.stdout)
    assert rep["rows"] and {x["chip"] for x in rep["rows"]} <= {"cerebras-wse3", "rubin"}
    spec_rows = [x for x in rep["rows"] if any("speculative decoding" in a for a in x["assumptions"])]
    assert spec_rows and all(any("0.55" in a and "wafer-spec" in a for a in x["assumptions"]) for x in spec_rows)
    empty = runner.invoke(app, ["validate", "--method", "analytical", "--measurements-only", "--deployment",
                                str(Path(__file__).resolve().parents[1] / "examples" / "deployments" / "lpx.yaml"),
                                "--measurements", str(SHARED_CSV)])
    assert empty.exit_code == 0 and "nothing to compare" in empty.stderr


# ------------------------------------------------------------------------------------------------
# held-out predictions come from fits that did not see their row
# ------------------------------------------------------------------------------------------------


def _outlier_set(tmp_path: Path) -> tuple[list[dict], Path]:
    """Four H100 rows (fewer than fit.MIN_FAMILY_ROWS, so one pooled fit; fewer than fit.FOLDS,
    so cross-validation leaves one row out at a time). Each measured value is the uncalibrated
    model's own prediction, except R4's offline throughput: half of it, an outlier that only a
    per-sequence overhead explains. R2 is the only compute-bound row. So the fits with and without
    R4 (or R2) differ, and their held-out predictions must differ from the in-sample ones."""
    rows = [row(id="R1", batch="1", metric="tpot_ms"),
            row(id="R2", batch="64", input_len="2048", metric="ttft_ms"),
            row(id="R3", batch="8", metric="tpot_ms"),
            row(id="R4", scenario="offline", batch="", input_len="128", output_len="128", metric="output_tok_s",
                unit="tok/s", software="vLLM 0.10")]
    scale = {"R4": 0.5}
    catalog, none = load_catalog(), load_calibration("none")
    for r, m in zip(rows, read_measurements(write_csv(tmp_path / "draft.csv", rows))):
        r["value"] = f"{float(predict(plan_row(m, catalog, none))) * scale.get(m.id, 1.0):.6g}"
    return rows, write_csv(tmp_path / "all.csv", rows)


def _fit_without(tmp_path: Path, rows: list[dict], rid: str):
    """(pooled GPU parameters, the H100 efficiency they give) of an ordinary fit of every row but
    `rid`, written to a file and loaded back as a user's --calibration would be."""
    res = fit.calibrate(write_csv(tmp_path / f"without-{rid}.csv", [r for r in rows if r["id"] != rid]))
    fit.write_fit(res, tmp_path / f"without-{rid}.json")
    eff = load_calibration(str(tmp_path / f"without-{rid}.json")).for_chip("gpu", load_catalog().chip("h100-sxm").family)
    return res.fit_file["families"]["pooled-gpu"]["values"], eff


def test_heldout_predictions_come_from_fits_without_their_row(tmp_path):
    assert fit.FOLDS >= 4 and fit.MIN_FAMILY_ROWS > 4, "the set below relies on leave-one-out and one pooled fit"
    rows, path = _outlier_set(tmp_path)
    res = fit.calibrate(path)
    fit.write_fit(res, tmp_path / "fit.json")
    full = load_calibration(str(tmp_path / "fit.json")).for_chip("gpu", load_catalog().chip("h100-sxm").family)
    catalog, none = load_catalog(), load_calibration("none")
    plans = {m.id: plan_row(m, catalog, none) for m in read_measurements(path)}
    for rid in ("R2", "R4"):
        params, without = _fit_without(tmp_path, rows, rid)
        assert res.fit_file["heldout_params"][rid] == pytest.approx(params, rel=1e-12)
        heldout = float(predict(plans[rid], without))
        in_sample = float(predict(plans[rid], full))
        assert res.heldout[rid] == pytest.approx(heldout, rel=1e-9)
        assert abs(heldout / in_sample - 1) > 0.05, f"{rid}: the fits with and without it agree"


def test_validate_reports_heldout_predictions_of_fits_without_their_row(tmp_path):
    """validate re-simulates a serving row's held-out prediction with its fold's parameters, and
    takes an analytical row's from the fit file; both must be the fit without the row, not the
    in-sample value."""
    from infersim.validation.simulated import simulate_row
    rows, path = _outlier_set(tmp_path)
    fit_file = tmp_path / "fit.json"
    fit.write_fit(fit.calibrate(path), fit_file)
    rep = {r.id: r for r in validate(path, calibration=load_calibration(str(fit_file))).rows}
    catalog, none = load_catalog(), load_calibration("none")
    plans = {m.id: plan_row(m, catalog, none) for m in read_measurements(path)}
    assert rep["R4"].method == "simulated" and rep["R2"].method == "analytical"
    _, without = _fit_without(tmp_path, rows, "R4")
    assert rep["R4"].heldout == pytest.approx(simulate_row(plans["R4"], without), rel=1e-9)
    _, without = _fit_without(tmp_path, rows, "R2")
    assert rep["R2"].heldout == pytest.approx(float(predict(plans["R2"], without)), rel=1e-9)
    for rid in ("R2", "R4"):
        assert abs(rep[rid].heldout / rep[rid].predicted - 1) > 0.05, rid


def test_shipped_fit_reproduces_from_the_shipped_measurements(shipped_sets_fit):
    """src/infersim/calibration/fit.json changes only through a commit that refits it: calibrate on
    the packaged measurement set and InferenceX points gives the same parameters, rows and held-out
    results."""
    from infersim.calibration.efficiency import FIT_FILE
    shipped = json.loads(FIT_FILE.read_text())
    if shipped.get("procedure", 1) != fit.PROCEDURE:
        pytest.skip(f"the shipped fit.json was written by fit procedure {shipped.get('procedure', 1)}, calibrate is "
                    f"now procedure {fit.PROCEDURE}: refit it (infersim calibrate, copied in by a commit)")
    refit = json.loads(json.dumps(shipped_sets_fit.fit_file))
    assert refit["command"] == shipped["command"] and refit["sets"] == shipped["sets"]
    assert refit["inferencex_configurations"] == shipped["inferencex_configurations"]
    for key in ("grids", "min_family_rows", "folds", "seed"):
        assert refit[key] == shipped[key], key
    assert refit["families"].keys() == shipped["families"].keys()
    for fam, entry in shipped["families"].items():
        assert refit["families"][fam]["rows"] == entry["rows"], fam
        assert refit["families"][fam]["values"] == pytest.approx(entry["values"], rel=1e-9), fam
    for kind in ("heldout", "heldout_grouped"):
        assert refit[f"{kind}_predictions"] == pytest.approx(shipped[f"{kind}_predictions"], rel=1e-9)
        assert refit[f"{kind}_params"].keys() == shipped[f"{kind}_params"].keys()
        for rid, params in shipped[f"{kind}_params"].items():
            assert refit[f"{kind}_params"][rid] == pytest.approx(params, rel=1e-9), (kind, rid)
    assert refit["source_groups"] == shipped["source_groups"]
    for fam, entry in shipped["families"].items():
        assert refit["families"][fam]["at_grid_edge"] == entry["at_grid_edge"], fam


def test_validate_table_output_prints_rows_without_a_held_out_prediction():
    """The printed table (not --json), as README's first command shows it: every row is printed,
    including rows with no held-out prediction (a family's only row of its source)."""
    r = runner.invoke(app, ["validate", "--method", "analytical", "--measurements-only", "--measurements", str(SHARED_CSV)])
    assert r.exit_code == 0, (r.output, r.exception)
    assert "predicted vs measured" in r.stdout and "Traceback" not in r.output
