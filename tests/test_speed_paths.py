"""The speed paths compute exactly what the plain paths do: integer step shapes, remembered step
times and the memory-fit search (bench/bench_speed.py times them)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infersim.catalog.models import load_model
from infersim.costmodel.memory import max_sequences, memory_fit
from infersim.costmodel.step import StepCost
from infersim.costmodel.shape_keys import composed_run_shape, key_shape, step_key
from infersim.costmodel.work import attended_keys, decode_run_shape, sequences_shape
from infersim.mapping.deployment import build_deployment

_DEP = {}


def dep(name: str):
    if name not in _DEP:
        layouts = {"llama-3.1-8b": ("h100-sxm", dict(tp=1)), "llama-3.1-70b": ("h100-sxm", dict(tp=8, precision="fp8"))}
        system, kw = layouts[name]
        _DEP[name] = build_deployment(load_model(name), system, **kw)
    return _DEP[name]


steps = st.lists(st.tuples(st.integers(0, 40_000), st.sampled_from([1, 1, 1, 2, 7, 512, 3000])), min_size=1, max_size=40)


@settings(max_examples=200, deadline=None)
@given(seqs=steps, window=st.sampled_from([None, 1, 64, 4096]))
def test_integer_step_key_is_sequences_shape_exactly(seqs, window):
    pasts, news = [p for p, _ in seqs], [n for _, n in seqs]
    got = key_shape(step_key(pasts, news, (window,)), (window,))
    want = sequences_shape(np.array(pasts, dtype=float), np.array(news, dtype=float), (window,))
    assert (got.seqs, got.decode_tokens, got.prefill_tokens) == (want.seqs, want.decode_tokens, want.prefill_tokens)
    a, b = got.attn[window], want.attn[window]
    assert (a.pairs_decode, a.pairs_prefill, a.kv_read) == (b.pairs_decode, b.pairs_prefill, b.kv_read)


@given(past=st.integers(0, 10_000), q=st.integers(1, 5_000), window=st.sampled_from([None, 1, 17, 4096]))
def test_attended_keys_on_ints_equals_the_array_form(past, q, window):
    exact = attended_keys(past, q, window)
    assert type(exact) is int and exact == float(attended_keys(np.float64(past), np.float64(q), window))


def test_remembered_step_time_equals_evaluating_the_step():
    cost = StepCost(dep("llama-3.1-70b"))
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(1, 20))
        pasts = rng.integers(0, 8000, n).tolist()
        news = [int(x) for x in rng.choice([1, 1, 1, 256, 512], n)]
        plain = cost.step_seconds(np.array(pasts, dtype=float), np.array(news, dtype=float), None)
        assert cost.composed_step_seconds(pasts, news) == plain  # a miss
        assert cost.composed_step_seconds(pasts, news) == plain  # a hit


def _bisect_max_sequences(d, context, prompt):
    """The plain search: the largest fitting batch by doubling then bisection from 1."""
    def fits(b):
        return float(np.min(memory_fit(d, b, context, b * float(prompt)).free)) >= 0
    if not fits(1):
        return 0
    lo, hi = 1, 2
    while fits(hi):
        lo, hi = hi, hi * 2
        if hi > 1 << 24:
            return lo
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


@pytest.mark.parametrize("model, system, kw", [
    ("llama-3.1-8b", "h100-sxm", dict(tp=1)),
    ("llama-3.1-70b", "h100-sxm", dict(tp=8, precision="fp8")),
    ("llama-3.1-70b", "h100-sxm", dict(tp=2)),
    ("deepseek-v3", "h200-sxm", dict(tp=8, precision="fp8")),
    ("llama-2-70b", "groq-lpu-v1", dict(chips=576)),
])
def test_max_sequences_equals_plain_bisection(model, system, kw):
    d = build_deployment(load_model(model), system, **kw)
    for context, prompt in [(1, 1), (128, 100), (2304, 2048), (9000, 8000), (60_000, 50_000), (130_000, 1)]:
        if context > d.model.max_context:
            continue
        assert max_sequences(d, context, prompt) == _bisect_max_sequences(d, context, prompt), (context, prompt)


@settings(max_examples=100, deadline=None)
@given(pasts=st.lists(st.integers(0, 50_000), min_size=1, max_size=30), steps=st.integers(1, 5000),
       window=st.sampled_from([None, 100, 4096]))
def test_composed_run_shape_is_decode_run_shape_exactly(pasts, steps, window):
    got = composed_run_shape(pasts, steps, (window,))
    want = decode_run_shape(np.sort(np.array(pasts, dtype=float)), steps, (window,))
    assert (float(got.seqs), float(got.decode_tokens), float(got.prefill_tokens)) == \
        (float(want.seqs), float(want.decode_tokens), float(want.prefill_tokens))
    a, b = got.attn[window], want.attn[window]
    for x, y in ((a.pairs_decode, b.pairs_decode), (a.pairs_prefill, b.pairs_prefill), (a.kv_read, b.kv_read)):
        assert np.array_equal(np.broadcast_to(x, (steps,)), np.broadcast_to(y, (steps,)))
