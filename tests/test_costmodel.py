"""Cost-model behaviour: hand-computed golden cases for the operator work, physical roofline
bounds on the estimate, monotonicity under faster hardware, memory fit, and deployment errors.

Every expected number here is derived by hand from the model's published dimensions or the chip's
datasheet (written out in comments); none is copied from what the cost model outputs."""
from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from infersim.catalog.hardware import load_catalog
from infersim.catalog.models import AttentionSpec, load_model
from infersim.calibration.efficiency import FIELD_NAMES, load_calibration
from infersim.costmodel.memory import kv_bytes_per_seq
from infersim.mapping.precision import plan_precision
from infersim.costmodel.step import step_time
from infersim.costmodel.work import (Batch, Sharding, attended_keys, attention_ops, expected_distinct_experts,
                                     model_ops)
from infersim.mapping.deployment import build_deployment
from infersim.errors import InputError
from infersim.estimate import estimate

PROPERTY = settings(max_examples=50, deadline=None)  # randomness: the profile (tests/conftest.py)
GB = 1e9


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def _plan(cat, chip: str, precision: str):
    c = cat.chip(chip)
    return plan_precision(precision, c.peak_flops, c.name)


def _ops_by_name(ops):
    out = {}
    for op in ops:
        out.setdefault(op.name, []).append(op)
    return out


# ------------------------------------------------------------------------------------------------
# work.py: golden cases
# ------------------------------------------------------------------------------------------------


def _brute_keys(past: int, q: int, window: int | None) -> int:
    """Causal attention: the query at (1-based) position pos sees keys 1..pos, or the last `window` of them."""
    return sum(pos if window is None else min(pos, window) for pos in range(past + 1, past + q + 1))


@PROPERTY
@given(past=st.integers(0, 80), q=st.integers(1, 80), window=st.one_of(st.none(), st.integers(1, 200)))
@example(past=50, q=10, window=20)     # window < past: every query is window-limited
@example(past=10, q=30, window=25)     # window boundary inside the query range
@example(past=3, q=5, window=100)      # window larger than every position: same as full attention
@example(past=0, q=1, window=None)     # first token sees only itself
def test_attended_keys_equals_brute_force_sum(past, q, window):
    assert float(attended_keys(past, q, window)) == _brute_keys(past, q, window)


def test_attended_keys_broadcasts_over_arrays():
    past = np.array([0, 5, 100, 7])
    q = np.array([1, 9, 3, 40])
    for window in (None, 4, 64):
        got = attended_keys(past, q, window)
        want = [_brute_keys(int(p), int(n), window) for p, n in zip(past, q)]
        assert np.array_equal(got, np.array(want, dtype=float))


# Llama-3.1-8B (config.json): hidden 4096, 32 heads, 8 KV heads, head_dim 128, SwiGLU intermediate 14336,
# vocab 128256, 32 layers, no biases.
# attention projections: q 4096x(32*128) + k 4096x(8*128) + v 4096x(8*128) + o (32*128)x4096
L8B_ATTN_PARAMS = 4096 * 4096 + 4096 * 1024 + 4096 * 1024 + 4096 * 4096  # = 41_943_040
# SwiGLU: gate, up (4096x14336) and down (14336x4096)
L8B_FFN_PARAMS = 3 * 4096 * 14336  # = 176_160_768
L8B_LM_HEAD_PARAMS = 128256 * 4096  # = 525_336_576


def test_llama31_8b_hand_param_counts_are_what_we_think():
    # sanity of the hand arithmetic itself (so a typo in a constant cannot hide)
    assert L8B_ATTN_PARAMS == 41_943_040
    assert L8B_FFN_PARAMS == 176_160_768
    # total = embedding + lm_head + 32 x (attn + ffn + 2 RMSNorm vectors) + final norm = 8,030,261,248,
    # the parameter count Meta publishes for Llama-3.1-8B
    assert 2 * L8B_LM_HEAD_PARAMS + 32 * (L8B_ATTN_PARAMS + L8B_FFN_PARAMS + 2 * 4096) + 4096 == 8_030_261_248
    assert load_model("llama-3.1-8b").total_params == 8_030_261_248


@pytest.mark.parametrize("tp", [1, 2, 8])
@pytest.mark.parametrize("batch", [1, 8])
def test_dense_gemm_flops_llama31_8b_decode(cat, tp, batch):
    """A decode step multiplies every weight once per token: 2 FLOPs (multiply + add) per parameter
    per sequence, split evenly over tp chips."""
    m = load_model("llama-3.1-8b")
    ops = _ops_by_name(model_ops(m, Batch(seqs=np.float64(batch), new=np.float64(1), past=np.float64(1000)),
                                 Sharding(tp=tp), _plan(cat, "h100-sxm", "bf16")))
    (attn,) = ops["attention.proj"]
    (ffn,) = ops["ffn.dense"]
    (head,) = ops["lm_head"]
    assert attn.count == 32 and ffn.count == 32 and head.count == 1
    assert float(attn.flops) == 2 * L8B_ATTN_PARAMS * batch / tp
    assert float(ffn.flops) == 2 * L8B_FFN_PARAMS * batch / tp
    assert float(head.flops) == 2 * L8B_LM_HEAD_PARAMS * batch / tp
    # every chip must at least stream its share of the bf16 (2-byte) weights
    assert float(attn.bytes) >= L8B_ATTN_PARAMS * 2 / tp
    assert float(ffn.bytes) >= L8B_FFN_PARAMS * 2 / tp


