"""The per-layer AFD micro-batch pipeline (costmodel/afd_pipeline.py): its steady-state step lies
between the closed form's largest bound and the strict sum of every part, one micro-batch gives the
strict chain, every resource is busy exactly for its parts and never runs two things at once."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from infersim.catalog.models import load_model
from infersim.costmodel.afd import afd_bounds
from infersim.costmodel.afd_pipeline import schedule_afd
from infersim.modes import build_plan, load_spec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "deployments" / "vr-nvl72-lpx-afd.yaml"
US = st.floats(1e-7, 5e-3)


@st.composite
def afd_parts(draw):
    """Parts of one step (seconds) as AFDStepCost.parts gives them: F_busy <= F, X_bw <= X."""
    f = draw(US)
    x = draw(US)
    return {"attention_s": draw(US), "overhead_s": draw(st.sampled_from((0.0, 1e-4, 2e-3))), "ffn_s": f,
            "ffn_busy_s": f * draw(st.floats(0.0, 1.0)), "link_s": x, "link_bw_s": x * draw(st.floats(0.0, 1.0)),
            "m": float(draw(st.integers(1, 6)))}


def _schedule(parts, g, n_ffn, overlap):
    bounds = afd_bounds(parts, g, n_ffn, overlap)
    return schedule_afd(parts, {k: float(v) for k, v in bounds.items()}, g, n_ffn, overlap), bounds


def _disjoint(intervals):
    intervals = sorted(intervals)
    return all(b[0] >= a[1] - 1e-15 for a, b in zip(intervals, intervals[1:]))


@settings(max_examples=40, deadline=None)
@given(parts=afd_parts(), g=st.sampled_from((0.5, 1.0, 3.5, 7.0, 71.0)), n_ffn=st.integers(1, 40),
       overlap=st.booleans())
def test_pipeline_between_the_largest_bound_and_the_strict_sum(parts, g, n_ffn, overlap):
    p, bounds = _schedule(parts, g, n_ffn, overlap)
    m, L = int(parts["m"]), n_ffn
    largest = max(float(v) for v in bounds.values())
    others = max(g - 1, 0) * parts["ffn_busy_s"]   # the other replicas' share of each stage, per micro-batch
    strict = parts["overhead_s"] + m * (parts["attention_s"] + parts["ffn_s"] + parts["link_s"] + others)
    assert p.strict_sum_s == pytest.approx(strict, rel=1e-12)
    assert largest * (1 - 1e-9) <= p.step_s <= strict * (1 + 1e-9)
    # conservation: each resource is held per step for exactly its parts
    assert p.busy_s["gpu"] == pytest.approx(m * parts["attention_s"], rel=1e-9)
    assert p.busy_s["link"] == pytest.approx(m * parts["link_bw_s"], rel=1e-9, abs=1e-18)
    assert p.busy_s["host"] == pytest.approx(parts["overhead_s"], rel=1e-12)
    assert p.busy_s["lpu stage"] == pytest.approx(m * max(g, 1) * parts["ffn_busy_s"] / L, rel=1e-9, abs=1e-18)
    # ... and never runs two things at once (busy intervals of the steady-state step)
    slots = [s for row in p.layers for s in row]
    link_busy = parts["link_bw_s"] / (2 * L)
    assert _disjoint([(s.start_s, s.end_s) for s in slots if s.kind == "attention"])
    assert _disjoint([(s.start_s, s.start_s + link_busy) for s in slots if s.kind in ("up", "down")])
    for layer in range(L):
        held = parts["ffn_busy_s"] / L + others / L
        assert _disjoint([(s.start_s, s.start_s + held) for s in p.layers[layer] if s.kind == "ffn"])
    # every micro-batch goes attention -> up -> ffn -> down, layer after layer
    for j in range(m):
        chain = [s for row in p.layers for s in row if s.micro_batch == j]
        assert all(b.start_s >= a.end_s - 1e-15 for a, b in zip(chain, chain[1:]))


@settings(max_examples=30, deadline=None)
@given(parts=afd_parts(), n_ffn=st.integers(1, 40), overlap=st.booleans(), g_frac=st.floats(0.0, 1.0))
def test_one_micro_batch_is_the_strict_chain(parts, n_ffn, overlap, g_frac):
    """m = 1 with at most as many replicas per pool as FFN layers (so the pool cannot bind): the
    step is the chain O + A + F + X (O beside it with an overlap scheduler: max of the two)."""
    parts = {**parts, "m": 1.0}
    g = 1 + g_frac * (n_ffn - 1)
    p, _ = _schedule(parts, g, n_ffn, overlap)
    chain = parts["attention_s"] + parts["ffn_s"] + parts["link_s"]
    expected = max(chain, parts["overhead_s"]) if overlap else parts["overhead_s"] + chain
    assert p.step_s == pytest.approx(expected, rel=1e-9)


def test_pipeline_golden_two_micro_batches_by_hand():
    """2 FFN layers, 2 micro-batches, no host work, pool of 1 replica; per layer: attention 10 us,
    link 1 us busy + 1 us latency each way, FFN 3 us busy + 2 us latency: one micro-batch's chain is
    2 x (10 + 2 + 5 + 2) = 38 us, the GPU's work 2 x 2 x 10 = 40 us per step, so the GPU binds and
    never idles in the steady state. Times from the step's first attention: mb0 attention 0-10 (ready
    at -1: its previous down ended 39 - 40), up 10-12, FFN 12-17, down 17-19; mb1 attention 10-20
    (ready 9), up 20-22, FFN 22-27, down 27-29; layer 1: mb0 ready 19, waits 1 us for the GPU,
    attention 20-30, up 30-32, FFN 32-37, down 37-39; mb1 attention 30-40, ..., down 47-49; the next
    step's mb0 starts at 40: the period is 40 us, the closed form's GPU bound."""
    parts = {"attention_s": 20e-6, "overhead_s": 0.0, "ffn_s": 10e-6, "ffn_busy_s": 6e-6, "link_s": 8e-6,
             "link_bw_s": 4e-6, "m": 2.0}
    p, bounds = _schedule(parts, 1.0, 2, True)
    got = {(s.layer, s.micro_batch, s.kind): (s.start_s * 1e6, s.end_s * 1e6) for row in p.layers for s in row}
    want = {(0, 0, "attention"): (0, 10), (0, 0, "up"): (10, 12), (0, 0, "ffn"): (12, 17), (0, 0, "down"): (17, 19),
            (0, 1, "attention"): (10, 20), (0, 1, "up"): (20, 22), (0, 1, "ffn"): (22, 27), (0, 1, "down"): (27, 29),
            (1, 0, "attention"): (20, 30), (1, 0, "up"): (30, 32), (1, 0, "ffn"): (32, 37), (1, 0, "down"): (37, 39),
            (1, 1, "attention"): (30, 40), (1, 1, "up"): (40, 42), (1, 1, "ffn"): (42, 47), (1, 1, "down"): (47, 49)}
    for k, v in want.items():
        assert got[k] == pytest.approx(v, abs=1e-6), k
    l1 = {s.kind: s.queue_s for s in p.layers[1] if s.micro_batch == 0}
    assert l1["attention"] == pytest.approx(1e-6) and l1["ffn"] == pytest.approx(0.0, abs=1e-15)
    assert float(bounds["gpu"]) == pytest.approx(40e-6) and float(bounds["chain"]) == pytest.approx(38e-6)
    assert p.step_s == pytest.approx(40e-6) and p.idle_s["gpu"] == pytest.approx(0.0, abs=1e-15)


def test_estimate_shows_the_example_pipeline(tmp_path):
    """Through the example file: the decode step's details carry the pipeline of its own parts, and
    its step lies between the closed form's step and the strict sum."""
    model = load_model("gpt-oss-120b")
    plan = build_plan(load_spec(EXAMPLE), model)
    timer = plan.pool("decode").timer
    step = timer.decode_step(32, 2000, 499)
    pipe = step.details["afd"]["pipeline"]
    assert pipe["micro_batches"] == 2 and pipe["layers_n"] == 36 and len(pipe["layers"]) == 36
    assert step.seconds * (1 - 1e-9) <= pipe["step_s"] <= pipe["strict_sum_s"]
    assert yaml.safe_load(EXAMPLE.read_text())["micro_batches"] == 2
