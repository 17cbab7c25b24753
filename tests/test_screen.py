"""The analytical screen (planner/screen.py): its bounds hold against estimate_plan for random
plans of every family and mode and random loads, its memory verdict is estimate_plan's, per-user
speed falls and throughput rises with the batch, the grid equals its points one at a time, the
hard roofline is the max by hand, and bad input is one clear error."""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from infersim.calibration.efficiency import load_calibration
from infersim.catalog.engines import engine as default_engine
from infersim.catalog.hardware import load_catalog
from infersim.catalog.models import load_model
from infersim.costmodel.execution import roofline_seconds
from infersim.deployments.spec import DeploymentSpec, read_spec
from infersim.errors import InputError
from infersim.estimate import decode_span, estimate_plan
from infersim.modes import build_plan
from infersim.planner.families import families
from infersim.planner.screen import ROUNDING_MARGIN, screen
from infersim.planner.screen_floor import decode_seconds, floor_timer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "deployments"
MODELS = ("deepseek-v3", "nemotron-3-super", "gpt-oss-120b")
# modes and features the families do not enumerate for these models
EXTRA_FILES = {"lpx-spec.yaml": None, "vr-nvl72-lpx-afd-spec.yaml": None, "gb200-nvl72-pd-mtp.yaml": None,
               "vr-nvl72-lpx-spec.yaml": "llama-3.3-70b"}  # file: model (None: the file's own)
ROUTED = {"name": "routed", "mode": "gpu", "gpu": {"system": "vr-nvl72", "racks": 1, "tp": 8, "precision": "fp8"},
          "lpu": {"system": "lpx", "racks": 2, "precision": "mixed"},
          "routing": {"premium_fraction": 0.25, "premium_path": "lpu"}}


@lru_cache(maxsize=1)
def plans() -> list:
    """(family, plan) for every family's deployment of MODELS that builds, a few example files
    (LPU speculative decoding, AFD + LPX draft, P/D + MTP, spec with an LPX draft) and an SLO-routed plan."""
    catalog, calibration = load_catalog(), load_calibration(None)
    out = []
    for name in MODELS:
        model = load_model(name)
        for fam in families(model, catalog, calibration):
            for label, dep in fam.deployments:
                try:
                    out.append((fam.name, build_plan(DeploymentSpec.model_validate({"name": label, **dep}), model,
                                                     catalog, calibration)))
                except InputError:
                    pass  # too small for the model: the families list such points too
    for f, model in EXTRA_FILES.items():
        spec = read_spec(EXAMPLES / f)
        out.append((f, build_plan(spec, load_model(model or spec.model), catalog, calibration)))
    out.append(("routed", build_plan(DeploymentSpec.model_validate(ROUTED), load_model("gpt-oss-120b"), catalog,
                                     calibration)))
    return out


def test_the_plans_cover_every_mode_and_timer():
    kinds = {(p.spec.mode, type(p.decode_pool.timer).__name__) for _, p in plans()}
    assert {m for m, _ in kinds} == {"gpu", "pd", "lpu", "afd", "spec"}
    assert {t for _, t in kinds} == {"StepCost", "AFDStepCost", "SpecDecodeCost"}
    assert any(p.premium is not None for _, p in plans())


PLAN = st.integers(0, 10_000)
BATCH = st.integers(1, 1024)
INPUT = st.integers(1, 65_536)
OUTPUT = st.integers(1, 8192)


@settings(max_examples=120)
@given(PLAN, BATCH, INPUT, OUTPUT)
def test_bounds_hold_and_fit_is_the_estimates_verdict(k, batch, input_len, output_len):
    family, plan = plans()[k % len(plans())]
    r = screen([plan], [batch], [input_len], [output_len])
    try:
        e = estimate_plan(plan, batch, input_len, output_len)
    except InputError:
        assert not r.fits[0, 0, 0, 0], (family, plan.spec.name)
        return
    assert r.fits[0, 0, 0, 0], (family, plan.spec.name)
    assert r.tok_s_per_user[0, 0, 0, 0] >= e["tok_s_per_user"]
    assert r.output_tok_s[0, 0, 0, 0] >= e["output_tok_s"]
    assert r.ttft_s[0, 0, 0, 0] <= e["ttft_s"]
    assert r.unbounded == [None]