def test_dense_gemm_flops_llama31_8b_prefill(cat):
    """Prefill of 4 prompts x 16 tokens: 64 token rows through each projection; lm_head only for the
    last token of each prompt (4 rows)."""
    m = load_model("llama-3.1-8b")
    ops = _ops_by_name(model_ops(m, Batch(seqs=np.float64(4), new=np.float64(16), past=np.float64(0)),
                                 Sharding(), _plan(cat, "h100-sxm", "bf16")))
    assert float(ops["ffn.dense"][0].flops) == 2 * L8B_FFN_PARAMS * 64
    assert float(ops["attention.proj"][0].flops) == 2 * L8B_ATTN_PARAMS * 64
    assert float(ops["lm_head"][0].flops) == 2 * L8B_LM_HEAD_PARAMS * 4


def test_attention_core_flops_llama31_8b(cat):
    """Scores (q.k, head_dim 128 MACs) plus value mix (128 MACs) per (query, key) pair per head:
    2 * 32 heads * (128 + 128) FLOPs per attended key."""
    m = load_model("llama-3.1-8b")
    (layer, _), = m.layer_groups()
    plan = _plan(cat, "h100-sxm", "bf16")
    per_pair = 2 * 32 * (128 + 128)  # = 16_384
    # decode after 1023 cached tokens: the new token attends 1024 keys
    dec = _ops_by_name(attention_ops(layer.mixer, m, Batch(np.float64(1), np.float64(1), np.float64(1023)),
                                     Sharding(), plan, 32))["attention.core"][0]
    assert float(dec.flops) == per_pair * 1024  # = 16_777_216
    # causal prefill of 4 tokens: 1 + 2 + 3 + 4 = 10 pairs
    pre = _ops_by_name(attention_ops(layer.mixer, m, Batch(np.float64(1), np.float64(4), np.float64(0)),
                                     Sharding(), plan, 32))["attention.core"][0]
    assert float(pre.flops) == per_pair * 10
    # two heads per chip group at tp=2 halves the work per chip
    dec2 = _ops_by_name(attention_ops(layer.mixer, m, Batch(np.float64(1), np.float64(1), np.float64(1023)),
                                      Sharding(tp=2), plan, 32))["attention.core"][0]
    assert float(dec2.flops) == per_pair * 1024 / 2


def test_sliding_window_attention_flops_gpt_oss(cat):
    """gpt-oss-20b sliding layers (window 128, 64 heads of dim 64): a decode token after 1023 cached
    tokens attends only the last 128 keys -> 2 * 64 * (64 + 64) * 128 FLOPs."""
    m = load_model("gpt-oss-20b")
    windowed = [l.mixer for l, _ in m.layer_groups() if isinstance(l.mixer, AttentionSpec) and l.mixer.window]
    assert windowed and windowed[0].window == 128
    op = _ops_by_name(attention_ops(windowed[0], m, Batch(np.float64(1), np.float64(1), np.float64(1023)),
                                    Sharding(), _plan(cat, "h100-sxm", "bf16"), 12))["attention.core"][0]
    assert float(op.flops) == 2 * 64 * (64 + 64) * 128  # = 2_097_152


def test_moe_expert_flops_mixtral_decode(cat):
    """Mixtral-8x7B: 8 SwiGLU experts of 3 x 4096 x 14336 params, top-2. One decoded token runs 2
    experts: 2 * 2 * 176,160,768 FLOPs; the router is a 4096 x 8 matrix (2 * 32,768 FLOPs)."""
    m = load_model("mixtral-8x7b")
    ops = _ops_by_name(model_ops(m, Batch(np.float64(1), np.float64(1), np.float64(100)), Sharding(),
                                 _plan(cat, "h100-sxm", "bf16")))
    expert = 3 * 4096 * 14336
    assert float(ops["moe.experts"][0].flops) == 2 * 2 * expert
    assert float(ops["moe.shared"][0].flops) == 2 * 4096 * 8
    # the two chosen experts' bf16 weights must be read
    assert float(ops["moe.experts"][0].bytes) >= 2 * expert * 2


@pytest.mark.parametrize("precision,kv_bytes", [("fp8", 1), ("bf16", 2)])
def test_kv_bytes_per_token_llama31_70b(cat, precision, kv_bytes):
    """Llama-3.1-70B: 80 layers, 8 KV heads of dim 128. Per token per layer: K and V, 8 x 128 values
    each, at 1 byte (fp8 cache) or 2 bytes (bf16) -> 2 * 8 * 128 * bytes."""
    m = load_model("llama-3.1-70b")
    dep = build_deployment(m, "hgx-h100", tp=8, precision=precision, catalog=cat)
    per_layer = 2 * 8 * 128 * kv_bytes  # 2048 B (fp8) / 4096 B (bf16)
    assert float(kv_bytes_per_seq(dep, 1)) / 80 == per_layer
    # the cache grows linearly with context: 1000 tokens hold 1000 x 80 x per_layer bytes
    assert float(kv_bytes_per_seq(dep, 1000)) == 1000 * 80 * per_layer


