"""MTP / EAGLE speculative decoding on the GPU, multi-worker P/D across nodes, and the MI355X chip.

Golden numbers are computed by hand here from the formulas' definitions and catalog inputs; the
physics checks compare a speculative step with plain decode steps timed independently."""
from __future__ import annotations

import numpy as np
import pytest

from infersim.calibration.efficiency import load_calibration
from infersim.catalog.hardware import load_catalog
from infersim.catalog.models import load_model
from infersim.catalog.speculative import acceptance_entries, default_acceptance
from infersim.costmodel.kvtransfer import kv_transfer_seconds
from infersim.costmodel.specdec import SpecDecodeCost, expected_tokens, expected_tokens_per_step, head_draft
from infersim.costmodel.step import StepCost
from infersim.costmodel.work import Batch, batch_shape
from infersim.deployments.options import spec_from_options
from infersim.deployments.run import simulate_plan
from infersim.deployments.spec import DecodePart, DeploymentSpec, GPUPart, SpecPart
from infersim.errors import InputError
from infersim.mapping.deployment import build_deployment
from infersim.modes import build_plan
from infersim.workload.synthetic import closed_loop

CAT = load_catalog()


@pytest.fixture(scope="module")
def r1():
    return load_model("deepseek-r1")


@pytest.fixture(scope="module")
def llama70():
    return load_model("llama-3.1-70b")


# ------------------------------------------------------------------------------------------------
# acceptance vectors
# ------------------------------------------------------------------------------------------------

def test_expected_tokens_of_a_vector_by_hand():
    # 1 + a1 + a1 a2 + a1 a2 a3
    assert expected_tokens([0.9, 0.5, 0.2]) == pytest.approx(1 + 0.9 + 0.9 * 0.5 + 0.9 * 0.5 * 0.2)  # 2.44
    assert expected_tokens([0.0, 1.0, 1.0]) == 1.0   # the first rejection ends the accepted prefix
    assert expected_tokens([1.0, 1.0, 0.0, 1.0]) == 3.0


@pytest.mark.parametrize("a", [0.0, 0.3, 0.7, 0.95])
@pytest.mark.parametrize("k", [1, 3, 6])
def test_constant_vector_equals_the_scalar_closed_form(a, k):
    closed = (1 - a ** (k + 1)) / (1 - a)
    assert expected_tokens([a] * k) == pytest.approx(closed)
    assert expected_tokens_per_step(a, k) == pytest.approx(closed)


def test_published_entries_reproduce_their_figures():
    for e in acceptance_entries():
        vec = e.conditional()
        assert all(0.0 <= a <= 1.0 for a in vec)
        if e.mean_tokens_by_k is not None:  # the mean tokens at each published k come back
            for k, mean in enumerate(e.mean_tokens_by_k, start=1):
                assert expected_tokens(vec[:k]) == pytest.approx(mean)
        else:  # the per-position shares are the products of the conditional acceptances
            assert np.cumprod(vec) == pytest.approx(e.accepted_share_by_position)
    # a model with its own entry gets it; another model the method's generic (assumed) one
    assert default_acceptance("mtp", "deepseek-r1").basis == "measurement"
    assert default_acceptance("mtp", "nemotron-3-super").basis == "assumption"


# ------------------------------------------------------------------------------------------------
# MTP on the GPU: physics of the multi-token verify step
# ------------------------------------------------------------------------------------------------

def test_mtp_verify_costs_more_than_one_decode_step_and_less_than_k_plus_1(r1):
    dep = build_deployment(r1, "hgx-b200", tp=8, precision="fp8", catalog=CAT)
    plain = StepCost(dep)
    k = 3
    timer = SpecDecodeCost(dep, head_draft(dep), k, 0.8, None)
    for batch, past in ((1, 1000), (16, 4000), (64, 2000)):
        parts = timer.cycle_parts(batch, past)
        one = float(plain.total(batch_shape(Batch(np.float64(batch), np.float64(1), np.float64(past)), plain.windows)))
        verify = float(parts["verify_s"])
        assert one < verify < (k + 1) * one, (batch, past)
        # each drafted token runs one decoder layer and the LM head: far less than a target step
        assert float(parts["draft_s"]) < k * one / 4