def _graph_limit(plan) -> float:
    """The engine's largest CUDA-graphed decode batch (inf on SRAM pipelines): at or below it every
    decode step (and AFD micro-batch, and DP attention rank, which are smaller) replays a graph."""
    dep = plan.decode_pool.deployment
    return math.inf if dep.dataflow else (dep.engine or default_engine()).graph_max_batch


@settings(max_examples=60)
@given(PLAN, st.lists(BATCH, min_size=2, max_size=6, unique=True), INPUT, OUTPUT)
def test_per_user_bound_falls_and_throughput_bound_rises_with_batch(k, batches, input_len, output_len):
    _, plan = plans()[k % len(plans())]
    batches = sorted(batches)
    r = screen([plan], batches, [input_len], [output_len])
    user, tok_s, fits = r.tok_s_per_user[0, :, 0, 0], r.output_tok_s[0, :, 0, 0], r.fits[0, :, 0, 0]
    assert np.all(np.diff(user) <= 0)
    assert np.all(np.diff(fits.astype(int)) <= 0)  # what fits at a batch fits at every smaller one
    # throughput: non-decreasing while the batch fits and its steps replay CUDA graphs (past the
    # limit, of a step or of an AFD micro-batch, every kernel adds an eager launch and the cost
    # model's throughput drops; SRAM pipelines have no such limit)
    keep = fits & (np.array(batches) <= _graph_limit(plan))
    assert np.all(np.diff(tok_s[keep]) >= -1e-12 * tok_s[keep][1:])


def test_the_grid_equals_its_points_one_at_a_time():
    picked = [p for i, (_, p) in enumerate(plans()) if i % 17 == 0]
    batches, inputs, outputs = [1, 7, 64, 300], [100, 5000], [1, 40, 900]
    r = screen(picked, batches, inputs, outputs)
    assert r.fits.shape == r.tok_s_per_user.shape == r.output_tok_s.shape == r.ttft_s.shape == \
        (len(picked), 4, 2, 3)
    for p, plan in enumerate(picked):
        for b, batch in enumerate(batches):
            for i, inp in enumerate(inputs):
                for o, out in enumerate(outputs):
                    one = screen([plan], [batch], [inp], [out])
                    for name in ("fits", "tok_s_per_user", "output_tok_s", "ttft_s"):
                        assert getattr(one, name)[0, 0, 0, 0] == pytest.approx(getattr(r, name)[p, b, i, o], rel=1e-12)


def representatives() -> list:
    """The first plan of each family and every extra plan (each mode and timer kind)."""
    seen, out = set(), []
    for family, plan in plans():
        if family not in seen:
            seen.add(family)
            out.append((family, plan))
    return out


def test_decode_seconds_is_each_timers_decode_step():
    """The screen's vectorised decode step, on the plan's own timer (not the floor), is the step
    estimate_plan takes: the screen composes the timers as the estimate does."""
    for family, plan in representatives():
        timer = plan.decode_pool.timer
        for batch, past, out in ((1, 100, 2), (24, 3000, 500), (200, 9000, 64)):
            want = timer.decode_step(batch, past, decode_span(out)).seconds
            got = float(decode_seconds(timer, float(batch), float(past), float(decode_span(out))))
            assert got == pytest.approx(want, rel=1e-12), family