def test_kv_bytes_sliding_window_gpt_oss_20b(cat):
    """gpt-oss-20b: 24 layers alternating full / 128-token sliding window, 8 KV heads of dim 64, bf16
    cache: 2 * 8 * 64 * 2 = 2048 B per token per layer. At 4096 tokens: 12 full layers keep all 4096
    tokens, 12 sliding layers keep 128."""
    m = load_model("gpt-oss-20b")
    dep = build_deployment(m, "h100-sxm", precision="bf16", catalog=cat)
    assert float(kv_bytes_per_seq(dep, 4096)) == 12 * 4096 * 2048 + 12 * 128 * 2048  # = 103_809_024


def test_expected_distinct_experts_limits():
    # one token touches exactly its top-k experts
    for e, k in ((8, 2), (128, 8), (256, 8), (32, 4)):
        assert float(expected_distinct_experts(e, k, 1)) == pytest.approx(k, rel=1e-12)
        # very many tokens touch every expert
        assert float(expected_distinct_experts(e, k, 1_000_000)) == pytest.approx(e, rel=1e-9)
    # top_k == n_experts: every expert from the first token on
    assert float(expected_distinct_experts(16, 16, 1)) == pytest.approx(16)


@PROPERTY
@given(e=st.integers(2, 256), data=st.data(), t=st.integers(1, 5000))
def test_expected_distinct_experts_monotone_and_bounded(e, data, t):
    k = data.draw(st.integers(1, e))
    here, more = float(expected_distinct_experts(e, k, t)), float(expected_distinct_experts(e, k, t + 1))
    assert more >= here - 1e-9                    # more tokens never touch fewer experts
    assert k - 1e-9 <= here <= e + 1e-9           # at least one token's top-k, at most all experts
    assert here <= k * t + 1e-9                   # T tokens can touch at most k*T distinct experts


# ------------------------------------------------------------------------------------------------
# Roofline bounds: the estimate can never beat the hardware
# ------------------------------------------------------------------------------------------------

# Bytes one stored weight takes at least, for the precision a user asks for (format definitions):
# bf16 16 bits; fp8 and Groq's "mixed" (8-bit weights) 8 bits; fp4 at least 4 bits.
MIN_WEIGHT_BYTES = {"bf16": 2.0, "fp8": 1.0, "mixed": 1.0, "fp4": 0.5}
# Peak (dense, datasheet) a matrix product in that format can at best run at.
PEAK_KEY = {"bf16": "bf16", "fp8": "fp8", "mixed": "fp8", "fp4": "fp4"}
# KV-cache values take at least 1 byte (fp8 is the narrowest cache format a chip stores here).
MIN_KV_BYTES = 1.0

ROOFLINE_CASES = [
    # model, system, layout, precision
    ("llama-3.1-8b", "h100-sxm", dict(tp=1), "bf16"),
    ("llama-3.1-70b", "hgx-h100", dict(tp=8), "fp8"),
    ("llama-3.1-70b", "h100-sxm", dict(tp=4, pp=2), "bf16"),
    ("mixtral-8x7b", "h100-sxm", dict(tp=2), "bf16"),
    ("deepseek-v3", "hgx-h200", dict(tp=8), "fp8"),
    ("qwen3-235b-a22b", "hgx-h200", dict(tp=2, ep=4), "fp8"),
    ("nemotron-3-super", "gb200-nvl72", dict(tp=8), "fp8"),
    ("llama-3.1-8b", "b200", dict(tp=1), "fp4"),
    ("llama-3.3-70b", "groq-lpu-v1", dict(chips=576), "mixed"),
    ("llama-3.1-8b", "cs3", dict(), "bf16"),
    ("llama-3.1-70b", "cerebras-wse3", dict(chips=4), "bf16"),
]


def _peak(chip, precision: str) -> float:
    q = chip.peak_flops.get(PEAK_KEY[precision])
    if q is not None and q.value:
        return float(q.value)
    return max(float(v.value) for v in chip.peak_flops.values() if v.value)  # the chip's fastest mode at best


def _full_gqa_kv_elems_per_token(m) -> int:
    """K+V values per token over full-attention GQA layers (2 x kv_heads x head_dim each); windowed,
    MLA and Mamba layers are left out, which only weakens the bound."""
    return sum(2 * l.mixer.n_kv_heads * l.mixer.head_dim for l in m.layers
               if isinstance(l.mixer, AttentionSpec) and l.mixer.kind == "gqa"
               and not l.mixer.window and not l.mixer.chunk)


