"""The GPU step's parts outside the op rooflines: kernel counts by layer kind, CUDA graphs vs eager
launches, the engine's host work overlapped or not, AFD keeping only the attention side, and the
engine file's bad input."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from cli_checks import assert_fails_cleanly
from infersim.catalog.engines import EngineSpec, engine, engine_for_software, load_engines, parse_engines
from infersim.catalog.models import load_model
from infersim.cli.main import app
from infersim.costmodel.afd import attention_part
from infersim.costmodel.overhead import StepOverhead, model_kernels
from infersim.costmodel.step import StepCost
from infersim.costmodel.work import Batch, batch_shape, model_windows
from infersim.deployments.spec import DeploymentSpec, check_spec
from infersim.errors import InputError
from infersim.mapping.deployment import build_deployment

runner = CliRunner()


def _engine(overlap: bool, graphs: bool, **kw) -> EngineSpec:
    base = dict(name="test", backend="test", description="", overlap=overlap, cuda_graphs=graphs, graph_max_batch=64,
                host_step_s=1e-3, host_seq_s=1e-5, eager_launch_s=4e-6, sources={})
    base.update(kw)
    return EngineSpec(**base)


def _overhead(eng: EngineSpec, kernels: float = 100.0, host_scale: float = 1.0) -> StepOverhead:
    return StepOverhead({"attention": kernels * 0.6, "ffn": kernels * 0.4, "step": 0.0}, eng, 2e-6, host_scale)


# ------------------------------------------------------------------------------------------------
# kernels per layer kind, counted by hand from the documented counts (costmodel/overhead.py)
# ------------------------------------------------------------------------------------------------

def test_kernel_counts_by_hand():
    # Llama-3.1-8B: 32 x (norm + GQA 5) on the attention side, 32 x (norm + dense FFN 3) on the FFN side;
    # embedding, final norm, LM head and 2 sampling kernels per step
    assert model_kernels(load_model("llama-3.1-8b")) == {"attention": 32 * 6, "ffn": 32 * 4, "step": 5}
    # DeepSeek-R1: 61 MLA blocks (norm + 9), 3 dense FFNs (norm + 3), 58 MoE blocks with a shared
    # expert (norm + 7 + 3)
    assert model_kernels(load_model("deepseek-r1")) == {"attention": 61 * 10, "ffn": 3 * 4 + 58 * 11, "step": 5}
    # the attention part AFD keeps on the GPUs has no FFN kernels
    assert model_kernels(attention_part(load_model("llama-3.1-8b")))["ffn"] == 0


# ------------------------------------------------------------------------------------------------
# engine modes, by hand: 100 kernels, 10 sequences, 2 ms of op and collective time
# ------------------------------------------------------------------------------------------------

BUSY, SEQS = 2e-3, 10.0
HOST = 1e-3 + 1e-5 * SEQS              # 1.1 ms of host work
GRAPH_LAUNCH = 100 * 2e-6              # 0.2 ms: the GPU-side gap per kernel
EAGER_LAUNCH = 100 * (2e-6 + 4e-6)     # 0.6 ms: the gap plus the exposed eager launch


@pytest.mark.parametrize("overlap,graphs,seqs,prefill,busy,expected", [
    (True, True, SEQS, 0.0, BUSY, BUSY + GRAPH_LAUNCH),                    # host hidden behind the GPU
    (True, True, SEQS, 0.0, 0.5e-3, HOST),                                 # host longer than the GPU: it sets the step
    (False, True, SEQS, 0.0, BUSY, BUSY + GRAPH_LAUNCH + HOST),            # no overlap: the sum
    (False, False, SEQS, 0.0, BUSY, BUSY + EAGER_LAUNCH + HOST),           # no graphs: eager launches
    (False, True, 100.0, 0.0, BUSY, BUSY + EAGER_LAUNCH + 1e-3 + 1e-5 * 100),  # above graph_max_batch: eager
    (False, True, SEQS, 512.0, BUSY, BUSY + EAGER_LAUNCH + HOST),          # a prefill chunk: eager
    (False, True, SEQS, 4 * SEQS, BUSY, BUSY + GRAPH_LAUNCH + HOST),       # a verification step (k=3): graphed
])
def test_step_overhead_by_hand(overlap, graphs, seqs, prefill, busy, expected):
    o = _overhead(_engine(overlap, graphs))
    assert float(o.step_seconds(seqs, prefill, busy)) == pytest.approx(expected, rel=1e-12)


def test_host_scale_scales_host_work_only():
    """The fitted scale multiplies the engine's assumed host work, not the measured launch costs."""
    o = _overhead(_engine(False, False), host_scale=2.0)
    assert float(o.step_seconds(SEQS, 0.0, BUSY)) == pytest.approx(BUSY + EAGER_LAUNCH + 2 * HOST, rel=1e-12)


