"""Collectives by algorithm and size (costmodel/collectives.py) and DP attention + EP layouts:
hand-computed times, the algorithm switch, monotonicity, memory conservation over attention ranks,
the step's bounds and the refusals."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infersim.catalog.hardware import LinkSpec, load_catalog
from infersim.catalog.models import load_model
from infersim.calibration.efficiency import load_calibration
from infersim.costmodel import collectives as C
from infersim.costmodel.memory import kv_bytes_per_seq, memory_fit
from infersim.costmodel.step import StepCost
from infersim.costmodel.work import dp_rank_imbalance, model_ops
from infersim.deployments.options import spec_from_options
from infersim.deployments.spec import read_spec
from infersim.errors import InputError
from infersim.mapping.deployment import build_deployment, engine_layout, routed_expert_params

PROPERTY = settings(max_examples=40, deadline=None)
BW, ALPHA, LINK_EFF, KERNEL, PHASE = 1.0e11, 1.0e-6, 0.5, 2.0e-6, 1.5e-5


def _link(kind="nvlink", bw=BW, alpha=ALPHA, phase=PHASE) -> LinkSpec:
    q = lambda v: {"value": v, "basis": "assumption", "source": "test", "low": v, "high": v}  # noqa: E731
    return LinkSpec(name=f"test-{kind}", description="test link", kind=kind, bw_bytes_per_s_per_dir=q(bw),
                    latency_s=q(alpha), all_to_all_phase_s=None if phase is None else q(phase))


def _eff():
    cal = load_calibration()
    cat = load_catalog()
    chip = cat.chip("b200")
    return cal.for_chip(chip.kind, chip.family).with_values(link_eff=LINK_EFF, kernel_s=KERNEL)


# -- hand-computed times ------------------------------------------------------------------------
def test_all_reduce_algorithms_by_hand():
    """g = 4 GPUs, 64 KiB: one-shot reads 3 whole peer buffers in one step; two-shot moves 2 x 3/4
    of the message in two steps; NCCL the same bytes in 2 x ceil(log2 4) = 4 steps; each one kernel."""
    s, g, bw = 65536.0, 4, BW * LINK_EFF
    t = C.all_reduce_times(_link(), _eff(), g, s)
    assert t["one_shot"] == pytest.approx(KERNEL + ALPHA + 3 * s / bw)
    assert t["two_shot"] == pytest.approx(KERNEL + 2 * ALPHA + 2 * 0.75 * s / bw)
    assert t["nccl"] == pytest.approx(KERNEL + 4 * ALPHA + 2 * 0.75 * s / bw)
    assert C.all_reduce(_link(), _eff(), g, s, count=3) == pytest.approx(3 * min(t.values()))


def test_gather_scatter_and_all_to_all_by_hand():
    s, g, bw = 1.0e6, 8, BW * LINK_EFF
    assert C.all_gather(_link(), _eff(), g, s) == pytest.approx(KERNEL + ALPHA + 7 / 8 * s / bw)
    assert C.reduce_scatter(_link(), _eff(), g, s, direct=False) == pytest.approx(KERNEL + 3 * ALPHA + 7 / 8 * s / bw)
    # inside one domain: one step per phase
    assert C.all_to_all(_link(), _eff(), g, s, count=2) == pytest.approx(2 * (PHASE + s / bw))
    # 16 GPUs in domains of 8: 7 of 15 peers over NVLink, 8 over a 4x slower NIC, concurrently
    nic = _link("infiniband", bw=BW / 4, alpha=5e-6)
    local, remote = s * 7 / 15, s * 8 / 15
    expect = PHASE + 5e-6 + max(local / bw, remote / (BW / 4 * LINK_EFF))
    assert C.all_to_all(_link(), _eff(), 16, s, domain=8, scale_out=nic) == pytest.approx(expect)


def test_fused_all_reduce_rmsnorm_saves_one_kernel_and_one_pass():
    t = C.all_reduce(_link(), _eff(), 8, 16384.0, count=10)
    fused = C.fused_all_reduce_rmsnorm(_link(), _eff(), 8, 16384.0, 10, norm_pass_s=1e-6)
    assert fused == pytest.approx(t - 10 * (KERNEL + 1e-6))


def test_one_gpu_has_no_collective():
    assert C.all_reduce(_link(), _eff(), 1, 1e6, count=5) == 0.0
    assert C.all_to_all(_link(), _eff(), 1, 1e6, count=5) == 0.0


# -- the algorithm switch ----------------------------------------------------------------------
def test_algorithm_switches_with_size():
    """Small messages: one-shot (latency); medium: two-shot (bandwidth); above the custom kernels'
    buffer: NCCL ring. Over a network (no peer memory) always NCCL."""
    sizes = np.array([1024.0, 4e6, 2.0 * C.CUSTOM_ALLREDUCE_MAX_BYTES])
    assert list(C.all_reduce_algorithm(_link(), _eff(), 8, sizes)) == ["one_shot", "two_shot", "nccl"]
    assert set(C.all_reduce_algorithm(_link("infiniband"), _eff(), 8, sizes)) == {"nccl"}
    # two GPUs: one-shot moves no more than two-shot and takes one step fewer
    assert C.all_reduce_algorithm(_link(), _eff(), 2, 4e6) == "one_shot"


@PROPERTY
@given(s=st.floats(1.0, 1e9), k=st.floats(1.0, 4.0), g=st.integers(2, 72))
def test_all_reduce_monotone_in_size_and_group(s, k, g):
    link, eff = _link(), _eff()
    assert C.all_reduce(link, eff, g, s * k) >= C.all_reduce(link, eff, g, s) * (1 - 1e-12)
    assert C.all_reduce(link, eff, g + 1, s) >= C.all_reduce(link, eff, g, s) * (1 - 1e-12)
    assert C.all_to_all(link, eff, g, s * k) >= C.all_to_all(link, eff, g, s)


# -- DP attention + EP ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def dsv3():
    return load_model("deepseek-r1")  # the DeepSeek-V3 architecture


def _dep(model, system, tp, ep, **kw):
    return build_deployment(model, system, tp=tp, ep=ep, precision="fp8", **kw)


def test_dp_rank_imbalance():
    assert dp_rank_imbalance(8.0, 8) == 1.0
    assert dp_rank_imbalance(1.0, 8) == 8.0          # one rank holds the only sequence
    assert dp_rank_imbalance(9.0, 8) == pytest.approx(2 / (9 / 8))
    assert dp_rank_imbalance(0.0, 8) == 1.0
    assert dp_rank_imbalance(5.0, 1) == 1.0


def test_dp_attention_memory_conservation(dsv3):
    """Over the ep ranks: the KV caches add up to every sequence's, each expert is held once, and
    the other weights (attention, dense layers, embeddings) whole on every rank."""
    dp = _dep(dsv3, "b200", 1, 8)
    seqs, ctx = 64, 3000.0
    fit = memory_fit(dp, seqs, ctx, seqs)
    assert fit.kv * 8 == pytest.approx(seqs * float(kv_bytes_per_seq(dp, ctx)))
    routed = routed_expert_params(dsv3) * dp.plan.expert_weight_bytes
    tp8 = memory_fit(_dep(dsv3, "b200", 8, 1), seqs, ctx, seqs)
    # DP8 and TP8 hold the same expert bytes per GPU (256 experts over 8 GPUs, once each); DP8 holds
    # everything else whole, TP8 an eighth of it
    assert fit.weights - routed / 8 == pytest.approx(8 * (tp8.weights - routed / 8))


def test_wide_ep_holds_each_expert_at_least_once(dsv3):
    """72 GPUs for 256 experts: ceil(256/72) = 4 expert slots per GPU (288 >= 256: EPLB's redundant
    slots), the rest of the weights as on any DP rank."""
    wide = _dep(dsv3, "gb200-nvl72", 1, 72, chips=72)
    dp8 = _dep(dsv3, "b200", 1, 8)
    routed = routed_expert_params(dsv3) * wide.plan.expert_weight_bytes
    other = memory_fit(dp8, 1, 1.0, 1).weights - routed / 8
    assert memory_fit(wide, 1, 1.0, 1).weights - other == pytest.approx(4 * routed / 256)


@PROPERTY
@given(batch=st.integers(1, 512), past=st.floats(0.0, 8000.0))
def test_dp_ep_decode_step_not_faster_than_its_attention(batch, past):
    """A DP8+EP8 decode step takes at least the busiest rank's attention ops alone, and never less
    than the same step with perfectly balanced ranks."""
    model = load_model("deepseek-r1")
    cost = _COSTS.setdefault("dp8", StepCost(_dep(model, "b200", 1, 8)))
    shape = cost.uniform_decode_shape(batch, past, 1.0)
    step = float(cost.total(shape))
    flops, byts, rates, counts = cost._ops(shape)
    from infersim.costmodel.execution import gpu_table_time
    names = [o.name for o in model_ops(model, shape, cost.sharding, cost.dep.plan)]
    attention = np.array([n.startswith("attention") for n in names])
    alone = float(gpu_table_time(flops[..., attention], byts[..., attention], rates[attention], counts[attention],
                                 cost.dep.chip, cost.dep.eff).total)
    assert step >= alone
    assert step == pytest.approx(float(cost.time(shape).total), rel=1e-9)


_COSTS: dict = {}


def test_dp_step_compiled_equals_direct(dsv3):
    dep = _dep(dsv3, "b200", 1, 8)
    for batch in (1, 3, 64):
        direct = StepCost(dep, compiled=False)
        compiled = StepCost(dep)
        shape = compiled.uniform_decode_shape(batch, 1000.0, 1.0)
        assert float(compiled.total(shape)) == pytest.approx(float(direct.time(shape).total), rel=1e-9)


def test_collectives_are_tagged_by_side(dsv3):
    tp8 = StepCost(_dep(dsv3, "b200", 8, 1))
    dp8 = StepCost(_dep(dsv3, "b200", 1, 8))
    shape = tp8.uniform_decode_shape(64, 1000.0, 1.0)
    sides = {c.name: c.side for c in tp8.collectives(shape)}
    assert sides == {"tp_all_reduce.attention": "attention", "tp_all_reduce.ffn": "ffn"}
    sides = {c.name: c.side for c in dp8.collectives(shape)}
    assert sides == {"ep_all_to_all": "ffn"}  # no TP all-reduce in DP attention at tp 1


def test_wide_ep_across_nodes_is_slower_than_inside_one_domain(dsv3):
    inside = StepCost(_dep(dsv3, "b200", 1, 8))
    across = StepCost(_dep(dsv3, "b200", 1, 16, chips=16))  # two 8-GPU nodes over the NIC
    shape = inside.uniform_decode_shape(256, 1000.0, 1.0)
    a2a = lambda c: float(sum(x.seconds for x in c.collectives(shape)))  # noqa: E731
    assert a2a(across) > a2a(inside)


# -- the engines' convention and bad input -------------------------------------------------------
def test_engine_layout():
    assert engine_layout(8, 8, True) == (1, 8, 1)
    assert engine_layout(8, 8, False) == (8, 1, 8)  # attention TP8, experts whole over 8 groups of 1 GPU
    assert engine_layout(8, 2, False) == (8, 1, 2)  # moe_tp 4 x moe_ep 2
    assert engine_layout(8, 1, False) == (8, 1, 1)
    with pytest.raises(InputError, match="does not divide"):
        engine_layout(8, 3, True)


def test_spec_from_options_dp_attention():
    cat = load_catalog()
    spec = spec_from_options(cat, system="b200", tp=8, ep=8, dp_attention=True)
    assert (spec.gpu.tp, spec.gpu.ep) == (1, 8)
    spec = spec_from_options(cat, system="b200", tp=8, ep=8, dp_attention=False)
    assert (spec.gpu.tp, spec.gpu.ep, spec.gpu.moe_ep) == (8, 1, 8)
    with pytest.raises(InputError, match="needs --tp"):
        spec_from_options(cat, system="b200", dp_attention=True)
    with pytest.raises(InputError, match="dp-attention"):
        spec_from_options(cat, system="groq-lpu-v1", chips=8, dp_attention=True)


def test_deployment_file_dp_attention(tmp_path):
    f = tmp_path / "dp.yaml"
    f.write_text("name: dp\nmode: gpu\ngpu: {system: hgx-b200, tp: 8, ep: 8, dp_attention: true}\n")
    assert (read_spec(f).gpu.tp, read_spec(f).gpu.ep) == (1, 8)
    f.write_text("name: dp\nmode: gpu\ngpu: {system: hgx-b200, tp: 8, ep: 3, dp_attention: true}\n")
    with pytest.raises(InputError, match="does not divide"):
        read_spec(f)


def test_more_ep_gpus_than_experts_refused():
    mixtral = load_model("mixtral-8x7b")
    with pytest.raises(InputError, match="routed experts"):
        build_deployment(mixtral, "b200", tp=2, ep=8, precision="fp8")


def test_simulate_dp_attention_flag():
    """--dp-attention reads --tp/--ep the engines' way on the command line; without --tp, or with
    a deployment file, it is one error line and exit code 2."""
    from typer.testing import CliRunner
    from infersim.cli.main import app
    run = CliRunner().invoke
    base = ["simulate", "--system", "b200", "--chips", "8", "--model", "deepseek-v3", "--precision", "fp8", "--concurrency", "2",
            "--requests", "4", "--input-len", "64", "--output-len", "4"]
    res = run(app, base + ["--tp", "8", "--ep", "8", "--dp-attention"])
    assert res.exit_code == 0, res.output
    assert "tp=1 pp=1 ep=8" in res.output
    res = run(app, base + ["--ep", "8", "--dp-attention"])
    assert res.exit_code == 2 and "needs --tp" in res.output and "Traceback" not in res.output