def _bounds(m, chip, precision, chips_per_replica, batch, input_len):
    """(decode step lower bound, prefill lower bound) in seconds, from datasheet peaks.

    Decode: every active weight is read at least once per step, and every sequence's cached K/V of
    at least `input_len` tokens; every active weight does 2 FLOPs per sequence. Prefill: 2 FLOPs per
    active non-lm_head weight per prompt token, plus the lm_head for the last token of each prompt.
    All chips of a replica share the work at best evenly."""
    bw = float(chip.mem_bw_bytes_per_s.value)
    peak = _peak(chip, precision)
    lm_head = m.vocab * m.hidden
    dec_bytes = m.active_params * MIN_WEIGHT_BYTES[precision] \
        + batch * input_len * _full_gqa_kv_elems_per_token(m) * MIN_KV_BYTES
    dec_mem = dec_bytes / (chips_per_replica * bw)
    dec_flops = 2 * m.active_params * batch / (chips_per_replica * peak)
    pre_flops = (2 * (m.active_params - lm_head) * batch * input_len + 2 * lm_head * batch) / (chips_per_replica * peak)
    return max(dec_mem, dec_flops), pre_flops


@pytest.mark.parametrize("calibration", [None, "none"], ids=["fitted", "defaults"])
@pytest.mark.parametrize("model,system,layout,precision", ROOFLINE_CASES,
                         ids=[f"{c[0]}@{c[1]}" for c in ROOFLINE_CASES])
def test_estimate_never_beats_roofline(cat, model, system, layout, precision, calibration):
    m = load_model(model)
    cal = load_calibration(calibration)
    for batch in (1, 8, 32):
        e = estimate(m, system, batch=batch, input_len=2048, output_len=64, precision=precision,
                     catalog=cat, calibration=cal, **layout)
        chip = cat.chip(e.chip)
        per_replica = e.chips // e.parallel["replicas"]
        dec_lb, pre_lb = _bounds(m, chip, precision, per_replica, batch, 2048)
        assert e.tpot_s >= dec_lb, f"batch {batch}: TPOT {e.tpot_s} below the roofline {dec_lb}"
        assert e.ttft_s >= pre_lb, f"batch {batch}: TTFT {e.ttft_s} below the compute bound {pre_lb}"


def _eff_strategy():
    """Any physically possible efficiency set: achieved fractions of peak in (0, 1], non-negative
    fixed latencies, a roofline blend between soft (p=1) and nearly hard (p=16)."""
    parts = {}
    for f in FIELD_NAMES:
        if f.endswith("_eff"):
            parts[f] = st.floats(0.05, 1.0)
        elif f == "blend_p":
            parts[f] = st.floats(1.0, 16.0)
        elif f == "mem_reserve":
            parts[f] = st.floats(0.0, 0.2)
        else:  # fixed latencies, seconds
            parts[f] = st.floats(0.0, 1e-4)
    return st.fixed_dictionaries(parts)


_DEPS: dict = {}


def _dep(i: int):
    if i not in _DEPS:
        model, system, layout, precision = ROOFLINE_CASES[i]
        _DEPS[i] = build_deployment(load_model(model), system, precision=precision, **layout)
    return _DEPS[i]


@PROPERTY
@given(i=st.integers(0, len(ROOFLINE_CASES) - 1), eff=_eff_strategy(), batch=st.integers(1, 512),
       input_len=st.integers(1, 8192))
def test_step_time_respects_roofline_for_any_efficiency_up_to_one(i, eff, batch, input_len):
    """Whatever the calibration says (as long as no efficiency exceeds 100 %), a step cannot take less
    time than the datasheet memory bandwidth and peak FLOP/s allow."""
    base = _dep(i)
    dep = dataclasses.replace(base, eff=base.eff.with_values(**eff))
    m, chip = dep.model, dep.chip
    dec_lb, pre_lb = _bounds(m, chip, ROOFLINE_CASES[i][3], dep.chips_per_replica, batch, input_len)
    with np.errstate(all="ignore"):
        dec = float(step_time(dep, batch, 1, input_len, 1).total)
        pre = float(step_time(dep, batch, input_len, 0).total)
    assert dec >= dec_lb * (1 - 1e-9)
    assert pre >= pre_lb * (1 - 1e-9)


def test_large_blend_p_tends_to_hard_roofline_not_zero():
    dep = _dep(0)  # llama-3.1-8b on one H100, bf16
    eff = dep.eff.with_values(**{f: (1.0 if f.endswith("_eff") else 100.0 if f == "blend_p"
                                     else dep.eff.mem_reserve if f == "mem_reserve" else 0.0) for f in FIELD_NAMES})
    d = dataclasses.replace(dep, eff=eff)
    dec_lb, _ = _bounds(d.model, d.chip, "bf16", 1, 1, 1024)
    with np.errstate(all="ignore"):
        assert float(step_time(d, 1, 1, 1024, 1).total) >= dec_lb


# ------------------------------------------------------------------------------------------------
# Monotonicity: faster hardware is never slower; more chips never lower throughput
# ------------------------------------------------------------------------------------------------

MONO_CASES = [
    # model, system, layout, precision, chip, links the layout's collectives may cross
    ("llama-3.1-8b", "h100-sxm", dict(tp=1), "bf16", "h100-sxm", ()),
    ("llama-3.1-70b", "hgx-h100", dict(tp=8), "fp8", "h100-sxm", ("nvlink4", "infiniband-ndr-400g")),
    ("nemotron-3-super", "gb200-nvl72", dict(tp=8), "fp8", "gb200", ("nvlink5", "infiniband-ndr-400g")),
    ("llama-3.3-70b", "groq-lpu-v1", dict(chips=576), "mixed", "groq-lpu-v1", ("groq-c2c-v1", "groq-c2c-v1-global")),
    ("llama-3.1-70b", "cerebras-wse3", dict(chips=4), "bf16", "cerebras-wse3", ("cerebras-swarmx",)),
]
MONO_IDS = [f"{c[0]}@{c[1]}" for c in MONO_CASES]


