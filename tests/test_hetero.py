"""Heterogeneous deployments (GPU + LPU): attention-FFN disaggregation (AFD), LPU-only pipelines,
speculative decoding with an LPU draft, SLO routing, and the deployment-file front end.

Physics and golden numbers are recomputed here by hand from the model dimensions, the catalog's
chip/link/system entries and the calibration inputs (efficiencies), written out in comments; no
expected value is copied from what the code under test outputs. Where the same cost model must be
called (the GPU time of the attention part, the LPU time of the FFN part), it is called on its own
deployment and the AFD composition (sum / max / link) is redone by hand.
"""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest

from deployment_by_hand import racks_and_power, system_power_w
from deployment_files import EXAMPLES, example, variant, write
from infersim.calibration.efficiency import load_calibration
from infersim.catalog.hardware import load_catalog
from infersim.catalog.models import AttentionSpec, MambaSpec, load_model
from infersim.costmodel.afd import AFDStepCost, afd_bottleneck, attention_part, ffn_part
from infersim.costmodel.specdec import expected_tokens_per_step
from infersim.costmodel.step import StepCost
from infersim.costmodel.work import Batch, batch_shape, model_windows
from infersim.mapping.deployment import build_deployment, weight_bytes_total
from infersim.estimate import estimate_plan
from infersim.modes import build_plan
from infersim.deployments.run import simulate_plan
from infersim.modes import load_spec
from infersim.errors import InputError
from infersim.workload.synthetic import closed_loop, poisson

LPX_CHIPS = 256  # LPUs per LPX rack (catalog systems/lpx.yaml n_chips)


@pytest.fixture(scope="module")
def gptoss():
    return load_model("gpt-oss-120b")


_example, _write, _variant = example, write, variant


def _plan(tmp_path, base, model, name="dep", catalog=None, calibration=None, **changes):
    return build_plan(load_spec(_variant(tmp_path, base, name, **changes)), model, catalog=catalog,
                      calibration=calibration)


def _without_host_work():
    """The shipped calibration with every GPU family's host_scale at 0: no engine host work, so the
    GPU / LPU / link bounds of AFD show through (the host bound is checked on its own)."""
    shipped = load_calibration()
    fitted = copy.deepcopy(shipped.fitted)
    for fam in fitted.get("families", {}).values():
        if "host_scale" in fam["values"]:
            fam["values"]["host_scale"] = 0.0
    return dataclasses.replace(shipped, fitted=fitted)


def _slow_lpu(cal):
    """`cal` with LP30's per-layer latency at 40 us, about the pooled Groq v1 fit, instead of its
    derived ~1.2 us (calibration/defaults.json): a slow layer pipeline, the regime in which these
    tests check that the LPU side sets the AFD step."""
    fitted = copy.deepcopy(cal.fitted)
    fitted.setdefault("families", {})["groq3"] = {"values": {"layer_s": 4e-5}}
    return dataclasses.replace(cal, fitted=fitted)


def _decode_shape(model, batch, inp, out):
    """Decode step of `batch` sequences after `inp` prompt tokens, averaged over the out - 1 decode
    steps (the same shape estimate_plan states it evaluates)."""
    return batch_shape(Batch(seqs=np.float64(batch), new=np.float64(1), past=np.float64(inp), span=max(out - 1, 1)),
                       model_windows(model))


