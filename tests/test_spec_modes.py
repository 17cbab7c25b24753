"""Speculative decoding with SRAM-resident drafts: LPU-only (mode `lpu` with a `spec:` section, as
Groq and Cerebras serve their speculative speeds), AFD with the target's MTP head (an AFD step of a
one-layer model) and AFD with a draft model on the LPX racks; the validation path for measured
speculative rows on LPU / wafer chips; every shipped example through estimate and simulate; bad input.

Expected figures are recomposed here from the pieces the cost model times on their own deployments
(a draft step, a verify step) with the cycle formula and the link written out by hand."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from cli_checks import assert_fails_cleanly
from deployment_by_hand import racks_and_power
from deployment_files import EXAMPLES, example, variant, write
from infersim.catalog.hardware import load_catalog
from infersim.catalog.models import load_model
from infersim.catalog.speculative import default_acceptance
from infersim.cli.main import app
from infersim.costmodel.afd import AFDStepCost
from infersim.costmodel.step import StepCost
from infersim.costmodel.work import Batch, batch_shape, model_windows
from infersim.deployments.run import simulate_plan
from infersim.estimate import estimate_plan
from infersim.errors import InputError
from infersim.mapping.deployment import weight_bytes_total
from infersim.modes import _MODES, build_plan, load_spec, modes, register
from infersim.validation.measurements import Measurement, read_measurements
from infersim.datasets import measurements_csv
from infersim.validation.scenarios import plan_row, predict
from infersim.calibration.efficiency import load_calibration
from infersim.workload.synthetic import closed_loop

runner = CliRunner()


_example, _write, _variant = example, write, variant


def _decode_shape(model, batch, past, new=1, span=1.0):
    return batch_shape(Batch(np.float64(batch), np.float64(new), np.float64(past), span), model_windows(model))


def _expected(acc, k):
    """Mean tokens per verification for a constant per-token acceptance: (1 - a^(k+1)) / (1 - a)."""
    return (1 - acc ** (k + 1)) / (1 - acc)


# ------------------------------------------------------------------------------------------------
# 1. LPU-only speculative decoding
# ------------------------------------------------------------------------------------------------


def test_lpu_spec_units_split_racks_by_weight_bytes():
    d = _example("lpx-spec")
    plan = build_plan(load_spec(EXAMPLES / "lpx-spec.yaml"))
    target, draft = plan.pool("both").deployment, plan.pool("draft").deployment
    model, dmodel = load_model(d["model"]), load_model(d["spec"]["draft_model"])
    chip_sram = 5.0e8  # LP30 SRAM (catalog chips/groq3-lpu.yaml)
    wt, wd = weight_bytes_total(model, target.plan), weight_bytes_total(dmodel, draft.plan)
    # by hand: 70B + 8B at 8-bit weights need ~> 140 + 16 chips: one 256-chip LPX rack per unit, 2 racks -> 2 units
    per_t, per_d = target.chips_per_replica, draft.chips_per_replica
    assert per_t + per_d == 256 and target.par.replicas == draft.par.replicas == 2
    assert per_t * chip_sram > wt and per_d * chip_sram > wd
    assert per_d == pytest.approx(256 * wd / (wt + wd), abs=1)  # SRAM shared in proportion to the weights
    assert plan.racks == {"lpu": 2.0}


def test_lpu_spec_cycle_recomposed_by_hand():
    d = _example("lpx-spec")
    plan = build_plan(load_spec(EXAMPLES / "lpx-spec.yaml"))
    pool = plan.pool("both")
    timer, target, draft = pool.timer, pool.deployment, plan.pool("draft").deployment
    k, acc = d["spec"]["k"], 0.7  # the draft-model default acceptance (Leviathan et al. 2023 mid-range)
    batch, past = 4, 1000
    c2c = load_catalog().link("groq3-c2c")  # both pipelines in one LPX rack's C2C domain
    assert timer.link.name == c2c.name
    verify = float(StepCost(target).total(_decode_shape(target.model, batch, past, new=k + 1)))
    draft_step = float(StepCost(draft).total(_decode_shape(draft.model, batch, past)))
    # two crossings of 4-byte token ids, k + 1 per sequence each, one hop apiece
    link = 2 * batch * (k + 1) * 4 / (float(c2c.bw_bytes_per_s_per_dir.value) * draft.eff.link_eff) \
        + 2 * float(c2c.latency_s.value)
    parts = timer.cycle_parts(batch, past)
    assert float(parts["verify_s"]) == pytest.approx(verify, rel=1e-9)
    assert float(parts["draft_s"]) == pytest.approx(k * draft_step, rel=1e-9)
    assert float(parts["link_s"]) == pytest.approx(link, rel=1e-9)
    assert float(timer.time_per_token(batch, past)) == pytest.approx((k * draft_step + link + verify) /
                                                                      _expected(acc, k), rel=1e-9)


def test_lpu_spec_beats_plain_decode_only_with_acceptance(tmp_path):
    """Drafting pays when drafts are accepted: at acceptance 0 a cycle yields one token at the cost
    of k draft steps plus a verify (slower than plain decoding); per-user speed rises with acceptance."""
    plain = build_plan(load_spec(_variant(tmp_path, "lpx-spec", spec=None, name="plain")))
    t_plain = float(plain.pool("both").timer.total(_decode_shape(plain.model, 1, 1000)))
    speeds = []
    for a in (0.0, 0.5, 0.8, 0.95):
        plan = build_plan(load_spec(_variant(tmp_path, "lpx-spec", spec={"acceptance": a})))
        speeds.append(1 / float(plan.pool("both").timer.time_per_token(1, 1000)))
    assert speeds[0] < 1 / t_plain
    assert all(b > a for a, b in zip(speeds, speeds[1:]))


def test_lpu_spec_head_is_a_stage_of_the_target_pipeline(tmp_path):
    """An EAGLE head on an LPU target: no chips of its own, one layer's chips; the hidden state
    crosses the C2C link with the token ids; published EAGLE acceptance by default."""
    plan = build_plan(load_spec(_variant(tmp_path, "lpx-spec", spec={"method": "eagle", "draft_model": None, "k": 3})))
    assert [p.role for p in plan.pools] == ["both"]
    timer, target = plan.pool("both").timer, plan.pool("both").deployment
    assert timer.draft.model.n_layers == 1
    assert timer.draft.chips_per_replica == max(1, round(target.chips_per_replica / target.model.n_layers))
    assert timer.handoff_bytes == 4 * 4 + target.model.hidden * target.plan.act_bytes
    entry = default_acceptance("eagle", target.model.name)
    assert timer.acceptance == pytest.approx(entry.conditional()[:3])


# ------------------------------------------------------------------------------------------------
# 2. Measured speculative rows on LPU / wafer chips take the LPU-only speculative mode's path
# ------------------------------------------------------------------------------------------------


def _groq_row(**kw) -> Measurement:
    """A Groq-style published speculative speed: Llama 3.3 70B on GroqCloud's speculative endpoint
    at batch 1 (the value is illustrative; this test compares paths, not errors)."""
    base = dict(id="G1", model="llama-3.3-70b", chip="groq-lpu-v1", n_chips=576, precision="mixed",
                scenario="single_stream", input_len=1000, output_len=500, batch=None, concurrency=None,
                request_rate=None, spec_decode="yes", metric="tok_s_per_user", stat="value", value=1665.0,
                unit="tok/s/user", software="GroqCloud (specdec)", notes="draft unpublished")
    return Measurement(**{**base, **kw})


def test_groq_speculative_row_is_predicted_by_the_lpu_speculative_mode(tmp_path):
    cat, cal = load_catalog(), load_calibration()
    row = _groq_row()
    rp = plan_row(row, cat, cal)
    predicted = float(predict(rp))
    draft_chips = rp.spec.draft.chips_per_replica
    # the same layout as a deployment file: 576 target chips, the draft pipeline beside them
    d = {"name": "groq-spec", "mode": "lpu", "model": "llama-3.3-70b",
         "lpu": {"system": "groq-lpu-v1", "racks": 576 + draft_chips, "chips": 576, "precision": "mixed"},
         "spec": {"method": "draft", "draft_model": "llama-3.1-8b", "k": 4, "acceptance": 0.7,
                  "draft_chips": draft_chips}}
    plan = build_plan(load_spec(_write(tmp_path, d)), calibration=cal)
    timer = plan.pool("both").timer
    assert 1 / float(timer.time_per_token(1, 1000, 499)) == pytest.approx(predicted, rel=1e-12)
    est = estimate_plan(plan, batch=1, input_len=1000, output_len=500)
    assert est["tok_s_per_user"] == pytest.approx(predicted, rel=1e-9)
    # ... and speculative decoding is faster than the same row without it (acceptance 0.7, k 4)
    plain = float(predict(plan_row(_groq_row(spec_decode="no"), cat, cal)))
    assert predicted > plain


def test_validate_with_a_head_deployment_file_predicts_rows_as_the_mode_does(tmp_path):
    """`validate --deployment` with an LPU file whose spec: is an EAGLE head: an unpublished row's
    draft is that head (published EAGLE acceptance), timed as mode lpu times the same layout."""
    from infersim.validation.report import validate
    header = ("id,model,chip,n_chips,precision,scenario,input_len,output_len,batch,concurrency,request_rate,"
              "spec_decode,metric,stat,value,unit,software,trust,source,notes")
    csv = tmp_path / "rows.csv"
    csv.write_text(header + "\nG1,llama-3.3-70b,groq-lpu-v1,576,mixed,single_stream,1000,500,,,,yes,tok_s_per_user,"
                   "value,1665,tok/s/user,GroqCloud,medium,illustrative,draft unpublished\n")
    d = {"name": "groq-eagle", "mode": "lpu", "model": "llama-3.3-70b",
         "lpu": {"system": "groq-rack-v1", "racks": 8, "chips": 576, "precision": "mixed"},  # 8 x 72 chips
         "spec": {"method": "eagle"}}
    spec = load_spec(write(tmp_path, d))
    cal = load_calibration()
    rep = validate(csv, calibration=cal, method="analytical", deployment=spec)
    (row,) = rep.rows
    timer = build_plan(spec, calibration=cal).pool("both").timer
    assert timer.draft.model.n_layers == 1  # the head
    assert row.predicted == pytest.approx(1 / float(timer.time_per_token(1, 1000, 499)), rel=1e-12)


def test_cerebras_speculative_row_drafts_on_its_own_wafer_over_the_wafer_link():
    cat, cal = load_catalog(), load_calibration()
    row = next(r for r in read_measurements(measurements_csv()) if r.id == "M243")
    rp = plan_row(row, cat, cal)
    timer = rp.spec.timer(rp.layouts[0])
    assert timer.draft.chip.kind == "wafer" and timer.link.name == "cerebras-swarmx"
    assert float(predict(rp)) == pytest.approx(1 / float(timer.time_per_token(1, rp.input_len, rp.output_len - 1)))


# ------------------------------------------------------------------------------------------------
# 3. AFD with speculative decoding
# ------------------------------------------------------------------------------------------------


def test_afd_mtp_verifies_with_the_afd_step_and_drafts_with_a_one_layer_afd_step():
    d = _example("vr-nvl72-lpx-afd-mtp")
    plan = build_plan(load_spec(EXAMPLES / "vr-nvl72-lpx-afd-mtp.yaml"))
    timer = plan.decode_pool.timer
    assert isinstance(timer.target_cost, AFDStepCost) and isinstance(timer.draft_cost, AFDStepCost)
    assert timer.draft_cost.n_ffn == 1 and timer.target_cost.n_ffn == 61  # DeepSeek-R1: 3 dense + 58 MoE FFNs
    k = d["spec"]["k"]
    entry = default_acceptance("mtp", "deepseek-r1")
    assert timer.acceptance == pytest.approx(entry.conditional()[:k])
    batch, past = 2, 2000
    parts = timer.cycle_parts(batch, past)
    verify = float(timer.target_cost.total(_decode_shape(timer.target_cost.afd.attention.model, batch, past, k + 1)))
    assert float(parts["verify_s"]) == pytest.approx(verify, rel=1e-12)
    assert float(parts["link_s"]) == 0.0  # the head's crossings are inside its own AFD step
    # one drafted token (one layer) costs less than a 61-layer AFD step
    assert float(parts["draft_s"]) / k < float(timer.target_cost.total(_decode_shape(
        timer.target_cost.afd.attention.model, batch, past)))


def test_afd_mtp_faster_per_user_than_afd_alone(tmp_path):
    spec_plan = build_plan(load_spec(EXAMPLES / "vr-nvl72-lpx-afd-mtp.yaml"))
    plain_plan = build_plan(load_spec(_variant(tmp_path, "vr-nvl72-lpx-afd-mtp", spec=None)))
    s = estimate_plan(spec_plan, batch=1, input_len=1000, output_len=500)
    p = estimate_plan(plain_plan, batch=1, input_len=1000, output_len=500)
    assert s["tok_s_per_user"] > p["tok_s_per_user"]


def test_afd_lpx_draft_takes_chips_beside_the_ffn_pool():
    d = _example("vr-nvl72-lpx-afd-spec")
    plan = build_plan(load_spec(EXAMPLES / "vr-nvl72-lpx-afd-spec.yaml"))
    ffn, draft = plan.pool("ffn").deployment, plan.pool("draft").deployment
    lpx_chips = 256 * d["lpu"]["racks_per_gpu_rack"]  # catalog systems/lpx.yaml
    units = plan.summary["afd"]["lpu_pools"]
    assert units * ffn.chips_per_replica + draft.n_chips <= lpx_chips
    assert draft.chips_per_replica * 5.0e8 > weight_bytes_total(draft.model, draft.plan)  # its weights fit its SRAM
    timer = plan.decode_pool.timer
    assert isinstance(timer.target_cost, AFDStepCost) and timer.link.name == d["link"]
    assert plan.racks == {"gpu": 1, "lpu": 1}  # the draft adds no racks


def test_afd_draft_that_does_not_fit_the_lpx_racks_is_refused(tmp_path):
    with pytest.raises(InputError, match="draft model llama-3.1-70b needs .* raise lpu.racks_per_gpu_rack"):
        build_plan(load_spec(_variant(tmp_path, "vr-nvl72-lpx-afd-spec", spec={"draft_model": "llama-3.1-70b"})))


def test_spec_timer_generalisation_keeps_gpu_modes_unchanged():
    """A SpecDecodeCost given its own StepCosts as verify / drafter timers times cycles exactly as the
    default (the GPU modes' numbers do not move with the generalisation)."""
    from infersim.costmodel.specdec import SpecDecodeCost
    plan = build_plan(load_spec(EXAMPLES / "gb200-nvl72-pd-mtp.yaml"))
    t = plan.decode_pool.timer
    same = SpecDecodeCost(t.target, t.draft, t.k, t.acceptance, t.link, verify=StepCost(t.target),
                          drafter=StepCost(t.draft))
    for b, past in ((1, 500), (64, 4000)):
        assert float(same.cycle(b, past)) == float(t.cycle(b, past))


# ------------------------------------------------------------------------------------------------
# 4. Every shipped example runs through estimate and a tiny simulation
# ------------------------------------------------------------------------------------------------

SHIPPED = sorted(p.stem for p in EXAMPLES.glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_example_estimates_and_simulates(name):
    d = _example(name)
    model = load_model(d.get("model") or "gpt-oss-120b")
    plan = build_plan(load_spec(EXAMPLES / f"{name}.yaml"), model)
    if d["mode"] != "pd":  # deployment_by_hand counts racks of gpu / afd / spec / lpu files
        racks, power = racks_and_power(d)
        assert plan.total_racks == racks and plan.power_w == pytest.approx(power)
    est = estimate_plan(plan, batch=4, input_len=256, output_len=32)
    assert est["tpot_s"] > 0 and est["output_tok_s"] > 0 and math.isfinite(est["tok_s_per_user"])
    res = simulate_plan(plan, closed_loop(2, 4, 128, 16))
    assert res.summary["requests_completed"] == 4
    assert res.summary["output_tok_s"] == pytest.approx(4 * 16 / res.summary["duration_s"], rel=1e-9)


@pytest.mark.parametrize("name", ["lpx-spec", "vr-nvl72-lpx-afd-mtp", "vr-nvl72-lpx-afd-spec"])
def test_new_examples_run_from_the_command_line(name):
    path = str(EXAMPLES / f"{name}.yaml")
    r = runner.invoke(app, ["estimate", "--deployment", path, "--batch", "2", "--input", "256", "--output", "32",
                            "--json"])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert json.loads(r.stdout)["spec"]["expected_tokens_per_verify"] > 1
    r = runner.invoke(app, ["simulate", "--deployment", path, "--concurrency", "2", "--requests", "4",
                            "--input-len", "128", "--output-len", "16", "--quiet", "--json"])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    assert json.loads(r.stdout)["requests_completed"] == 4
    r = runner.invoke(app, ["validate", "--deployment", path, "--measurements-only", "--method", "analytical",
                            "--json"])
    assert r.exit_code == 0, (r.stdout, r.stderr)


# ------------------------------------------------------------------------------------------------
# 5. Bad input: one line, exit code 2
# ------------------------------------------------------------------------------------------------


def _fails(path, match: str):
    r = runner.invoke(app, ["estimate", "--deployment", str(path), "--batch", "1"])
    line = assert_fails_cleanly(r)
    assert match in line, line


def test_spec_section_in_a_mode_that_reads_none_is_refused(tmp_path):
    modes()  # the shipped modes first, then one that declares no `takes`
    register("no-spec-test", needs=("gpu",), description="test")(lambda ctx: None)
    try:
        _fails(_variant(tmp_path, "vr-nvl72", mode="no-spec-test",
                        spec={"method": "draft", "draft_model": "llama-3.1-8b", "draft_on": "gpu"}),
               "mode 'no-spec-test' cannot use a 'spec' section; drop it or pick a mode that does (afd, gpu, lpu, pd, "
               "spec)")
    finally:
        _MODES.pop("no-spec-test")


@pytest.mark.parametrize("base, changes, match", [
    # a spec section the mode cannot use as given
    ("lpx-spec", {"spec": {"draft_on": "gpu"}}, "mode lpu has no GPUs"),
    ("vr-nvl72-lpx-afd-spec", {"spec": {"draft_on": "gpu"}}, "mode afd has its GPUs busy"),
    ("vr-nvl72-lpx-afd-mtp", {"model": "gpt-oss-120b"}, "has no MTP layers"),
    # a draft that does not fit the LPX chips
    ("vr-nvl72-lpx-afd-spec", {"spec": {"draft_model": "llama-3.1-70b"}}, "raise lpu.racks_per_gpu_rack"),
    ("lpx-spec", {"lpu": {"racks": 1}, "model": "llama-3.1-405b"}, "set lpu.racks to at least"),
    ("lpx-spec", {"spec": {"draft_chips": 2}}, "spec.draft_chips 2"),
    # k / acceptance out of range
    ("lpx-spec", {"spec": {"k": 0}}, "field 'spec.k': Input should be greater than or equal to 1"),
    ("lpx-spec", {"spec": {"k": 40}}, "field 'spec.k': Input should be less than or equal to 32"),
    ("vr-nvl72-lpx-afd-spec", {"spec": {"acceptance": 1.5}}, "outside [0, 1]"),
    ("vr-nvl72-lpx-afd-mtp", {"spec": {"acceptance": [0.9, 0.8]}}, "acceptance has 2 entries but k is 3"),
    ("vr-nvl72-lpx-afd-mtp", {"spec": {"k": 9}}, "covers 5 drafted positions"),
])
def test_bad_speculative_input_is_one_line(tmp_path, base, changes, match):
    _fails(_variant(tmp_path, base, **changes), match)


def test_afd_verify_step_reports_the_bound_that_sets_it():
    """AFD + MTP: `estimate --json` says which AFD bound sets the verify step (k + 1 tokens per
    sequence); the verify time of the cycle is that bound, and every other bound is no larger."""
    res = CliRunner().invoke(app, ["estimate", "--deployment", str(EXAMPLES / "vr-nvl72-lpx-afd-mtp.yaml"), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)["spec"]
    bounds = s["verify_bounds_s"]
    assert set(bounds) >= {"chain", "gpu", "link", "lpu"}
    assert bounds[s["verify_binding"]] == max(bounds.values())
    assert s["verify_s"] == pytest.approx(max(bounds.values()), rel=1e-9)


@pytest.mark.parametrize("name", ["vr-nvl72-lpx-afd-mtp", "vr-nvl72-lpx-afd-spec", "vr-nvl72-lpx-spec"])
def test_a_speculative_cycle_splits_the_verify_step_by_chip_kind_and_waits_for_the_draft(name):
    # each kind's activities cover its whole cycle (the link only its busy part); the verify step's
    # split, scaled to the verify share, plus the wait for the draft and its link crossing
    spec = load_spec(EXAMPLES / f"{name}.yaml")
    plan = build_plan(spec, None if spec.model else load_model("gpt-oss-120b"))  # the example's README model
    timer = plan.decode_pool.timer
    step = timer.decode_step(8.0, 2000.0, 1.0)
    parts = step.details["spec"]
    cycle = parts["cycle_s"]
    assert cycle == pytest.approx(parts["draft_s"] + parts["link_s"] + parts["verify_s"])
    target = timer.target.chip.kind
    verify = step.shares[target]
    assert sum(verify.values()) == pytest.approx(1.0)
    assert verify["waiting_for_draft"] == pytest.approx((parts["draft_s"] + parts["link_s"]) / cycle)
    assert "verify" not in verify  # the target's own categories (compute, memory, ...), not one lump
    for kind, acts in step.shares.items():
        assert all(v >= 0 for v in acts.values())
        assert sum(acts.values()) == pytest.approx(1.0) if kind != "link" else sum(acts.values()) <= 1.0 + 1e-9