def _est(cat, model, system, layout, precision, batch=8, input_len=1024, output_len=128):
    return estimate(load_model(model), system, batch=batch, input_len=input_len, output_len=output_len,
                    precision=precision, catalog=cat, **layout)


@pytest.mark.parametrize("model,system,layout,precision,chip,links", MONO_CASES, ids=MONO_IDS)
def test_more_memory_bandwidth_is_never_slower(cat, model, system, layout, precision, chip, links):
    bw = float(cat.chip(chip).mem_bw_bytes_per_s.value)
    base = _est(cat, model, system, layout, precision)
    for k in (1.5, 2.0, 10.0):
        fast = _est(cat.with_overrides([f"{chip}.mem_bw_bytes_per_s={bw * k:.6e}"]), model, system, layout, precision)
        assert fast.ttft_s <= base.ttft_s * (1 + 1e-12)
        assert fast.tpot_s <= base.tpot_s * (1 + 1e-12)


def test_more_memory_bandwidth_speeds_up_memory_bound_decode(cat):
    """Batch-1 decode of an 8B model on one H100 streams 16 GB of weights per token: doubling the
    HBM bandwidth must make it strictly faster."""
    base = _est(cat, "llama-3.1-8b", "h100-sxm", dict(tp=1), "bf16", batch=1)
    fast = _est(cat.with_overrides(["h100-sxm.mem_bw_bytes_per_s=6.7e12"]), "llama-3.1-8b", "h100-sxm", dict(tp=1),
                "bf16", batch=1)
    assert fast.tpot_s < base.tpot_s


@pytest.mark.parametrize("model,system,layout,precision,chip,links", MONO_CASES, ids=MONO_IDS)
def test_more_peak_flops_is_never_slower(cat, model, system, layout, precision, chip, links):
    c = cat.chip(chip)
    base = _est(cat, model, system, layout, precision)
    for k in (1.5, 4.0):
        sets = [f"{chip}.peak_flops.{key}={float(q.value) * k:.6e}" for key, q in c.peak_flops.items() if q.value]
        fast = _est(cat.with_overrides(sets), model, system, layout, precision)
        assert fast.ttft_s <= base.ttft_s * (1 + 1e-12)
        assert fast.tpot_s <= base.tpot_s * (1 + 1e-12)


def test_more_peak_flops_speeds_up_compute_bound_prefill(cat):
    """Prefill of 8 x 2048 tokens of an 8B model is ~2.5e14 FLOPs (0.25 s at the 989 TFLOP/s bf16 peak)
    against 16 GB of weights (5 ms at 3.35 TB/s): doubling the bf16 peak must shorten TTFT."""
    base = _est(cat, "llama-3.1-8b", "h100-sxm", dict(tp=1), "bf16", batch=8, input_len=2048)
    fast = _est(cat.with_overrides(["h100-sxm.peak_flops.bf16=1.978e15"]), "llama-3.1-8b", "h100-sxm", dict(tp=1),
                "bf16", batch=8, input_len=2048)
    assert fast.ttft_s < base.ttft_s


@pytest.mark.parametrize("model,system,layout,precision,chip,links", [c for c in MONO_CASES if c[5]],
                         ids=[i for i, c in zip(MONO_IDS, MONO_CASES) if c[5]])
def test_faster_links_are_never_slower(cat, model, system, layout, precision, chip, links):
    base = _est(cat, model, system, layout, precision)
    for k in (2.0, 10.0):
        sets = []
        for name in links:
            link = cat.link(name)
            sets.append(f"{name}.bw_bytes_per_s_per_dir={float(link.bw_bytes_per_s_per_dir.value) * k:.6e}")
            sets.append(f"{name}.latency_s={float(link.latency_s.value) / k:.6e}")
        fast = _est(cat.with_overrides(sets), model, system, layout, precision)
        assert fast.ttft_s <= base.ttft_s * (1 + 1e-12)
        assert fast.tpot_s <= base.tpot_s * (1 + 1e-12)


@pytest.mark.parametrize("chip,model,tp,per_replica_chips,precision", [
    ("h100-sxm", "llama-3.1-8b", 1, 1, "bf16"),
    ("h100-sxm", "llama-3.1-70b", 4, 4, "fp8"),
    ("groq-lpu-v1", "llama-3.3-70b", None, 576, "mixed"),
])
def test_more_replicas_never_lower_system_throughput(cat, chip, model, tp, per_replica_chips, precision):
    m = load_model(model)
    prev = 0.0
    for reps in (1, 2, 3, 4):
        kw = dict(chips=per_replica_chips * reps, replicas=reps)
        if tp is not None:
            kw["tp"] = tp
        e = estimate(m, chip, batch=4, input_len=1024, output_len=128, precision=precision, catalog=cat, **kw)
        assert e.chips == per_replica_chips * reps
        assert e.output_tok_s >= prev * (1 - 1e-12)
        prev = e.output_tok_s