# ------------------------------------------------------------------------------------------------
# 1. The model split conserves parameters
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, n_ffn, n_mixer_layers", [
    ("llama-3.1-70b", 80, 80),       # 80 x (GQA attention + dense SwiGLU)
    ("gpt-oss-120b", 36, 36),        # 36 x (attention + MoE 128 experts)
    ("deepseek-v3", 61, 61),         # 61 x MLA; 3 dense FFN + 58 MoE
    ("nemotron-3-super", 40, 48),    # 88 layers: 40 Mamba-2, 8 attention, 40 LatentMoE (each its own layer)
])
def test_model_split_conserves_parameters(name, n_ffn, n_mixer_layers):
    """Exact identity (read from afd.py): attention_part keeps the embedding, final norm, LM head
    and every layer that has a mixer (with all its norm vectors); ffn_part keeps only the FFN / MoE
    blocks (no norms, no vocab). So
        attn.total + ffn.total == m.total - hidden * sum(n_norms of layers with no mixer),
    i.e. exact for models whose every layer has a mixer (Llama, gpt-oss, DeepSeek), and short by
    the norm vectors of the FFN-only layers of a Mamba hybrid (Nemotron-H: 40 MoE layers x 1 RMSNorm
    x hidden 4096 = 163,840 parameters that neither side holds)."""
    m = load_model(name)
    a, f = attention_part(m), ffn_part(m)
    mixerless_norms = sum(l.n_norms * m.hidden for l in m.layers if l.mixer is None)
    assert a.total_params + f.total_params == m.total_params - mixerless_norms
    if name == "nemotron-3-super":
        assert mixerless_norms == 40 * 1 * 4096
    else:
        assert mixerless_norms == 0

    # the FFN side: only FFN / MoE blocks, no mixer, no embedding or LM head
    assert len(f.layers) == n_ffn
    assert all(l.mixer is None and l.ffn is not None for l in f.layers)
    assert f.vocab == 0 and f.final_norm_vectors == 0
    # the attention side: no FFN / MoE at all, every mixer kept, embeddings / LM head kept
    assert len(a.layers) == n_mixer_layers
    assert all(l.ffn is None and isinstance(l.mixer, (AttentionSpec, MambaSpec)) for l in a.layers)
    assert a.vocab == m.vocab and a.hidden == m.hidden and a.tie_embeddings == m.tie_embeddings
    assert a.n_attention_layers == m.n_attention_layers and a.n_mamba_layers == m.n_mamba_layers


def test_gpt_oss_120b_split_and_weight_bytes_by_hand(gptoss):
    """gpt-oss-120b from its config.json: hidden 2880, 36 layers, 64 query heads and 8 KV heads of 64,
    attention biases and 64 sinks per layer, 128 SwiGLU experts of intermediate 2880 with biases, a
    biased 2880 x 128 router, vocab 201,088 untied. The MoE blocks go to the LPUs; everything else stays
    with attention. At 'mixed' precision the experts keep their MXFP4 (4.25 bits), the rest is 8-bit."""
    h = 2880
    expert = 3 * h * h + 3 * h                                   # gate+up (2 x h x h) and down, with biases
    router = h * 128 + 128
    ffn = 36 * (128 * expert + router)
    attention_layer = (h * 4096 + 4096) + 2 * (h * 512 + 512) + (4096 * h + h) + 64 + 2 * h   # q, k, v, o, sinks, norms
    attention = 36 * attention_layer + 2 * 201088 * h + h          # + embedding, LM head, final norm
    assert (ffn, attention) == (114_714_874_368, 2_114_282_304)
    assert ffn_part(gptoss).total_params == ffn
    assert attention_part(gptoss).total_params == attention
    plan = build_deployment(gptoss, "groq3-lpu", chips=1, precision="mixed").plan
    routed = 36 * 128 * expert
    assert weight_bytes_total(gptoss, plan) == pytest.approx((ffn + attention - routed) * 1 + routed * 4.25 / 8, rel=1e-12)


# ------------------------------------------------------------------------------------------------
# 2. AFD physics
# ------------------------------------------------------------------------------------------------


def _hand_link_s(link, eff, n_ffn, tokens, hidden, act_bytes, lanes, with_latency=True):
    """2 crossings per FFN layer; each carries tokens x hidden x act_bytes split over `lanes`
    parallel GPU->LPU endpoints: alpha + bytes / (bw x link_eff x lanes)."""
    alpha = float(link.latency_s.value) if with_latency else 0.0
    bw = float(link.bw_bytes_per_s_per_dir.value) * eff.link_eff
    return 2 * n_ffn * (alpha + tokens * hidden * act_bytes / (bw * lanes))


