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
from infersim.costmodel.step import dataflow_links, step_time
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
    # ring bandwidth with tree latency: 2 phases of ceil(log2 g) hops and (g - 1) / g of the message
    one_ar = 2 * (math.ceil(math.log2(g)) * _lat(cat, up) + (g - 1) / g * s / _bw(cat, up, eff))
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
    2 phases x ceil(log2 7) hops x 160 all-reduces x X plus 78 in-rack pipeline hops x X."""
    extra = 1e-6
    dep = _dep(cat, "groq3-lpu", 512)
    fast = cat.with_overrides([f"groq3-c2c.latency_s={_lat(cat, 'groq3-c2c') + extra!r}"])
    base = float(step_time(dep, 1, 1, 1000).interconnect)
    worse = float(step_time(_dep(fast, "groq3-lpu", 512), 1, 1, 1000).interconnect)
    assert worse - base == pytest.approx((2 * 3 * 160 + 78) * extra, rel=1e-9)


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