CONTEXT_CASES = [
    ("llama-3.1-8b", "h100-sxm", dict(tp=1), "bf16"),
    ("gpt-oss-20b", "h100-sxm", dict(tp=1), "bf16"),          # sliding-window layers
    ("nemotron-3-nano", "h100-sxm", dict(tp=1), "bf16"),      # Mamba + attention hybrid
    ("mixtral-8x7b", "h100-sxm", dict(tp=2), "bf16"),          # MoE
    ("llama-3.3-70b", "groq-lpu-v1", dict(chips=576), "mixed"),  # LPU layer pipeline
]


@PROPERTY
@given(i=st.integers(0, len(CONTEXT_CASES) - 1), a=st.integers(1, 30000), extra=st.integers(1, 30000),
       batch=st.integers(1, 8))
def test_longer_context_never_shortens_tpot(i, a, extra, batch):
    """Decoding after a longer prompt reads at least as much KV cache and attends at least as many keys."""
    model, system, layout, precision = CONTEXT_CASES[i]
    b = min(a + extra, 30000)
    cat = load_catalog()
    short = _est(cat, model, system, layout, precision, batch=batch, input_len=a, output_len=64)
    long = _est(cat, model, system, layout, precision, batch=batch, input_len=b, output_len=64)
    assert long.tpot_s >= short.tpot_s * (1 - 1e-12)
    assert long.ttft_s >= short.ttft_s * (1 - 1e-12)


def test_bigger_batch_never_lowers_decode_throughput_below_the_knee(cat):
    """Llama-3.1-8B on one H100, batch 1..64: each step does more work (TPOT never shrinks) but is
    shared by more sequences (system tokens/s never shrinks)."""
    m = load_model("llama-3.1-8b")
    prev = None
    for batch in (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64):
        e = estimate(m, "h100-sxm", batch=batch, input_len=1024, output_len=128, precision="bf16", catalog=cat)
        if prev is not None:
            assert e.tpot_s >= prev.tpot_s * (1 - 1e-12)
            assert e.decode_tok_s >= prev.decode_tok_s * (1 - 1e-12)
            assert e.output_tok_s >= prev.output_tok_s * (1 - 1e-12)
        prev = e


# ------------------------------------------------------------------------------------------------
# Memory fit
# ------------------------------------------------------------------------------------------------


def _short_by_gb(msg: str) -> float:
    m = re.search(r"short by ([\d.]+) GB", msg)
    assert m, f"message does not name the shortfall in GB: {msg}"
    return float(m.group(1))


def test_405b_on_two_h100_does_not_fit_and_names_the_shortfall(cat):
    """405B parameters at 2 bytes over 2 chips need >= 405 GB of weights per chip; an H100 has 80 GB,
    so each chip is short by at least 325 GB."""
    with pytest.raises(InputError) as ei:
        estimate(load_model("llama-3.1-405b"), "h100-sxm", chips=2, tp=2, precision="bf16", catalog=cat)
    msg = str(ei.value)
    assert "\n" not in msg
    assert "does not fit" in msg
    assert _short_by_gb(msg) >= 405e9 * 2 / 2 / GB - 80 - 0.05


def test_70b_on_100_groq_chips_does_not_fit(cat):
    """70.6B 8-bit weights over 100 LPUs are >= 0.70 GB per chip; each holds 0.231 GB of SRAM."""
    with pytest.raises(InputError) as ei:
        estimate(load_model("llama-3.3-70b"), "groq-lpu-v1", chips=100, catalog=cat)
    msg = str(ei.value)
    assert "SRAM" in msg
    assert _short_by_gb(msg) >= 70e9 / 100 / GB - 0.231 - 0.05


@pytest.mark.parametrize("model,system,layout,precision", ROOFLINE_CASES, ids=[f"{c[0]}@{c[1]}" for c in ROOFLINE_CASES])
def test_memory_breakdown_is_physical(cat, model, system, layout, precision):
    m = load_model(model)
    e = estimate(m, system, batch=4, input_len=1024, output_len=128, precision=precision, catalog=cat, **layout)
    mem = e.memory_per_chip
    # (the parts summing to capacity holds by construction, free being the remainder; the golden
    # cases below check each part by hand instead)
    # capacity is the chip's datasheet memory; the estimate fitted, so nothing is over-committed
    assert mem["capacity_bytes"] == float(cat.chip(e.chip).mem_bytes.value)
    assert mem["free_bytes"] >= 0
    assert all(v >= 0 for v in mem.values())
    # all weights are stored somewhere in the replica: per-chip share x chips >= total weights
    per_replica = e.chips // e.parallel["replicas"]
    min_bytes = 4.25 / 8 if m.quantization and "mxfp4" in m.quantization else MIN_WEIGHT_BYTES[precision]
    assert mem["weights_bytes"] * per_replica >= m.total_params * min_bytes * (1 - 1e-9)


def test_llama31_8b_weights_on_one_h100(cat):
    """8,030,261,248 bf16 parameters = 16.06 GB on the one chip that holds them all."""
    e = estimate(load_model("llama-3.1-8b"), "h100-sxm", precision="bf16", catalog=cat)
    assert e.memory_per_chip["weights_bytes"] == pytest.approx(8_030_261_248 * 2, rel=1e-12)