def test_afd_m1_is_the_strict_sum_of_gpu_lpu_and_link(tmp_path, gptoss):
    """micro_batches 1: no overlap, so per-token step time = GPU attention part + LPU FFN part +
    2 link crossings per FFN layer, each timed on its own here."""
    cat = load_catalog()
    plan = _plan(tmp_path, "vr-nvl72-lpx-afd", gptoss, micro_batches=1)
    afd = plan.pool("decode").timer.afd
    # layout by hand: 72 GPUs / tp 8 = 9 replicas, 2 prefill -> 7 attention replicas; gpt-oss FFN
    # weights (~61 GB at 8-bit/MXFP4) need > 128 LPUs, so the pool is one whole LPX rack of 256
    assert afd.attention.par.tp == 8 and afd.attention.par.replicas == 7
    assert afd.ffn.chips_per_replica == LPX_CHIPS and afd.units == 1
    hidden, n_ffn = 2880, 36
    assert gptoss.hidden == hidden and sum(l.ffn is not None for l in gptoss.layers) == n_ffn
    act_bytes = 2  # activations cross the link in bf16 ('fp8' precision keeps 16-bit activations)
    assert afd.attention.plan.act_bytes == act_bytes
    lanes = min(8, LPX_CHIPS // n_ffn)  # min(tp, LPUs per FFN layer) = min(8, 7) = 7
    link = cat.link("gpu-lpu-direct")

    gpu, lpu = StepCost(afd.attention, host=False), StepCost(afd.ffn)
    cost = AFDStepCost(afd)
    assert afd.attention.engine.overlap  # the default engine overlaps its host work with the GPU
    for batch in (1, 8, 64):
        shape = _decode_shape(gptoss, batch, 1024, 256)
        x = _hand_link_s(link, afd.ffn.eff, n_ffn, batch, hidden, act_bytes, lanes)
        chain = float(gpu.total(shape)) + float(lpu.total(shape)) + x
        expected = max(chain, _host_s(afd, batch))
        assert float(cost.total(shape)) == pytest.approx(expected, rel=1e-9)
        assert afd_bottleneck(cost, shape) == ("host" if _host_s(afd, batch) > chain else "chain")
        # per-user speed can never beat the unoverlapped round trip
        assert float(cost.total(shape)) >= 2 * n_ffn * float(link.latency_s.value) + float(lpu.total(shape))
    est = estimate_plan(plan, batch=1, input_len=1024, output_len=256)
    assert est["tpot_s"] == pytest.approx(float(cost.total(_decode_shape(gptoss, 1, 1024, 256))), rel=1e-12)


def _host_s(afd, seqs: float) -> float:
    """The engine's host work per step: the engine file's times scaled by the fitted host_scale."""
    e = afd.attention.engine
    return afd.attention.eff.host_scale * (e.host_step_s + e.host_seq_s * seqs)


def test_afd_link_time_golden_batch_1(tmp_path, gptoss):
    """The link part of one decode token, with its inputs pinned here (a 50 GB/s, 2 us direct link;
    0.9 of its bandwidth achieved on the LPU side): 36 FFN layers x 2 crossings, each 2 us plus one
    token's 2880 bf16 activations (5760 B) over 7 parallel lanes (min(tp 8, 256 LPUs / 36 layers)):
    72 x (2e-6 + 5760 / (5e10 x 0.9 x 7)) = 72 x 2.01829e-6 = 145.317 us."""
    cat = load_catalog().with_overrides(["gpu-lpu-direct.bw_bytes_per_s_per_dir=5e10", "gpu-lpu-direct.latency_s=2e-6"])
    shipped = load_calibration()
    defaults = copy.deepcopy(shipped.defaults)
    defaults["kinds"]["lpu"]["values"]["link_eff"] = 0.9
    calibration = dataclasses.replace(shipped, defaults=defaults)
    assert calibration.for_chip("lpu", cat.chip("groq3-lpu").family).link_eff == 0.9   # no fit overrides the pin
    spec = load_spec(_variant(tmp_path, "vr-nvl72-lpx-afd", micro_batches=1))
    est = estimate_plan(build_plan(spec, gptoss, catalog=cat, calibration=calibration), batch=1, input_len=1024,
                        output_len=256)
    assert 72 * (2e-6 + 5760 / (5e10 * 0.9 * 7)) == pytest.approx(1.45317e-4, rel=1e-5)
    assert est["afd"]["parts_s"]["link_s"] == pytest.approx(1.45317e-4, rel=1e-5)
    assert est["afd"]["parts_s"]["link_bw_s"] == pytest.approx(72 * 5760 / (5e10 * 0.9 * 7), rel=1e-9)


def test_afd_micro_batches_overlap_bounds(tmp_path, gptoss):
    """m >= 2: T >= the chain of one micro-batch (GPU + LPU + link of batch/m, overhead once) and
    >= every throughput bound (GPU: m attention passes; link occupancy; an LPU stage serving the
    pool's 7 replicas x m micro-batches, busy time only). Overlap helps at batch 64 and cannot at batch 1."""
    cat = load_catalog()
    link = cat.link("gpu-lpu-direct")
    n_ffn, hidden, lanes, act = 36, 2880, 7, 2
    times = {}
    for m in (1, 2, 4):
        plan = _plan(tmp_path, "vr-nvl72-lpx-afd", gptoss, name=f"m{m}", micro_batches=m,
                     calibration=_slow_lpu(_without_host_work()))  # an LPU-heavy chain: F + X > A
        afd = plan.pool("decode").timer.afd
        gpu, lpu, cost = StepCost(afd.attention, host=False), StepCost(afd.ffn), AFDStepCost(afd)
        assert afd.attention.engine.overlap
        for batch in (1, 64):
            o = _host_s(afd, batch)  # the engine's host work, once per step, beside the GPU
            shape = _decode_shape(gptoss, batch, 1024, 256)
            t = float(cost.total(shape))
            times[m, batch] = t
            mm = min(m, batch)  # never more micro-batches than sequences
            micro = _decode_shape(gptoss, batch / mm, 1024, 256)
            a = float(gpu.total(micro))
            f = float(lpu.total(micro))
            x = _hand_link_s(link, afd.ffn.eff, n_ffn, batch / mm, hidden, act, lanes)
            x_bw = _hand_link_s(link, afd.ffn.eff, n_ffn, batch / mm, hidden, act, lanes, with_latency=False)
            chain = a + f + x
            f_busy = f - float(cost.lpu_latency_s)  # an LPU stage is busy without the latency
            bounds = [chain, mm * a, mm * x_bw, 7 * mm * f_busy / n_ffn, o]
            assert t >= max(bounds) * (1 - 1e-9)
            assert t == pytest.approx(max(bounds), rel=1e-9)  # and nothing else adds time
    # batch 1: one sequence cannot be split, every m gives the same step
    assert times[1, 1] == pytest.approx(times[2, 1], rel=1e-12) == pytest.approx(times[4, 1], rel=1e-12)
    # batch 64, 1024-token contexts: attention (KV reads) grows with the batch, so half a batch's
    # chain A(32) + F(32) + X(32) is shorter than A(64) + F(64) + X(64), while the GPU's two
    # half-batch passes still fit under that chain (F + X > A): ping-pong wins.
    assert times[2, 64] < times[1, 64]
    # ... but 4 micro-batches make the GPU the bottleneck: each pass re-reads the attention weights
    # and pays its kernel launches, so 4 A(16) > A(32) + F(32) + X(32).
    assert times[4, 64] > times[2, 64]


def test_afd_shared_lpu_pool_serves_every_replica(tmp_path, gptoss):
    """With tp 1 (72 GPU replicas, 1 prefill -> 71 attention replicas) one LPX pool serves 71
    replicas through 36 FFN stages: per step each stage is busy 71 x F_busy / 36, where F_busy is
    the FFN time less its pipeline and hop latency (which keep no stage busy). At batch 1 that is
    below the chain, which then sets the step (the sum is a floor, not the value)."""
    plan = _plan(tmp_path, "vr-nvl72-lpx-afd", gptoss, micro_batches=1, gpu={"tp": 1, "prefill_replicas": 1},
                 calibration=_slow_lpu(_without_host_work()))
    afd = plan.pool("decode").timer.afd
    assert afd.attention.par.replicas == 71 and afd.units == 1
    cost, gpu, lpu = AFDStepCost(afd), StepCost(afd.attention, host=False), StepCost(afd.ffn)
    shape = _decode_shape(gptoss, 1, 1024, 256)
    f = float(lpu.total(shape))
    t = float(cost.total(shape))
    assert t >= float(gpu.total(shape)) + f  # never below the no-overlap floor
    assert _host_s(afd, 1) == 0.0
    busy = float(cost.parts(shape)["ffn_busy_s"])
    assert 0 < busy < f
    assert float(cost.bounds(shape)["lpu"]) == pytest.approx(71 * busy / 36, rel=1e-9)
    assert afd_bottleneck(cost, shape) == "chain"


def test_afd_lpu_bound_counts_the_busiest_pool(tmp_path, gptoss):
    """7 attention replicas over 2 LPU pools: each pool carries 3.5 replicas' micro-batches on
    average, so its stages are busy 3.5 x m x F_busy / 36 per step."""
    plan = _plan(tmp_path, "vr-nvl72-lpx-afd", gptoss, lpu={"racks_per_gpu_rack": 2})
    afd = plan.pool("decode").timer.afd
    assert afd.attention.par.replicas == 7 and afd.units == 2
    cost, lpu = AFDStepCost(afd), StepCost(afd.ffn)
    shape = _decode_shape(gptoss, 64, 1024, 256)
    m = 2
    half = _decode_shape(gptoss, 32, 1024, 256)
    f = float(lpu.total(half)) - float(cost.lpu_latency_s)  # busy time: less pipeline and hop latency
    assert 0 < f < float(lpu.total(half))
    floor = (7 / 2) * m * f / 36  # host work occupies no LPU: it adds nothing to this bound
    assert float(cost.bounds(shape)["lpu"]) >= floor * (1 - 1e-9)


# ------------------------------------------------------------------------------------------------
# 3. The GPU<->LPU link
# ------------------------------------------------------------------------------------------------


def test_faster_link_faster_users_and_smaller_round_trip_share(tmp_path, gptoss):
    # without host work: with the refit that has the MLPerf rows, Rubin's pooled host work binds
    # at batch 1 and hides the link (the host bound is checked on its own)
    links = ["gpu-lpu-on-package", "gpu-lpu-direct", "gpu-lpu-ethernet-host"]  # fastest first
    speed, share, gpu_wait = [], [], []
    cal = _without_host_work()
    for ln in links:
        est = estimate_plan(_plan(tmp_path, "vr-nvl72-lpx-afd", gptoss, name=ln, calibration=cal, link=ln), batch=1)
        speed.append(est["tok_s_per_user"])
        share.append(est["afd"]["parts_s"]["link_s"] / est["tpot_s"])
        gpu_wait.append(est["time_shares"]["gpu"]["link"])
    assert speed[0] > speed[1] > speed[2]
    assert share[0] < share[1] < share[2]
    assert gpu_wait[0] < gpu_wait[1] < gpu_wait[2]


def test_host_path_round_trips_are_a_big_part_of_the_chain(tmp_path):
    """Llama-3.1-70B has 80 FFN layers: 160 host-path crossings per token at 10 us each are 1.6 ms
    of pure latency, paid every step (alpha from the catalog, not bandwidth)."""
    cat = load_catalog()
    m = load_model("llama-3.1-70b")
    host = cat.link("gpu-lpu-ethernet-host")
    est = estimate_plan(_plan(tmp_path, "vr-nvl72-lpx-afd", m, link="gpu-lpu-ethernet-host", micro_batches=1),
                        batch=1)
    p = est["afd"]["parts_s"]
    latency_floor = 2 * 80 * float(host.latency_s.value)
    assert est["afd"]["bottleneck"] == "chain"
    assert p["link_s"] >= latency_floor
    assert (p["link_s"] - p["link_bw_s"]) / p["link_s"] > 0.9     # latency-bound, not bandwidth-bound
    assert p["link_s"] / est["tpot_s"] > 0.15                      # a large share of every token
    # the round trips cost about as much as all the attention, or all the FFN, of the token
    assert p["link_s"] > 0.75 * p["attention_s"] and p["link_s"] > 0.75 * p["ffn_s"]
    # ... and about 5x what the direct link costs
    direct = estimate_plan(_plan(tmp_path, "vr-nvl72-lpx-afd", m, name="direct", micro_batches=1), batch=1)
    assert p["link_s"] > 4 * direct["afd"]["parts_s"]["link_s"]


# ------------------------------------------------------------------------------------------------
# 4. LPU-only chip counts follow from SRAM
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name, racks", [("gpt-oss-120b", 2), ("llama-3.1-8b", 1), ("llama-3.1-70b", 2)])
def test_lpu_pipeline_holds_the_weights_in_sram(tmp_path, name, racks):
    m = load_model(name)
    plan = _plan(tmp_path, "lpx", m, lpu={"racks": racks})
    dep = plan.prefill_pool.deployment
    sram = float(load_catalog().chip("groq3-lpu").mem_bytes.value)
    need = math.ceil(weight_bytes_total(m, dep.plan) / (sram * (1 - dep.eff.mem_reserve)))
    assert dep.chips_per_replica >= need
    assert dep.chips_per_replica % LPX_CHIPS == 0           # a pipeline takes whole racks
    assert dep.par.replicas == racks * LPX_CHIPS // dep.chips_per_replica
    assert dep.chips_per_replica - need < LPX_CHIPS          # ... but no more racks than needed


def test_smaller_sram_needs_more_chips_or_more_racks(tmp_path, gptoss):
    small = load_catalog().with_overrides(["groq3-lpu.mem_bytes=2e8"])
    normal = _plan(tmp_path, "lpx", gptoss).prefill_pool.deployment
    plan = _plan(tmp_path, "lpx", gptoss, name="small", catalog=small)
    dep = plan.prefill_pool.deployment
    need = math.ceil(weight_bytes_total(gptoss, dep.plan) / (2e8 * (1 - dep.eff.mem_reserve)))
    assert need > LPX_CHIPS                                   # ~61 GB / 190 MB = ~330 chips
    assert dep.chips_per_replica >= need > normal.chips_per_replica
    assert dep.par.replicas == 1                              # 2 racks hold one 512-chip pipeline
    with pytest.raises(InputError, match=rf"lpu\.racks to at least {math.ceil(need / LPX_CHIPS)}"):
        _plan(tmp_path, "lpx", gptoss, name="small1", catalog=small, lpu={"racks": 1})


def test_lpu_batch_beyond_sram_kv_is_refused(tmp_path, gptoss):
    plan = _plan(tmp_path, "lpx", gptoss)
    cap = estimate_plan(plan, batch=1, input_len=1024, output_len=256)["max_batch_at_context"]
    assert cap >= 1
    estimate_plan(plan, batch=cap, input_len=1024, output_len=256)
    with pytest.raises(InputError, match="SRAM"):
        estimate_plan(plan, batch=cap + 1, input_len=1024, output_len=256)


# ------------------------------------------------------------------------------------------------
# 5. More LPX racks never hurt
# ------------------------------------------------------------------------------------------------


def test_more_lpx_racks_never_lower_speed_or_throughput(tmp_path, gptoss):
    best = {1: [], 64: []}
    out_tok = {(b, m): [] for b in (1, 64) for m in (1, 2, 4)}
    for r in (1, 2, 4):
        per_user = {1: [], 64: []}
        for m in (1, 2, 4):
            plan = _plan(tmp_path, "vr-nvl72-lpx-afd", gptoss, name=f"r{r}m{m}", micro_batches=m,
                         lpu={"racks_per_gpu_rack": r})
            assert plan.pool("decode").timer.afd.units == r  # one ~61 GB FFN copy per 256-LPU rack
            assert plan.total_racks == 1 + r
            for b in (1, 64):
                est = estimate_plan(plan, batch=b)
                per_user[b].append(est["tok_s_per_user"])
                out_tok[b, m].append(est["output_tok_s"])
        for b in (1, 64):
            best[b].append(max(per_user[b]))
    for b in (1, 64):
        assert all(x <= y * (1 + 1e-12) for x, y in zip(best[b], best[b][1:])), best[b]
    for k, v in out_tok.items():
        assert all(x <= y * (1 + 1e-12) for x, y in zip(v, v[1:])), (k, v)


# ------------------------------------------------------------------------------------------------
# 6. Speculative decoding
# ------------------------------------------------------------------------------------------------


def test_expected_tokens_per_step_golden():
    for k in (1, 3, 4, 8):
        assert expected_tokens_per_step(0.0, k) == 1.0          # nothing accepted: the target's own token
        assert expected_tokens_per_step(1.0, k) == k + 1        # every draft accepted
    assert expected_tokens_per_step(0.5, 3) == pytest.approx(1 + 0.5 + 0.25 + 0.125)  # 1.875
    assert expected_tokens_per_step(0.7, 4) == pytest.approx(1 + 0.7 + 0.49 + 0.343 + 0.2401)
    for bad in (-0.1, 1.2):
        with pytest.raises(InputError, match="acceptance"):
            expected_tokens_per_step(bad, 4)
    with pytest.raises(InputError):
        expected_tokens_per_step(0.5, 0)


def test_spec_speed_rises_with_acceptance_and_is_overhead_at_zero(tmp_path, gptoss):
    speed = {}
    for a in (0.0, 0.3, 0.6, 0.9):
        plan = _plan(tmp_path, "vr-nvl72-lpx-spec", gptoss, name=f"a{a}", spec={"acceptance": a})
        speed[a] = estimate_plan(plan, batch=1)["tok_s_per_user"]
    assert speed[0.3] < speed[0.6] < speed[0.9]
    gpu_only = estimate_plan(build_plan(load_spec(EXAMPLES / "vr-nvl72.yaml"), gptoss), batch=1)["tok_s_per_user"]
    # acceptance 0: every cycle drafts k tokens and verifies k + 1 to emit one token
    assert speed[0.0] < gpu_only


def _gen_at_completion(monkeypatch):
    """Record each request's generated-token count when the simulator completes it."""
    import infersim.serving.engine as engine
    seen: dict[int, tuple[int, int]] = {}
    orig = engine.Simulation.complete

    def complete(self, rid, replica, t):
        seen[rid] = (self.state.gen[rid], self.state.out[rid])
        return orig(self, rid, replica, t)
    monkeypatch.setattr(engine.Simulation, "complete", complete)
    return seen


def test_spec_simulation_matches_estimate(monkeypatch, gptoss):
    """8 closed-loop users on 9 target replicas: the least-outstanding router gives each its own
    replica, so every replica decodes a batch of 1 -> compare with estimate_plan(batch=1).

    The gap: the estimate divides a cycle by E = 2.7731 tokens (fractional cycles, 63 / E = 22.72
    per request); the simulator runs whole verifications, 23 for the 63 tokens after the first
    (the surplus accepted tokens of the last one are dropped at the output's end), so its TPOT is
    23 / 22.72 = 1.2% higher. Reproduced here by counting the verifications by hand."""
    seen = _gen_at_completion(monkeypatch)
    plan = build_plan(load_spec(EXAMPLES / "vr-nvl72-lpx-spec.yaml"), gptoss)
    assert plan.prefill_pool.deployment.par.replicas == 9
    inp, out = 500, 64  # 564-token contexts (block-aligned ones have their own test below)
    res = simulate_plan(plan, closed_loop(8, 16, inp, out), debug=True)
    r = res.records
    assert r.completed.all() and res.summary["requests_completed"] == 16
    assert len(seen) == 16 and all(g == o == out for g, o in seen.values())
    est = estimate_plan(plan, batch=1, input_len=inp, output_len=out)
    sim_tpot = res.summary["tpot_s"]["mean"]
    assert sim_tpot == pytest.approx(est["tpot_s"], rel=0.10)
    # whole verifications: E accumulates, a verification keeps floor(credit) tokens (1..k+1)
    e = 1 + 0.7 + 0.7 ** 2 + 0.7 ** 3 + 0.7 ** 4
    credit, gen, steps = 0.0, 1, 0
    while gen < out:
        credit += e
        a = int(credit)
        credit -= a
        gen += max(1, min(a, 5, out - gen))
        steps += 1
    assert steps == 23
    assert sim_tpot == pytest.approx(steps * est["spec"]["cycle_s"] / (out - 1), rel=2e-3)


def test_spec_simulation_block_aligned_context(gptoss):
    plan = build_plan(load_spec(EXAMPLES / "vr-nvl72-lpx-spec.yaml"), gptoss)
    res = simulate_plan(plan, closed_loop(4, 8, 512, 64), debug=True)  # 576 = 36 blocks of 16
    assert res.records.completed.all()


# ------------------------------------------------------------------------------------------------
# 7. Every example builds, estimates and simulates
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "vr-nvl72", "vr-nvl72-lpx-afd", "vr-nvl72-lpx-spec", "lpx", "cs3"])
def test_every_example_builds_estimates_and_simulates(name, gptoss):
    d = _example(name)
    plan = build_plan(load_spec(EXAMPLES / f"{name}.yaml"), gptoss)
    racks, power = racks_and_power(d)
    # by hand: vr-nvl72 1 rack 210 kW; afd/spec 1 NVL72 + 1 LPX = 2 racks 370 kW; lpx 2 x 160 kW; cs3 16 x 23 kW
    assert plan.total_racks == racks and plan.power_w == pytest.approx(power)

    est = estimate_plan(plan, batch=8, input_len=512, output_len=64)
    assert est["tpot_s"] > 0 and est["output_tok_s"] > 0
    assert est["tok_s_per_rack"] == pytest.approx(est["output_tok_s"] / racks, rel=1e-12)
    assert est["tok_s_per_mw"] == pytest.approx(est["output_tok_s"] / (power / 1e6), rel=1e-12)

    res = simulate_plan(plan, closed_loop(8, 24, 512, 64), debug=True)
    s, r = res.summary, res.records
    assert s["requests_completed"] == 24 and r.completed.all()
    assert np.array_equal(r.output_tokens, np.full(24, 64))
    assert np.all(r.first_token_s <= r.completion_s)
    # throughput from the per-request records: 24 x 64 tokens by the last completion (the run starts at t = 0)
    assert r.output_tokens.sum() == 24 * 64
    tok_s = 24 * 64 / float(r.completion_s.max())
    assert s["output_tok_s"] == pytest.approx(tok_s, rel=1e-12)
    assert s["output_tok_s_per_rack"] == pytest.approx(tok_s / racks, rel=1e-12)
    assert s["output_tok_s_per_mw"] == pytest.approx(tok_s / (power / 1e6), rel=1e-12)