def test_shared_host_work_is_not_paid_twice():
    eng = _engine(False, True).sharing_host()
    o = _overhead(eng)
    assert float(o.step_seconds(SEQS, 0.0, BUSY)) == pytest.approx(BUSY + GRAPH_LAUNCH, rel=1e-12)


def test_deployment_step_overhead_by_hand():
    """Llama-3.1-8B on one H100 with the C++ TensorRT-LLM runtime (no overlap, no graphs): the step's
    overhead part is 325 kernels x (kernel_s + eager_launch_s) + host_scale x (host_step_s +
    host_seq_s x batch)."""
    dep = build_deployment(load_model("llama-3.1-8b"), "h100-sxm", tp=1, precision="bf16", engine="trtllm-cpp")
    e, eff = dep.engine, dep.eff
    assert not e.overlap and not e.cuda_graphs
    for batch in (1.0, 32.0):
        shape = batch_shape(Batch(np.float64(batch), np.float64(1), np.float64(1000)), model_windows(dep.model))
        b = StepCost(dep, compiled=False).time(shape)
        expected = 325 * (eff.kernel_s + e.eager_launch_s) + eff.host_scale * (
            e.host_step_s + e.host_seq_s * batch)
        assert float(b.overhead) == pytest.approx(expected, rel=1e-9)
        assert float(StepCost(dep).total(shape)) == pytest.approx(float(b.total), rel=1e-9)


def test_dp_attention_ranks_schedule_and_graph_their_own_sequences():
    """With DP attention every rank runs its own scheduler and CUDA graphs: the host work and the
    graph-size check go with the busiest rank's ceil(s / dp) sequences, not the replica's s. By hand:
    DeepSeek-V3 with the C++ TensorRT-LLM runtime (no overlap, no graphs), 8 ranks, 20 sequences ->
    3 on the busiest rank; host = host_scale x (host_step_s + 3 x host_seq_s)."""
    dep = build_deployment(load_model("deepseek-v3"), "b200", tp=1, ep=8, precision="fp8", engine="trtllm-cpp")
    e, eff = dep.engine, dep.eff
    shape = batch_shape(Batch(np.float64(20), np.float64(1), np.float64(1000)), model_windows(dep.model))
    cost = StepCost(dep, compiled=False)
    seqs, prefill = cost.rank_step(shape)
    assert float(seqs) == 3.0 and float(prefill) == 0.0
    o = cost.overhead
    assert float(o.parts(seqs, prefill, 0.0)["host"]) == pytest.approx(eff.host_scale * (e.host_step_s + 3 * e.host_seq_s))
    # a graphed engine whose graphs hold 4 sequences replays them for 20 sequences over 8 ranks
    graphs = replace(dep, engine=replace(dep.engine, cuda_graphs=True, graph_max_batch=4))
    g = StepCost(graphs, compiled=False)
    assert float(g.overhead.launch_seconds(*g.rank_step(shape))) == pytest.approx(
        g.overhead.n_kernels * eff.kernel_s)
    assert float(StepCost(graphs).total(shape)) == pytest.approx(float(g.time(shape).total), rel=1e-9)


def test_overlap_never_slower_than_the_sum():
    dep = build_deployment(load_model("llama-3.1-8b"), "h100-sxm", tp=1, precision="bf16", engine="vllm-sync")
    overlapped = replace(dep, engine=replace(dep.engine, overlap=True))
    for batch in (1.0, 8.0, 200.0):
        shape = batch_shape(Batch(np.float64(batch), np.float64(1), np.float64(2000)), model_windows(dep.model))
        assert float(StepCost(overlapped).total(shape)) <= float(StepCost(dep).total(shape))


