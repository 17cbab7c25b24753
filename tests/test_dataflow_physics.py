"""Dataflow (LPU / wafer) pipeline physics: which link each chip-to-chip transfer uses.

Numbers are worked out by hand here from the catalog's link figures (read at test time, so a
catalog edit does not break the arithmetic): chips are placed contiguously in pipeline order, so a
replica of two LPX racks leaves its first rack exactly once per token, and a layer's all-reduce
among the few chips that hold it stays on the rack's C2C links.
"""
from __future__ import annotations

import math

import pytest

from infersim.catalog.hardware import load_catalog
from infersim.catalog.models import load_model
from infersim.calibration.efficiency import load_calibration
from infersim.costmodel.dataflow_links import dataflow_links
from infersim.costmodel.step import step_time
from infersim.mapping.deployment import build_deployment


@pytest.fixture(scope="module")
def cat():
    return load_catalog()


def _dep(cat, chip, chips, model="llama-3.3-70b", precision="mixed"):
    return build_deployment(load_model(model), chip, chips=chips, precision=precision, catalog=cat,
                            calibration=load_calibration("none"))


def _lat(cat, link):
    return float(cat.link(link).latency_s.value)


def _bw(cat, link, eff):
    return float(cat.link(link).bw_bytes_per_s_per_dir.value) * eff.link_eff


@pytest.mark.parametrize("chips, hops_out", [(256, 0), (257, 1), (512, 1), (768, 2)])
def test_lpx_replica_leaves_a_rack_once_per_rack_boundary(cat, chips, hops_out):
    links = dataflow_links(_dep(cat, "groq3-lpu", chips))
    assert links.hops_out == hops_out
    assert links.hops_up + links.hops_out == 79  # 80 layers: 79 boundaries when chips >= layers
    assert links.hop_up.name == "groq3-c2c" and links.hop_out.name == "groq3-inter-rack"
    assert links.all_reduce.name == "groq3-c2c"  # ceil(chips / 80) chips per layer, inside one rack
    assert links.group == math.ceil(chips / 80)


def test_two_rack_lpx_decode_interconnect_by_hand(cat):
    dep = _dep(cat, "groq3-lpu", 512)
    eff, m = dep.eff, dep.model
    s = 1 * m.hidden * dep.plan.act_bytes  # one token's hidden state, bytes
    up, out = "groq3-c2c", "groq3-inter-rack"
    hops = 78 * (_lat(cat, up) + s / _bw(cat, up, eff)) + 1 * (_lat(cat, out) + s / _bw(cat, out, eff))
    g = 7  # ceil(512 / 80) chips hold a layer
    # compiler-scheduled: a reduce-scatter and an all-gather of one C2C hop each, (g - 1) / g of the
    # message through each chip's port in each
    one_ar = 2 * (_lat(cat, up) + (g - 1) / g * s / _bw(cat, up, eff))
    expected = hops + 2 * 80 * one_ar
    got = float(step_time(dep, 1, 1, 1000).interconnect)
    assert got == pytest.approx(expected, rel=1e-9)


def test_only_one_hop_pays_the_inter_rack_latency(cat):
    """Raising the inter-rack latency by X adds exactly X per token to a 2-rack replica's decode
    step (one rack boundary), and nothing to a 1-rack replica's."""
    extra = 1e-3
    slow = cat.with_overrides([f"groq3-inter-rack.latency_s={_lat(cat, 'groq3-inter-rack') + extra!r}"])
    for chips, crossings in ((512, 1), (256, 0)):
        base = float(step_time(_dep(cat, "groq3-lpu", chips), 1, 1, 1000).interconnect)
        worse = float(step_time(_dep(slow, "groq3-lpu", chips), 1, 1, 1000).interconnect)
        assert worse - base == pytest.approx(crossings * extra, rel=1e-9, abs=1e-15)


def test_all_reduce_pays_the_c2c_latency_not_the_inter_rack_one(cat):
    """A layer's all-reduce among its 7 chips: raising the C2C latency by X adds
    2 phases x 1 hop x 160 all-reduces x X plus 78 in-rack pipeline hops x X."""
    extra = 1e-6
    dep = _dep(cat, "groq3-lpu", 512)
    fast = cat.with_overrides([f"groq3-c2c.latency_s={_lat(cat, 'groq3-c2c') + extra!r}"])
    base = float(step_time(dep, 1, 1, 1000).interconnect)
    worse = float(step_time(_dep(fast, "groq3-lpu", 512), 1, 1, 1000).interconnect)
    assert worse - base == pytest.approx((2 * 1 * 160 + 78) * extra, rel=1e-9)


def test_groq_v1_layer_group_fits_a_node_and_most_boundaries_leave_it(cat):
    # 576 chips over 80 layers: 8 chips per layer fit one 8-chip GroqNode (C2C); 72 nodes in a row,
    # so 71 of the 79 layer boundaries leave a node over the global ports
    links = dataflow_links(_dep(cat, "groq-lpu-v1", 576))
    assert (links.group, links.all_reduce.name) == (8, "groq-c2c-v1")
    assert (links.hops_out, links.hops_up) == (71, 8)