# Hand-computed memory fits. Inputs: the H100 SXM's 80 GB (datasheet), the runtime reserve fraction
# the calibration states (an input, read here), the parameter counts above, and memory.py's documented
# activation accounting (an assumption, written out here): per token of the largest engine step
# (capped at 8192 tokens) 4 hidden-sized bf16 tensors plus the FFN's gate and up intermediates split
# over tp, per sequence one fp32 logits row split over tp, tokens and sequences spread over ep.
H100_MEM_BYTES = 80e9
L8B_TOTAL_PARAMS = 2 * L8B_LM_HEAD_PARAMS + 32 * (L8B_ATTN_PARAMS + L8B_FFN_PARAMS + 2 * 4096) + 4096
# K and V of 8 KV heads x 128 dims in each of 32 layers, bf16: 32 x 2 x 8 x 128 x 2 B = 131,072 B/token
L8B_KV_BYTES_PER_TOKEN = 32 * 2 * 8 * 128 * 2
L8B_VOCAB = 128256


def _reserve_fraction(cat, chip: str) -> float:
    c = cat.chip(chip)
    return load_calibration().for_chip(c.kind, c.family).mem_reserve


def test_memory_fit_golden_llama31_8b_tp2(cat):
    """Llama-3.1-8B over tp 2 H100s, bf16, 4 sequences of 1024 + 128 tokens."""
    e = estimate(load_model("llama-3.1-8b"), "h100-sxm", tp=2, batch=4, input_len=1024, output_len=128,
                 precision="bf16", catalog=cat)
    mem = e.memory_per_chip
    weights = L8B_TOTAL_PARAMS * 2 / 2                   # every weight at 2 B, halved by tp = 8,030,261,248 B
    kv = 4 * (1024 + 128) * L8B_KV_BYTES_PER_TOKEN / 2   # 8 KV heads split over 2 chips = 301,989,888 B
    acts = 4 * 1024 * (4 * 4096 + 2 * 14336 / 2) * 2 + 4 * L8B_VOCAB * 4 / 2   # = 252,684,288 B
    reserve = H100_MEM_BYTES * _reserve_fraction(cat, "h100-sxm")
    assert (weights, kv, acts) == (8_030_261_248, 301_989_888, 252_684_288)
    assert mem["capacity_bytes"] == H100_MEM_BYTES
    assert mem["weights_bytes"] == pytest.approx(weights, rel=1e-12)
    assert mem["kv_cache_bytes"] == pytest.approx(kv, rel=1e-12)
    assert mem["activations_bytes"] == pytest.approx(acts, rel=1e-12)
    assert mem["reserve_bytes"] == pytest.approx(reserve, rel=1e-12)
    assert mem["free_bytes"] == pytest.approx(H100_MEM_BYTES - reserve - weights - kv - acts, rel=1e-12)


def test_memory_fit_golden_mixtral_tp2_ep2(cat):
    """Mixtral-8x7B over tp 2 x ep 2 H100s, bf16, 2 sequences of 512 + 64 tokens. Routed experts split
    over all 4 chips (tp x ep); attention, router and norms over tp; embedding and untied LM head
    (32000 x 4096 each) over tp."""
    e = estimate(load_model("mixtral-8x7b"), "h100-sxm", tp=2, ep=2, batch=2, input_len=512, output_len=64,
                 precision="bf16", catalog=cat)
    mem = e.memory_per_chip
    expert = 3 * 4096 * 14336
    dense = 32 * (L8B_ATTN_PARAMS + 4096 * 8 + 2 * 4096) + 4096      # same attention shape as Llama-3.1-8B
    routed = 32 * 8 * expert
    vocab = 2 * 32000 * 4096
    assert dense + routed + vocab == 46_702_792_704                   # Mistral's published 46.7B
    weights = dense * 2 / 2 + routed * 2 / (2 * 2) + vocab * 2 / 2     # = 24,154,214,400 B
    # 8 KV heads over tp 2, and each ep group holds only its own sequences: 1/4 of each sequence's
    # 32 x 2 x 8 x 128 x 2 B per token on a chip
    kv = 2 * (512 + 64) * (32 * 2 * 8 * 128 * 2) / (2 * 2)           # = 37,748,736 B
    acts = (2 * 512 / 2) * (4 * 4096 + 2 * 14336 / 2) * 2 + (2 / 2) * 32000 * 4 / 2   # = 31,521,280 B
    reserve = H100_MEM_BYTES * _reserve_fraction(cat, "h100-sxm")
    assert (weights, kv, acts) == (24_154_214_400, 37_748_736, 31_521_280)
    assert mem["weights_bytes"] == pytest.approx(weights, rel=1e-12)
    assert mem["kv_cache_bytes"] == pytest.approx(kv, rel=1e-12)
    assert mem["activations_bytes"] == pytest.approx(acts, rel=1e-12)
    assert mem["free_bytes"] == pytest.approx(H100_MEM_BYTES - reserve - weights - kv - acts, rel=1e-12)