# ------------------------------------------------------------------------------------------------
# 8. SLO routing
# ------------------------------------------------------------------------------------------------


def test_slo_routing_premium_on_lpu(tmp_path, gptoss):
    d = {"name": "routed", "mode": "gpu",
         "gpu": {"system": "vr-nvl72", "racks": 1, "tp": 8, "precision": "fp8"},
         "lpu": {"system": "lpx", "racks": 1, "precision": "mixed"},
         "routing": {"premium_fraction": 0.3, "premium_path": "lpu"}}
    plan = build_plan(load_spec(_write(tmp_path, d)), gptoss)
    assert plan.racks == {"gpu": 1, "lpu": 1}
    assert plan.power_w == pytest.approx(system_power_w("vr-nvl72") + system_power_w("lpx"))
    n = 200
    res = simulate_plan(plan, poisson(20.0, n, 512, 64, seed=1), debug=True)
    r, s = res.records, res.summary
    # every request exactly once, in trace order, all completed
    assert np.array_equal(r.request_id, np.arange(n))
    assert r.completed.all() and s["requests_completed"] == n
    # premium replicas are numbered after the 9 GPU replicas (72 / tp 8): one LPX pipeline -> index 9
    premium = r.replica >= 9
    assert set(np.unique(r.replica[premium])) == {9}
    assert set(np.unique(r.replica[~premium])) <= set(range(9))
    cls = s["classes"]
    assert cls["premium"]["requests_completed"] == premium.sum()
    assert cls["standard"]["requests_completed"] == (~premium).sum()
    assert cls["premium"]["requests_completed"] + cls["standard"]["requests_completed"] == n
    # seeded Bernoulli(0.3) over 200 requests: within 5 points (about 1.5 binomial sd of 3.2 points)
    assert abs(premium.mean() - 0.3) < 0.05
    # the LPU path is faster per token than the GPU path
    tpot = r.tpot_s()
    assert np.nanmean(tpot[premium]) < np.nanmean(tpot[~premium])
    assert cls["premium"]["tpot_s"]["mean"] < cls["standard"]["tpot_s"]["mean"]
    # 1 NVL72 + 1 LPX rack; tokens and time from the per-request records (the run starts at t = 0)
    tok_s = float(r.output_tokens.sum()) / float(r.completion_s.max())
    assert s["output_tok_s"] == pytest.approx(tok_s, rel=1e-12)
    assert s["output_tok_s_per_rack"] == pytest.approx(tok_s / 2, rel=1e-12)
    assert s["output_tok_s_per_mw"] == pytest.approx(tok_s / ((system_power_w("vr-nvl72") + system_power_w("lpx")) / 1e6),
                                                     rel=1e-12)