def test_wafers_hop_over_the_system_link_every_boundary(cat):
    links = dataflow_links(_dep(cat, "cerebras-wse3", 20, model="llama-3.1-405b", precision="bf16"))
    assert (links.hops_out, links.hops_up, links.group) == (19, 0, 1)
    assert links.hop_out.name == "cerebras-swarmx"


# -- LP30 per-layer latency: derived from chip facts, not the Groq v1 fit ----------------------------

def _derived_entry():
    import json
    from infersim.calibration.efficiency import DEFAULTS_FILE
    return json.loads(DEFAULTS_FILE.read_text())["families"]["groq3"]


def test_lp30_layer_latency_is_its_stated_derivation():
    """defaults.json's value and range are the arithmetic of the inputs it states: (stages x cycles
    per stage + barrier) / clock, central, fewest-fastest and most-slowest."""
    e = _derived_entry()
    d = e["derivation"]
    s, c, b, f = (d[k] for k in ("stages_per_layer", "cycles_per_stage", "barrier_cycles_per_layer", "clock_hz"))
    assert e["values"]["layer_s"] == pytest.approx((s["value"] * c["value"] + b["value"]) / f["value"], rel=0.01)
    u = e["uncertainty"]["layer_s"]
    assert u["low"] == pytest.approx((s["low"] * c["low"] + b["low"]) / f["high"], rel=0.02)
    assert u["high"] == pytest.approx((s["high"] * c["high"] + b["high"]) / f["low"], rel=0.02)
    # the clock's central value: geometric mean of the compute- and bandwidth-scaled clocks
    compute_clock = 1.2e15 / (2 * 4 * 320 * 320)                  # LP30 FP8 on v1's MXM geometry
    bw_clock = 150e12 / (2 * 44 * 2 * 320 * (500e6 / 230.7e6))    # 150 TB/s, slices grown with SRAM
    assert f["value"] == pytest.approx((compute_clock * bw_clock) ** 0.5, rel=0.01)


def _fit_file(tmp_path, families):
    import json
    path = tmp_path / "fit.json"
    path.write_text(json.dumps({"families": families}))
    return str(path)


def test_derived_family_value_wins_over_the_pooled_fit_only_its_own_fit_replaces_it(tmp_path):
    derived = _derived_entry()["values"]["layer_s"]
    load_calibration.cache_clear()
    pooled = load_calibration(_fit_file(tmp_path, {"pooled-lpu": {"values": {"layer_s": 3e-5, "mem_eff": 0.5}}}))
    lp30, v1 = pooled.for_chip("lpu", "groq3"), pooled.for_chip("lpu", "groq-v1")
    assert lp30.layer_s == derived and v1.layer_s == 3e-5
    assert lp30.mem_eff == 0.5  # what the family does not derive still comes from the pooled fit
    assert "derived for groq3" in pooled.provenance("lpu", "groq3")
    lo, hi, basis = pooled.uncertainty("lpu", "groq3")["layer_s"]
    assert (lo, hi) == (_derived_entry()["uncertainty"]["layer_s"]["low"],
                        _derived_entry()["uncertainty"]["layer_s"]["high"]) and basis.startswith("derived")
    load_calibration.cache_clear()
    own = load_calibration(_fit_file(tmp_path, {"pooled-lpu": {"values": {"layer_s": 3e-5}},
                                                "groq3": {"values": {"layer_s": 4e-6}}}))
    assert own.for_chip("lpu", "groq3").layer_s == 4e-6
    assert "layer_s" not in own.uncertainty("lpu", "groq3")
    load_calibration.cache_clear()


def test_shipped_calibration_gives_lp30_its_derived_latency():
    cal = load_calibration()
    assert cal.for_chip("lpu", "groq3").layer_s == _derived_entry()["values"]["layer_s"]


# -- per-layer latency by dependent stages; the inter-wafer hop ------------------------------------

def test_stage_layers_count_dense_layers_once_and_moe_and_ffn_only_layers_by_their_stages():
    from infersim.costmodel.afd import ffn_part
    from infersim.costmodel.execution import stage_layers
    assert stage_layers(load_model("llama-3.1-70b")) == 80            # 80 dense layers: 13 + 7 stages each
    oss = load_model("gpt-oss-120b")                                    # 36 MoE layers: 13 + 12 stages
    assert stage_layers(oss) == pytest.approx(36 * 25 / 20)
    assert stage_layers(ffn_part(oss)) == pytest.approx(36 * 12 / 20)   # AFD's LPU side: the MoE block only
    mav = load_model("llama-4-maverick")                                # MoE every other layer
    assert stage_layers(mav) == pytest.approx((24 * 25 + 24 * 20) / 20)