def test_max_batch_golden_llama31_8b_tp2(cat):
    """The largest batch of 1152-token contexts (1024 prompt + 128 output) on tp 2 H100s, by hand.
    From 8 sequences on a step holds the 8192-token cap, so activations are a fixed 8192-token part
    plus a logits row per sequence; each sequence adds its KV cache and logits row:
        b_max = floor((usable - weights - fixed activations) / (KV + logits per sequence))."""
    usable = H100_MEM_BYTES * (1 - _reserve_fraction(cat, "h100-sxm"))
    weights = L8B_TOTAL_PARAMS * 2 / 2
    fixed_acts = 8192 * (4 * 4096 + 2 * 14336 / 2) * 2
    per_seq = 1152 * L8B_KV_BYTES_PER_TOKEN / 2 + L8B_VOCAB * 4 / 2
    b_max = int((usable - weights - fixed_acts) // per_seq)
    assert b_max >= 8                                                 # the cap applies, as assumed above
    m = load_model("llama-3.1-8b")
    kw = dict(tp=2, input_len=1024, output_len=128, precision="bf16", catalog=cat)
    assert estimate(m, "h100-sxm", **kw).max_batch_at_context == b_max
    estimate(m, "h100-sxm", batch=b_max, **kw)                        # fits ...
    with pytest.raises(InputError, match="does not fit"):             # ... and one more does not
        estimate(m, "h100-sxm", batch=b_max + 1, **kw)


def test_reported_max_batch_is_the_largest_that_fits_70b(cat):
    """Llama-3.1-70B fp8 on an 8-GPU node: the reported maximum runs, one more sequence is refused."""
    m = load_model("llama-3.1-70b")
    kw = dict(tp=8, input_len=1024, output_len=128, precision="fp8", catalog=cat)
    b_max = estimate(m, "hgx-h100", **kw).max_batch_at_context
    assert b_max >= 1
    estimate(m, "hgx-h100", batch=b_max, **kw)
    with pytest.raises(InputError, match="does not fit"):
        estimate(m, "hgx-h100", batch=b_max + 1, **kw)


# ------------------------------------------------------------------------------------------------
# Deployment errors
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw", [dict(chips=6, tp=4), dict(chips=8, tp=2, replicas=3), dict(chips=16, tp=4, pp=2, replicas=1)])
def test_conflicting_parallelism_raises(cat, kw):
    with pytest.raises(InputError, match="conflicting parallelism"):
        build_deployment(load_model("llama-3.1-8b"), "h100-sxm", catalog=cat, **kw)


def test_fp4_on_hopper_raises(cat):
    # H100 has no FP4 tensor-core mode (and no other 4-bit format to fall back to)
    with pytest.raises(InputError, match="fp4"):
        estimate(load_model("llama-3.1-8b"), "h100-sxm", precision="fp4", catalog=cat)


def test_fp4_on_blackwell_stores_nvfp4_weights_and_an_fp8_cache(cat):
    """NVFP4 is 4.5 bits per weight (4-bit values + an fp8 scale per 16), so Llama-3.1-8B's weights
    take 8,030,261,248 x 4.5 / 8 = 4,517,021,952 B; the KV cache of an 8-bit-or-narrower deployment is
    fp8 (1 B per value): 1152 tokens x 32 layers x 2 x 8 x 128 values = 75,497,472 B. Fewer bytes to
    stream make batch-1 decode faster than bf16 on the same chip, where the bytes set the step: with
    the sourced default efficiencies (the refitted Blackwell host work, 8x the engine prior, hides
    the weights at batch 1)."""
    from infersim.calibration.efficiency import load_calibration
    m, defaults = load_model("llama-3.1-8b"), load_calibration("none")
    fp4 = estimate(m, "b200", batch=1, input_len=1024, output_len=128, precision="fp4", catalog=cat,
                   calibration=defaults)
    assert fp4.memory_per_chip["weights_bytes"] == pytest.approx(L8B_TOTAL_PARAMS * 4.5 / 8, rel=1e-12)
    assert fp4.memory_per_chip["kv_cache_bytes"] == pytest.approx(1152 * 32 * 2 * 8 * 128 * 1, rel=1e-12)
    bf16 = estimate(m, "b200", batch=1, input_len=1024, output_len=128, precision="bf16", catalog=cat,
                    calibration=defaults)
    assert fp4.tpot_s < bf16.tpot_s


@pytest.mark.parametrize("precision", ["fp7", "float16x", ""])
def test_unknown_precision_raises(cat, precision):
    with pytest.raises(InputError, match="precision"):
        build_deployment(load_model("llama-3.1-8b"), "h100-sxm", precision=precision or "   ", catalog=cat)


@pytest.mark.parametrize("kw,match", [
    (dict(tp=0), "--tp"), (dict(pp=0), "--pp"), (dict(chips=0), "--chips"), (dict(tp=1, pp=200), "layers"),
])
def test_invalid_layout_values_raise(cat, kw, match):
    with pytest.raises(InputError, match=match):
        build_deployment(load_model("llama-3.1-8b"), "h100-sxm", catalog=cat, **kw)


def test_context_longer_than_model_raises(cat):
    # Mixtral-8x7B's config allows 32,768 positions
    with pytest.raises(InputError, match="exceeds"):
        estimate(load_model("mixtral-8x7b"), "h100-sxm", tp=2, input_len=32768, output_len=1, catalog=cat)
