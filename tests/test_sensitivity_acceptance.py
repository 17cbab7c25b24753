"""Speculative acceptance as a swept input of `deployments.sensitivity` (deployments/spec_acceptance.py):
which plans get the row, its range from the published figures (computed by hand here from
catalog/data/speculative.yaml's numbers), the physics of its ends, and that frontier verdicts can
name it. Each sweep is a few dozen closed-form estimates."""
from __future__ import annotations

import pytest

from infersim.catalog.models import load_model
from infersim.deployments.sensitivity import sensitivity
from infersim.deployments.spec import DeploymentSpec

GPU = {"system": "vr-nvl72", "racks": 1, "tp": 8, "precision": "fp8"}
POINT = dict(batch=8, input_len=2000, output_len=500)


def _spec(spec_part=None, mode="gpu", **extra) -> DeploymentSpec:
    body = {"name": "t", "mode": mode, "gpu": GPU, **extra}
    if spec_part is not None:
        body["spec"] = spec_part
    return DeploymentSpec.model_validate(body)


def _acceptance_rows(rep):
    return [r for r in rep.rows if r.name.startswith("spec.") and r.name.endswith(".acceptance_scale")]


def _tokens(vector) -> float:
    """Mean tokens per verification, by hand: 1 + a1 + a1 a2 + ..."""
    out, prod = 1.0, 1.0
    for a in vector:
        prod *= a
        out += prod
    return out


@pytest.fixture(scope="module")
def nemotron():
    return load_model("nemotron-3-super")


@pytest.fixture(scope="module")
def mtp_report(nemotron):
    return sensitivity(_spec({"method": "mtp", "k": 3}), nemotron, **POINT)


def test_gpu_mtp_plan_sweeps_the_generic_acceptance(mtp_report):
    rows = _acceptance_rows(mtp_report)
    assert [r.name for r in rows] == ["spec.mtp-generic.acceptance_scale"]
    r = rows[0]
    assert r.basis == "assumption" and r.fits
    assert r.low < r.base == 1.0 < r.high
    # less acceptance, fewer tokens per verification: slower per user
    assert r.metric_low < mtp_report.baseline < r.metric_high


def test_generic_range_spans_the_measured_drafters(mtp_report):
    """At k=3 the low end gives gpt-oss-120b EAGLE-3's published tokens per verification
    (1 + 0.58 + 0.31 + 0.16) and the high end DeepSeek's relaxed MTP3 (3.10); the cycle does not
    depend on acceptance, so tok/s per user scales with the decode's tokens per verification."""
    r = _acceptance_rows(mtp_report)[0]
    generic = [0.92, 0.66 / 0.92, 0.24 / 0.66]   # mtp-generic's conditional vector (1.92, 2.58, 2.82)
    low = _tokens([min(1.0, a * r.low) for a in generic])
    high = _tokens([min(1.0, a * r.high) for a in generic])
    assert low == pytest.approx(1 + 0.58 + 0.31 + 0.16, abs=1e-6)
    assert high == pytest.approx(3.10, abs=1e-6)
    # decode-only throughput per user moves no more than tokens per verification (prefill does not scale)
    assert r.metric_high / r.metric_low <= high / low + 1e-9
    assert r.metric_high / r.metric_low > 1.0


def test_measured_entry_is_swept_over_its_published_spread():
    """DeepSeek-V3's own MTP figures: the low end is the technical report's 85% second-token
    acceptance at k=1 (1.85 tokens per verification), the high end relaxed acceptance's 3.10 at k=3."""
    rep = sensitivity(_spec({"method": "mtp", "k": 1}, gpu={**GPU, "precision": "fp4"}), "deepseek-v3", **POINT)
    r = _acceptance_rows(rep)[0]
    assert r.name == "spec.deepseek-v3-mtp.acceptance_scale" and r.basis == "measurement"
    assert _tokens([0.92 * r.low]) == pytest.approx(1.85, abs=1e-6)
    assert _tokens([min(1.0, a * r.high) for a in (0.92, 0.66 / 0.92, 0.24 / 0.66)]) == pytest.approx(3.10, abs=1e-6)
    assert r.metric_low < rep.baseline < r.metric_high


def test_plan_without_spec_has_no_acceptance_row(nemotron):
    assert not _acceptance_rows(sensitivity(_spec(), nemotron, **POINT))


def test_users_own_acceptance_is_not_swept(nemotron):
    rep = sensitivity(_spec({"method": "mtp", "k": 2, "acceptance": [0.8, 0.6]}), nemotron, **POINT)
    assert not _acceptance_rows(rep)
    assert rep.rows  # the other inputs still are


def test_draft_default_is_swept_over_leviathans_range():
    spec = _spec({"method": "draft", "draft_model": "gpt-oss-20b", "draft_on": "gpu", "k": 4})
    r = _acceptance_rows(sensitivity(spec, "gpt-oss-120b", **POINT))[0]
    assert r.name == "spec.draft-default.acceptance_scale" and r.basis == "assumption"
    assert (0.7 * r.low, 0.7 * r.high) == pytest.approx((0.6, 0.8))
    assert r.metric_low < r.metric_high


def test_frontier_verdict_can_name_the_acceptance():
    from infersim.planner.frontier import run_frontier
    res = run_frontier("nemotron-3-super", 8192, 1024, only=["gpu-mtp-vr-nvl72", "gpu-vr-nvl72"], batches=(16, 64))
    lines = [s for v in res.verdicts for s in v.sensitive_to]
    assert any(s.startswith("spec.mtp-generic.acceptance_scale") for s in lines), lines


def test_measured_entry_without_a_published_spread_is_not_swept():
    """gpt-oss-120b's EAGLE-3 figures are one benchmark with no published spread: nothing to sweep."""
    rep = sensitivity(_spec({"method": "eagle", "k": 3}), "gpt-oss-120b", **POINT)
    assert not _acceptance_rows(rep)