@settings(max_examples=40, deadline=None)
@given(busy=st.floats(1e-5, 1e-1), seqs=st.floats(1, 512), kernels=st.floats(0, 5000),
       more=st.floats(0, 1e-2), overlap=st.booleans(), graphs=st.booleans())
def test_step_monotone_in_every_part(busy, seqs, kernels, more, overlap, graphs):
    """More GPU work, more kernels, more host time per step or per sequence, slower launches: never
    a shorter step; and the step is never shorter than the GPU's busy time or the host work."""
    eng = _engine(overlap, graphs)
    base = float(_overhead(eng, kernels).step_seconds(seqs, 0.0, busy))
    assert base >= busy and base >= float(_overhead(eng, kernels).parts(seqs, 0.0, busy)["host"]) * (1 - 1e-12)
    assert float(_overhead(eng, kernels).step_seconds(seqs, 0.0, busy + more)) >= base
    assert float(_overhead(eng, kernels + 10).step_seconds(seqs, 0.0, busy)) >= base
    for field in ("host_step_s", "host_seq_s", "eager_launch_s"):
        slower = replace(eng, **{field: getattr(eng, field) + more})
        assert float(_overhead(slower, kernels).step_seconds(seqs, 0.0, busy)) >= base


# ------------------------------------------------------------------------------------------------
# AFD: the GPU keeps the attention side only
# ------------------------------------------------------------------------------------------------

def test_afd_gpu_side_is_shorter_than_the_whole_gpu_step():
    """Same batch, same GPUs: the attention part (no FFN ops, no FFN kernels) takes less GPU time than
    the whole model's step, and the launch difference is exactly the FFN side's kernels."""
    model = load_model("llama-3.1-8b")
    full = build_deployment(model, "h100-sxm", tp=1, precision="bf16", engine="sglang")
    attn = replace(full, model=attention_part(model))
    whole, side = StepCost(full, host=False), StepCost(attn, host=False, sides=("attention", "step"))
    for batch in (1.0, 64.0):
        shape = batch_shape(Batch(np.float64(batch), np.float64(1), np.float64(1000)), model_windows(model))
        assert float(side.total(shape)) < float(whole.total(shape))
        launch_gap = float(whole.overhead.launch_seconds(batch, 0.0)) - float(side.overhead.launch_seconds(batch, 0.0))
        assert launch_gap == pytest.approx(32 * 4 * full.eff.kernel_s, rel=1e-9)


# ------------------------------------------------------------------------------------------------
# engines as data: names, the software column, bad files
# ------------------------------------------------------------------------------------------------

def test_aliases_follow_their_backend_and_software_maps_to_engines():
    assert engine("dynamo-sglang").overlap == engine("sglang").overlap
    assert engine("dynamo-trtllm").host_step_s == engine("trtllm").host_step_s
    assert engine(None).name == load_engines().default
    assert engine_for_software("TensorRT-LLM (PyTorch backend, trtllm-bench)") == "trtllm"
    assert engine_for_software("TensorRT-LLM v0.5.0") == "trtllm-cpp"
    assert engine_for_software("NVIDIA NIM 1.8.0 (TensorRT-LLM backend)") == "trtllm-cpp"
    assert engine_for_software("vLLM 0.9.0.2.dev108+g71faa1880") == "vllm-sync"
    assert engine_for_software("vLLM 0.16.0") == "vllm"


def test_every_assumed_engine_number_has_a_range():
    cat = load_engines()
    for name in cat.names:
        for field in ("graph_max_batch", "host_step_s", "host_seq_s", "eager_launch_s"):
            q = cat.quantity(name, field)
            assert q.source and (q.basis != "assumption" or q.low <= q.value <= q.high)


GOOD = """
engines:
  a:
    overlap: {value: true, basis: spec, source: s}
    cuda_graphs: {value: true, basis: spec, source: s}
    graph_max_batch: {value: 8, basis: spec, source: s}
    host_step_s: {value: 1.0e-4, basis: assumption, low: 1.0e-5, high: 1.0e-3, source: s}
    host_seq_s: {value: 1.0e-6, basis: assumption, low: 0, high: 1.0e-5, source: s}
    eager_launch_s: {value: 4.0e-6, basis: measurement, source: s}
default: a
"""


