"""Whole-expert placement: the busiest expert group's load (costmodel/expert_load.py), the engines'
EP without DP attention (Parallelism.moe_ep), its memory, and the MoE all-to-all phase cost as a
catalog assumption (--set, sensitivity). Hand-computed cases, brute-force enumeration, limits."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infersim.catalog.hardware import load_catalog
from infersim.catalog.models import load_model
from infersim.costmodel.expert_load import (EXACT_MAX_TRIALS, busiest_group_load, expected_distinct_experts,
                                            expected_max_binomial)
from infersim.costmodel.memory import memory_fit
from infersim.costmodel.step import StepCost
from infersim.deployments.options import spec_from_options
from infersim.deployments.spec import read_spec
from infersim.errors import InputError
from infersim.mapping.deployment import build_deployment, routed_expert_params
from infersim.modes import build_plan

PROPERTY = settings(max_examples=40, deadline=None)


@pytest.fixture(scope="module")
def dsr1():
    return load_model("deepseek-r1")


def _brute_max(n: int, p: float, groups: int) -> float:
    """E[max] by enumerating every outcome of `groups` independent Binomial(n, p)."""
    pmf = [math.comb(n, x) * p ** x * (1 - p) ** (n - x) for x in range(n + 1)]
    return sum(max(xs) * math.prod(pmf[x] for x in xs) for xs in itertools.product(range(n + 1), repeat=groups))


# -- the order statistic --------------------------------------------------------------------------
def test_two_groups_of_one_expert_by_hand():
    """E = 2 experts, top-1, one token, G = 2 groups of one expert: each expert is touched with
    p = 1 - (1 - 1/2)^1 = 1/2, so the busiest group touches E[max of two Bernoulli(1/2)] =
    1 - (1/2)^2 = 3/4 experts (the groups taken as independent: the docstring's assumption; with
    exactly one expert touched the true value is 1). Token copies: Binomial(1, 1/2) per group,
    the same 3/4."""
    experts, copies = busiest_group_load(2, 1, 2, 1.0)
    assert float(experts) == pytest.approx(0.75)
    assert float(copies) == pytest.approx(0.75)
    # Binomial(2, 1/2): F(0) = 1/4, F(1) = 3/4; E[max of 2] = (1 - 1/16) + (1 - 9/16) = 1.375
    assert expected_max_binomial(2, 0.5, 2) == pytest.approx(1.375)


@PROPERTY
@given(st.integers(1, 6), st.floats(0.01, 0.99), st.integers(1, 4))
def test_expected_max_equals_enumeration(n, p, groups):
    assert expected_max_binomial(n, p, groups) == pytest.approx(_brute_max(n, p, groups), rel=1e-9, abs=1e-12)


def test_normal_tail_joins_the_exact_sum():
    """Above EXACT_MAX_TRIALS the maximum comes from the normal approximation: it must continue the
    exact sum (within 0.1% of the value, far below the imbalance it measures)."""
    for groups in (2, 8, 72):
        exact = expected_max_binomial(EXACT_MAX_TRIALS, 1 / groups, groups)
        approx = expected_max_binomial(EXACT_MAX_TRIALS + 1, 1 / groups, groups)
        assert approx == pytest.approx(exact, rel=1e-3)


@PROPERTY
@given(st.sampled_from([(8, 2), (64, 6), (128, 8), (256, 8)]), st.sampled_from([2, 4, 8, 16]),
       st.floats(0.5, 5000.0))
def test_busiest_group_at_least_the_mean_and_at_most_the_whole(kind, groups, tokens):
    e, k = kind
    if groups > e:
        return
    experts, copies = (float(x) for x in busiest_group_load(e, k, groups, tokens))
    mean_experts = float(expected_distinct_experts(e, k, tokens)) / groups
    assert experts >= mean_experts * (1 - 1e-9)
    assert copies >= tokens * k / groups * (1 - 1e-9)
    assert experts <= math.ceil(e / groups) + 1e-9 and copies <= tokens * k + 1e-9


def test_imbalance_vanishes_as_tokens_grow_and_is_one_with_one_group():
    ratios = []
    for tokens in (4.0, 64.0, 1024.0, 1e6):
        experts, copies = busiest_group_load(256, 8, 8, tokens)
        ratios.append((float(experts) / (float(expected_distinct_experts(256, 8, tokens)) / 8),
                       float(copies) / (tokens * 8 / 8)))
    assert all(a[0] >= b[0] - 1e-9 and a[1] >= b[1] - 1e-9 for a, b in zip(ratios, ratios[1:]))  # shrinking
    assert ratios[0][0] > 1.3 and ratios[-1][0] == pytest.approx(1.0) and ratios[-1][1] == pytest.approx(1.0, abs=2e-3)
    for tokens in (1.0, 37.0, 5000.0):
        experts, copies = busiest_group_load(256, 8, 1, tokens)
        assert float(experts) == pytest.approx(float(expected_distinct_experts(256, 8, tokens)))
        assert float(copies) == pytest.approx(tokens * 8)


def test_arrays_equal_scalars():
    t = np.array([[1.0, 3.0], [3.0, 700.5]])
    experts, copies = busiest_group_load(256, 8, 8, t)
    for i, j in np.ndindex(t.shape):
        e, c = busiest_group_load(256, 8, 8, float(t[i, j]))
        assert experts[i, j] == e and copies[i, j] == c


# -- engine EP without DP attention: the step and memory ------------------------------------------
def _b200(model, **kw):
    return build_deployment(model, "b200", chips=8, precision="fp8", **kw)


def test_engine_ep8_step_slower_than_tp8_at_few_sequences_and_the_gap_shrinks(dsr1):
    """8 x B200 DeepSeek-R1 decode. TP8 shards every expert over the 8 GPUs; the engines' EP8
    without DP attention puts 32 whole experts on each GPU and the step waits for the GPU whose
    experts the few tokens touched most. At 4 sequences that costs real time; at 256 sequences
    nearly every expert is touched everywhere and only the token copies vary."""
    tp8, ep8 = StepCost(_b200(dsr1, tp=8)), StepCost(_b200(dsr1, tp=8, moe_ep=8))
    gap = {}
    for seqs in (4, 256):
        shape = tp8.uniform_decode_shape(seqs, 2000.0, 1.0)
        gap[seqs] = float(ep8.total(shape)) / float(tp8.total(shape))
    assert gap[4] > 1.1
    assert 1.0 <= gap[256] < gap[4]


@pytest.mark.parametrize("kw", [dict(tp=8, moe_ep=8), dict(tp=8, moe_ep=2), dict(tp=1, ep=8), dict(tp=2, ep=4)])
def test_whole_expert_step_compiled_equals_direct(dsr1, kw):
    dep = _b200(dsr1, **kw)
    compiled, direct = StepCost(dep), StepCost(dep, compiled=False)
    for seqs in (1, 3, 64):
        shape = compiled.uniform_decode_shape(seqs, 1000.0, 1.0)
        assert float(compiled.total(shape)) == pytest.approx(float(direct.time(shape).total), rel=1e-9)
    mixed = compiled.uniform_decode_shape(np.array([2.0, 9.0, 40.0]), np.array([10.0, 500.0, 4000.0]), 1.0)
    assert np.allclose(compiled.total(mixed), direct.time(mixed).total, rtol=1e-9)


def test_memory_with_moe_ep_holds_whole_experts(dsr1):
    """EP8 without DP attention: each GPU holds 256 / 8 = 32 whole experts (= 1/8 of the routed
    bytes, as TP8's eighth of every expert); TP4 x EP2: 128 experts per group of 4 GPUs, a quarter
    of each on a GPU (again 1/8). Everything else is sharded as in TP8."""
    routed = routed_expert_params(dsr1)
    tp8 = memory_fit(_b200(dsr1, tp=8), 4, 1000.0, 4)
    for moe_ep in (8, 2):
        dep = _b200(dsr1, tp=8, moe_ep=moe_ep)
        fit = memory_fit(dep, 4, 1000.0, 4)
        per_gpu_experts = math.ceil(256 / moe_ep) / (8 / moe_ep)
        assert per_gpu_experts == 32
        assert fit.weights - tp8.weights == pytest.approx(0.0, abs=1.0)
        assert fit.weights - (tp8.weights - routed * dep.plan.expert_weight_bytes / 8) == pytest.approx(
            routed / 256 * per_gpu_experts * dep.plan.expert_weight_bytes)


def test_engine_flags_and_files_express_ep_without_dp_attention(dsr1, tmp_path):
    cat = load_catalog()
    spec = spec_from_options(cat, system="b200", tp=8, ep=4, dp_attention=False, precision="fp8")
    dep = build_plan(spec, dsr1, cat).pools[0].deployment
    assert (dep.par.tp, dep.par.ep, dep.par.moe_ep, dep.par.expert_parallel) == (8, 1, 4, 4)
    f = tmp_path / "ep.yaml"
    f.write_text("name: ep\nmode: gpu\ngpu: {system: hgx-b200, tp: 8, ep: 8, dp_attention: false, precision: fp8}\n")
    s = read_spec(f)
    assert (s.gpu.tp, s.gpu.ep, s.gpu.moe_ep) == (8, 1, 8)
    f.write_text("name: ep\nmode: gpu\ngpu: {system: hgx-b200, tp: 8, moe_ep: 2, precision: fp8}\n")
    assert build_plan(read_spec(f), dsr1, cat).pools[0].deployment.par.moe_ep == 2


def test_bad_moe_ep_values_are_one_line_errors(dsr1, tmp_path):
    with pytest.raises(InputError, match="moe_ep 3 does not divide tp 8"):
        _b200(dsr1, tp=8, moe_ep=3)
    with pytest.raises(InputError, match="already whole"):
        build_deployment(dsr1, "b200", tp=1, ep=8, moe_ep=2, precision="fp8")
    with pytest.raises(InputError, match="routed experts of"):
        build_deployment(load_model("mixtral-8x7b"), "b200", tp=16, moe_ep=16, chips=16, precision="fp8")
    f = tmp_path / "bad.yaml"
    f.write_text("name: bad\nmode: gpu\ngpu: {system: hgx-b200, tp: 8, ep: 8, moe_ep: 8, dp_attention: false}\n")
    with pytest.raises(InputError, match="moe_ep is infersim's layout"):
        read_spec(f)
    f.write_text("name: bad\nmode: gpu\ngpu: {system: hgx-b200, tp: 8, moe_ep: 0}\n")
    with pytest.raises(InputError, match="moe_ep"):
        read_spec(f)


def test_cli_ep_without_dp_attention_refuses_an_ep_that_does_not_divide_tp():
    from typer.testing import CliRunner
    from infersim.cli.main import app
    res = CliRunner().invoke(app, ["estimate", "--system", "b200", "--chips", "8", "--model", "deepseek-r1",
                                   "--precision", "fp8", "--tp", "8", "--ep", "3"])
    assert res.exit_code == 2 and "Traceback" not in res.output


# -- the all-to-all phase cost: a catalog assumption -----------------------------------------------
def test_all_to_all_phase_is_settable_and_swept(dsr1):
    cat = load_catalog()
    q = cat.links["nvlink5"].all_to_all_phase_s
    assert (q.basis, q.value, q.low, q.high) == ("assumption", 1.5e-5, 1.0e-5, 3.0e-5)
    spec = spec_from_options(cat, system="b200", tp=8, ep=8, dp_attention=True, precision="fp8")
    dp8 = build_plan(spec, dsr1, cat).pools[0].deployment
    slow = build_plan(spec, dsr1, cat.with_overrides(["nvlink5.all_to_all_phase_s=3e-5"])).pools[0].deployment
    shape = StepCost(dp8).uniform_decode_shape(8, 1000.0, 1.0)
    a2a = lambda d: float(sum(c.seconds for c in StepCost(d).collectives(shape) if c.name == "ep_all_to_all"))  # noqa: E731
    phases = 2 * 58  # dispatch + combine per MoE layer of DeepSeek-R1 (58 of its 61 layers)
    assert a2a(slow) - a2a(dp8) == pytest.approx(phases * 1.5e-5)
    from infersim.calibration.efficiency import load_calibration
    from infersim.deployments.sensitivity import sweep_inputs
    names = [i.name for i in sweep_inputs(build_plan(spec, dsr1, cat), cat, load_calibration())]
    assert "nvlink5.all_to_all_phase_s" in names


def test_a_link_without_an_all_to_all_phase_is_refused_for_ep(dsr1):
    """A user's link (--hardware) without the phase cost: expert parallelism over it is one error
    naming the --set that fixes it."""
    from dataclasses import replace
    dep = build_deployment(dsr1, "b200", tp=1, ep=8, precision="fp8")
    dep = replace(dep, scale_up=dep.scale_up.model_copy(update={"all_to_all_phase_s": None}))
    with pytest.raises(InputError, match="--set nvlink5.all_to_all_phase_s="):
        StepCost(dep).collectives(StepCost(dep).uniform_decode_shape(8, 1000.0, 1.0))