def test_mtp_speeds_up_single_user_decode_and_more_with_acceptance(r1):
    speeds = {}
    for acc in (0.0, 0.5, 0.9):
        spec = spec_from_options(CAT, system="hgx-b200", tp=8, precision="fp8", spec_method="mtp", spec_k=3,
                                 spec_acceptance=acc)
        plan = build_plan(spec, r1, CAT)
        speeds[acc] = 1.0 / plan.decode_pool.timer.time_per_token(1, 1000)
    plain = build_plan(spec_from_options(CAT, system="hgx-b200", tp=8, precision="fp8"), r1, CAT)
    plain_speed = 1.0 / float(plain.decode_pool.timer.decode_step(1, 1000, 1).seconds)
    assert speeds[0.0] < plain_speed < speeds[0.5] < speeds[0.9]


def test_spec_section_errors(r1, llama70):
    with pytest.raises(InputError, match="no MTP layers"):
        build_plan(spec_from_options(CAT, system="hgx-h100", tp=8, spec_method="mtp"), llama70, CAT)
    with pytest.raises(InputError, match="entries but k is"):
        spec_from_options(CAT, system="hgx-b200", tp=8, spec_method="mtp", spec_k=2, spec_acceptance=[0.9, 0.8, 0.7])
    with pytest.raises(InputError, match="covers 5 drafted positions"):
        build_plan(spec_from_options(CAT, system="hgx-b200", tp=8, spec_method="mtp", spec_k=6), r1, CAT)
    with pytest.raises(InputError, match="outside"):
        spec_from_options(CAT, system="hgx-b200", tp=8, spec_method="eagle", spec_acceptance=[0.9, 1.2])
    with pytest.raises(InputError, match="unknown"):
        spec_from_options(CAT, system="hgx-b200", tp=8, spec_method="medusa")
    with pytest.raises(ValueError, match="drafts on the target's GPUs"):
        SpecPart(method="mtp", draft_on="lpu")


# ------------------------------------------------------------------------------------------------
# multi-worker P/D across nodes
# ------------------------------------------------------------------------------------------------

def _pd_spec(**gpu):
    return DeploymentSpec(name="pd-test", mode="pd", gpu=GPUPart(system="hgx-h100", precision="fp8", **gpu),
                          prefill=DecodePart(tp=4), decode=DecodePart(tp=8))


def test_multi_worker_pd_conserves_requests_and_uses_every_worker(llama70):
    # 3 racks = 24 H100: 2 prefill workers of 4 GPUs, 2 decode workers of 8 (the rest idle)
    plan = build_plan(_pd_spec(racks=3, prefill_replicas=2, decode_replicas=2), llama70, CAT)
    prefill, decode = plan.serving_pools()
    assert (prefill.replicas, prefill.deployment.chips_per_replica) == (2, 4)
    assert (decode.replicas, decode.deployment.chips_per_replica) == (2, 8)
    n = 48
    res = simulate_plan(plan, closed_loop(8, n, 1024, 64))
    rec, s = res.records, res.summary
    assert s["requests_completed"] == n and np.all(np.isfinite(rec.completion_s))
    assert s["kv_transfers"] == n
    assert set(rec.prefill_replica.tolist()) == {0, 1}
    assert set(rec.replica.tolist()) == {2, 3}  # decode workers follow the prefill ones
    assert s["output_tok_s_per_decode_gpu"] == pytest.approx(s["output_tok_s"] / 16)
    assert s["output_tok_s_per_gpu"] < s["output_tok_s_per_decode_gpu"]


def test_pd_over_too_many_gpus_is_refused(llama70):
    with pytest.raises(InputError, match="do not fit the 16 GPUs"):
        build_plan(_pd_spec(racks=2, prefill_replicas=3, decode_replicas=1), llama70, CAT)