@pytest.mark.parametrize("text,needle", [
    ("engines: [1", "not readable YAML"),
    ("- 1", "expected a mapping"),
    (GOOD.replace("default: a", "default: b"), "default engine 'b'"),
    (GOOD.replace("    eager_launch_s: {value: 4.0e-6, basis: measurement, source: s}\n", ""), "missing eager_launch_s"),
    (GOOD.replace("value: 1.0e-4, basis: assumption, low: 1.0e-5", "value: -1.0e-4, basis: assumption, low: -1.0e-3"),
     "non-negative"),
    (GOOD.replace("value: 1.0e-4, basis: assumption, low: 1.0e-5, high: 1.0e-3", "value: 1.0e-4, basis: assumption"),
     "needs a plausible range"),
    (GOOD.replace("default: a", "  b: {backend: nope}\ndefault: a"), "backend 'nope'"),
    (GOOD.replace("basis: spec, source: s}\n    cuda", "basis: spec, source: s, speed: 2}\n    cuda"), "speed"),
])
def test_bad_engine_files_are_one_line(text, needle):
    with pytest.raises(InputError) as e:
        parse_engines(text, "engines.yaml")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_good_engine_file_parses():
    assert parse_engines(GOOD, "engines.yaml").get("a").graph_max_batch == 8


def test_deployment_files_name_the_engine():
    s = check_spec(DeploymentSpec.model_validate({"name": "x", "mode": "gpu", "gpu": {"system": "h100-sxm"},
                                                  "engine": "sglang"}), "x")
    assert s.engine.name == "sglang" and s.engine.max_batch > 0
    with pytest.raises(InputError, match="unknown engine 'bogus'.*known: .*sglang"):
        check_spec(DeploymentSpec.model_validate({"name": "x", "mode": "gpu", "gpu": {"system": "h100-sxm"},
                                                  "engine": {"name": "bogus"}}), "x")


def test_unknown_engine_flag_fails_cleanly():
    r = runner.invoke(app, ["estimate", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--engine", "tgi"])
    line = assert_fails_cleanly(r)
    assert "unknown engine 'tgi'" in line and "trtllm" in line and "vllm" in line


def test_engine_flag_changes_the_step():
    def tpot(name):
        r = runner.invoke(app, ["estimate", "--model", "llama-3.1-8b", "--system", "h100-sxm", "--engine", name,
                                "--json"])
        assert r.exit_code == 0, r.stderr
        import json
        return json.loads(r.stdout)["tpot_s"]
    # without graphs or overlap the C++ runtime pays eager launches and its host work on every step
    assert tpot("trtllm-cpp") > tpot("sglang")


def test_dp_attention_ranks_prefill_prompts_side_by_side():
    """Under DP attention each rank prefills its own prompt (chunks of budget / dp): eight 8k
    prompts on DP8 are packed one per rank, so the packed rate per prompt is faster than one prompt
    alone on one rank, while without DP attention (TP8) packing one 8k prompt per step changes
    nothing. The engine setting follows: DP8 chunks are 8192 / 8 = 1024 tokens."""
    from infersim.estimate import prefill_times
    from infersim.serving.config import EngineConfig
    model = load_model("deepseek-v3")
    dp = build_deployment(model, "b200", tp=1, ep=8, precision="fp8")
    tp = build_deployment(model, "b200", tp=8, precision="fp8")
    alone, packed = (float(np.asarray(t).reshape(-1)[0]) for t in prefill_times(dp, 8192))
    assert packed < alone / 4
    alone_tp, packed_tp = (float(np.asarray(t).reshape(-1)[0]) for t in prefill_times(tp, 8192))
    assert packed_tp == pytest.approx(alone_tp)
    assert EngineConfig().for_deployment(dp).chunk == 1024
    assert EngineConfig().for_deployment(tp).chunk == 8192
    assert EngineConfig(chunk_tokens=512).for_deployment(dp).chunk == 512  # a smaller chunk the user set stays