def test_decode_step_pays_layer_s_per_dense_layer_equivalent(cat):
    from infersim.calibration.efficiency import load_calibration as cal
    for model, units in (("llama-3.1-70b", 80), ("gpt-oss-120b", 45)):
        dep = _dep(cat, "cerebras-wse3", 4 if model == "llama-3.1-70b" else 2, model=model, precision="bf16")
        assert float(step_time(dep, 1, 1, 1000).overhead) == pytest.approx(dep.eff.layer_s * units, rel=1e-12)
    cal.cache_clear()


def test_hop_scale_multiplies_only_the_wafer_to_wafer_latency(cat):
    import dataclasses
    dep = _dep(cat, "cerebras-wse3", 20, model="llama-3.1-405b", precision="bf16")
    lat = _lat(cat, "cerebras-swarmx")
    t = {h: float(step_time(dataclasses.replace(dep, eff=dep.eff.with_values(hop_scale=h)), 1, 1, 1000).interconnect)
         for h in (0.0, 1.0, 2.5)}
    assert t[1.0] - t[0.0] == pytest.approx(19 * lat, rel=1e-9)
    assert t[2.5] - t[0.0] == pytest.approx(2.5 * 19 * lat, rel=1e-9)
    assert t[0.0] > 0  # the hidden state's bytes still cross the 19 links


def test_compiled_dataflow_step_equals_the_uncompiled_one_over_a_parameter_grid(cat):
    """The fit evaluates steps over arrays of layer_s and hop_scale: the compiled table (hop latency
    in its per-step constant) gives the same seconds as the op-by-op evaluation."""
    import dataclasses
    import numpy as np
    from infersim.costmodel.step import StepCost
    from infersim.costmodel.work import Batch, batch_shape, model_windows
    dep = _dep(cat, "cerebras-wse3", 20, model="llama-4-maverick", precision="bf16")
    eff = dep.eff.with_values(layer_s=np.array([1e-6, 5e-6, 2e-5]), hop_scale=np.array([0.0, 0.5, 2.0]))
    d = dataclasses.replace(dep, eff=eff)
    shape = batch_shape(Batch(seqs=np.float64(1), new=np.float64(5), past=np.float64(1000)), model_windows(d.model))
    np.testing.assert_allclose(StepCost(d).total(shape), StepCost(d, compiled=False).time(shape).total, rtol=1e-12)


def test_rows_resting_on_a_parameter_are_the_rows_it_moves():
    import numpy as np
    from infersim.validation.folds import rows_resting_on
    a, b = np.repeat([1.0, 2.0, 4.0], 3), np.tile([0.0, 1.0, 2.0], 3)  # a 3 x 3 grid of two parameters
    logerr = np.vstack([np.log(a),                  # row 1 moves with a only
                        0.01 * b,                   # row 2 moves with b, by 1% per unit: below 5%
                        np.log(a) + 0.5 * b])       # row 3 moves with both
    rest = rows_resting_on(logerr, {"a": a, "b": b}, {"a": 2.0, "b": 1.0}, ["r1", "r2", None])
    assert (rest["a"]["rows"], rest["a"]["ids"]) == (2, ["r1"])  # the None row is counted, not listed
    assert (rest["b"]["rows"], rest["b"]["ids"]) == (1, [])


def test_afd_ffn_only_layers_all_reduce_once_per_layer(cat):
    """A decoder layer all-reduces after its mixer and after its FFN; AFD's LPU side holds only
    the FFN blocks, so one all-reduce per layer."""
    from infersim.costmodel.afd import ffn_part
    full = dataflow_links(_dep(cat, "groq3-lpu", 512))
    assert full.all_reduces == 2 * 80
    oss = load_model("gpt-oss-120b")
    ffn = build_deployment(ffn_part(oss), "groq3-lpu", chips=256, precision="mixed", catalog=cat,
                           calibration=load_calibration("none"))
    assert dataflow_links(ffn).all_reduces == 36


def test_groq_v1_eight_chip_all_reduce_near_the_quoted_figure(cat):
    """Groq's 8-TSP all-reduce is quoted at 2.1 us (serving_facts s5.2, second-hand): the scheduled
    two-hop all-reduce over groq-c2c-v1 (1 us assumed per hop) of one token's 8 KiB hidden state
    lands near it; NCCL's tree latency (2 x ceil(log2 8) hops) would be about three times as long."""
    from infersim.costmodel.collectives import all_reduce_times
    from infersim.costmodel.execution import collective_time
    link = cat.link("groq-c2c-v1")
    eff = load_calibration().for_chip("lpu", "groq-v1")
    t = float(collective_time(link, eff, 8, 8192.0, 1.0, "all_reduce"))
    assert 1.8e-6 <= t <= 2.5e-6
    assert float(all_reduce_times(link, eff, 8, 8192.0)["nccl"]) > 2.5 * t