# ------------------------------------------------------------------------------------------------
# 9. Bad input
# ------------------------------------------------------------------------------------------------


def test_ffn_weights_over_lpu_sram_names_the_ratio(tmp_path):
    m = load_model("deepseek-v3")
    ffn = ffn_part(m)
    probe = build_deployment(ffn, "groq3-lpu", chips=1, precision="mixed")
    sram = float(probe.chip.mem_bytes.value) * (1 - probe.eff.mem_reserve)
    need = math.ceil(weight_bytes_total(ffn, probe.plan) / sram)   # ~658 GB / 475 MB = ~1385 LPUs
    racks = math.ceil(need / LPX_CHIPS)                              # 6 LPX racks per NVL72
    assert racks > 1
    with pytest.raises(InputError, match=rf"racks_per_gpu_rack to at least {racks}\b"):
        build_plan(load_spec(EXAMPLES / "vr-nvl72-lpx-afd.yaml"), m)


def test_kv_over_gpu_hbm_is_refused(gptoss):
    for name in ("vr-nvl72-lpx-afd", "vr-nvl72"):
        plan = build_plan(load_spec(EXAMPLES / f"{name}.yaml"), gptoss)
        with pytest.raises(InputError, match="HBM"):
            estimate_plan(plan, batch=10 ** 6, input_len=8192, output_len=1024)


def test_afd_without_link_is_refused(tmp_path):
    d = _example("vr-nvl72-lpx-afd")
    del d["link"]
    with pytest.raises(InputError, match="link"):
        load_spec(_write(tmp_path, d))


def test_acceptance_outside_unit_interval_is_refused(tmp_path):
    with pytest.raises(InputError, match="acceptance"):
        load_spec(_variant(tmp_path, "vr-nvl72-lpx-spec", spec={"acceptance": 1.2}))


@pytest.mark.parametrize("where, field", [(None, "micro_batch"), ("gpu", "tensor_parallel"), ("lpu", "rack")])
def test_unknown_field_is_named(tmp_path, where, field):
    d = _example("vr-nvl72-lpx-afd")
    (d if where is None else d[where])[field] = 2
    loc = field if where is None else f"{where}.{field}"
    with pytest.raises(InputError, match=rf"'{loc}'"):
        load_spec(_write(tmp_path, d))