@pytest.mark.parametrize("batch, input_len, output_len", [(1, 1000, 200), (16, 8192, 1024), (128, 300, 3000)])
def test_bounds_hold_on_every_family_and_extra_mode(batch, input_len, output_len):
    """The property above, on each family's first plan and each extra mode (SLO routing included)."""
    for family, plan in representatives():
        r = screen([plan], [batch], [input_len], [output_len])
        try:
            e = estimate_plan(plan, batch, input_len, output_len)
        except InputError:
            assert not r.fits[0, 0, 0, 0], family
            continue
        assert r.fits[0, 0, 0, 0], family
        assert r.tok_s_per_user[0, 0, 0, 0] >= e["tok_s_per_user"], family
        assert r.output_tok_s[0, 0, 0, 0] >= e["output_tok_s"], family
        assert r.ttft_s[0, 0, 0, 0] <= e["ttft_s"], family


def test_sram_pipelines_are_bounded_exactly():
    """LPU and wafer layer pipelines already take the hard roofline max: their bounds are the
    estimate itself, less the rounding margin."""
    lpu = [p for f, p in plans() if f in ("lpu-lpx", "cs3")]
    assert lpu
    for plan in lpu:
        r = screen([plan], [1], [1000], [200])
        if not r.fits[0, 0, 0, 0]:
            continue
        e = estimate_plan(plan, 1, 1000, 200)
        assert r.tok_s_per_user[0, 0, 0, 0] == pytest.approx(e["tok_s_per_user"], rel=10 * ROUNDING_MARGIN)
        assert r.ttft_s[0, 0, 0, 0] == pytest.approx(e["ttft_s"], rel=10 * ROUNDING_MARGIN)
        assert floor_timer(plan.decode_pool.timer) is plan.decode_pool.timer


def test_hard_roofline_is_the_larger_of_compute_and_memory_time():
    # 4e12 FLOPs at 2e15 FLOP/s = 2 ms; 6e9 bytes at 2e12 B/s = 3 ms
    assert roofline_seconds(4e12, 6e9, 2e15, 2e12, math.inf) == pytest.approx(3e-3, rel=1e-15)
    assert roofline_seconds(4e12, 6e9, 2e15, 2e12, 3.0) == pytest.approx((2e-3 ** 3 + 3e-3 ** 3) ** (1 / 3))
    assert roofline_seconds(4e12, 6e9, 2e15, 2e12, 3.0) > 3e-3


def test_mask_and_candidates_apply_the_thresholds():
    picked = [p for i, (_, p) in enumerate(plans()) if i % 29 == 0]
    r = screen(picked, [1, 16, 256], [1000, 8000], [200, 1000])
    m = r.mask(min_tok_s_per_user=100, max_ttft_s=0.5)
    assert np.array_equal(m, r.fits & (r.tok_s_per_user >= 100) & (r.ttft_s <= 0.5))
    assert 0 < m.sum() < m.size
    c = r.candidates(min_tok_s_per_user=100, max_ttft_s=0.5)
    assert len(c) == m.sum()
    assert all(x.tok_s_per_user >= 100 and x.ttft_s <= 0.5 and x.deployment == picked[x.plan_index].spec.name
               for x in c)
    assert np.array_equal(r.mask(), r.fits)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"batches": []}, "batches"),
    ({"batches": [0, 4]}, "batches"),
    ({"input_lens": [1.5]}, "input lengths"),
    ({"output_lens": [[1, 2]]}, "output lengths"),
])
def test_bad_grids_are_one_clear_error(kwargs, fragment):
    args = {"batches": [1], "input_lens": [10], "output_lens": [10], **kwargs}
    with pytest.raises(InputError, match=fragment):
        screen([plans()[0][1]], **args)
    with pytest.raises(InputError, match="no plans"):
        screen([], [1], [1], [1])


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "fast", True])
def test_bad_thresholds_are_one_clear_error(bad):
    r = screen([plans()[0][1]], [1], [10], [10])
    with pytest.raises(InputError, match="min_tok_s_per_user"):
        r.mask(min_tok_s_per_user=bad)