def test_kv_transfer_across_nodes_goes_over_rdma_and_matches_the_hand_figure(llama70):
    # 2 HGX H100 nodes: a prefill worker of 4 GPUs and a decode worker of 8 cannot share an 8-GPU NVLink domain
    plan = build_plan(_pd_spec(racks=2, prefill_replicas=1, decode_replicas=1), llama70, CAT)
    link = plan.kv_link
    assert link.kind in ("infiniband", "ethernet")
    prefill, decode = (p.deployment for p in plan.serving_pools())
    tokens = 4096
    layers, kv_heads, head_dim = 80, 8, 128          # Llama-3.1-70B config.json
    kv_bytes = tokens * layers * 2 * kv_heads * head_dim * prefill.plan.kv_bytes  # K and V
    lanes = 4                                         # one NIC per GPU: the 4 prefill GPUs send in parallel
    bw = link.bw_bytes_per_s_per_dir.value * decode.eff.link_eff
    hand = link.latency_s.value + kv_bytes / lanes / bw
    assert float(kv_transfer_seconds(prefill, decode, link, tokens)) == pytest.approx(hand)
    # inside one NVLink domain (one node, two 4-GPU workers) the same cache moves faster
    one_node = build_plan(DeploymentSpec(name="pd1", mode="pd", gpu=GPUPart(system="hgx-h100", precision="fp8", tp=4,
                                                                             prefill_replicas=1, decode_replicas=1)),
                          llama70, CAT)
    assert one_node.kv_link.kind == "nvlink"
    p1, d1 = (p.deployment for p in one_node.serving_pools())
    assert kv_transfer_seconds(p1, d1, one_node.kv_link, tokens) < kv_transfer_seconds(prefill, decode, link, tokens)


def test_pd_with_mtp_on_the_decode_workers(r1):
    spec = spec_from_options(CAT, system="b200", tp=8, precision="fp8", prefill_replicas=1, decode_replicas=2,
                             spec_method="mtp")
    plan = build_plan(spec, r1, CAT)
    assert plan.prefill_pool.timer.tokens_per_decode_step == 1.0
    assert plan.decode_pool.timer.tokens_per_decode_step == pytest.approx(2.82)  # MTP3, TRT-LLM's published mean
    res = simulate_plan(plan, closed_loop(4, 12, 512, 64))
    assert res.summary["requests_completed"] == 12 and np.all(np.isfinite(res.records.completion_s))


# ------------------------------------------------------------------------------------------------
# MI355X
# ------------------------------------------------------------------------------------------------

def test_mi355x_loads_with_sources_and_its_own_family(llama70):
    chip = CAT.chip("mi355x")
    assert chip.family == "cdna4" and CAT.chip("mi325x").family == "cdna3"
    for q in (chip.mem_bytes, chip.mem_bw_bytes_per_s, chip.tdp_w, *chip.peak_flops.values()):
        assert q.source and q.basis in ("spec", "estimate", "assumption")
        if q.basis != "spec":
            assert q.low is not None and q.high is not None
    system = CAT.resolve_system("mi355x-8")
    assert system.n_chips == 8 and CAT.link(system.scale_up_link).name == "infinity-fabric-v4"
    # no cdna4 rows in the shipped fit: it falls back to the pooled GPU fit and says so
    assert "cdna4" in load_calibration().provenance("gpu", "cdna4")


def test_mi355x_decode_is_faster_than_mi325x_by_about_the_bandwidth_ratio(llama70):
    """Batch-1 decode of a 70B model is bound by streaming weights from HBM: both chips share the
    same (pooled) efficiency, so the step times scale with the bandwidths, less fixed overheads."""
    cal = load_calibration("none")
    t = {}
    for chip in ("mi325x", "mi355x"):
        dep = build_deployment(llama70, chip, tp=1, precision="fp8", catalog=CAT, calibration=cal)
        t[chip] = float(StepCost(dep).total(batch_shape(Batch(np.float64(1), np.float64(1), np.float64(1000)),
                                                         StepCost(dep).windows)))
    bw = CAT.chip("mi355x").mem_bw_bytes_per_s.value / CAT.chip("mi325x").mem_bw_bytes_per_s.value
    assert 1.0 < t["mi325x"] / t["mi355x"] <= bw * 1.001
