"""AFD step bounds: the LPU pool and the link are busy only for their work (compute, SRAM streaming,
bytes over a link), never for latency or the engine's host work. Inputs are pinned here (calibration
and catalog overrides) so each expected value is written out from them by hand."""
from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml

from infersim.calibration.efficiency import load_calibration
from infersim.catalog.hardware import load_catalog
from infersim.catalog.models import load_model
from infersim.costmodel.afd import AFDStepCost, afd_bottleneck
from infersim.costmodel.work import Batch, batch_shape, model_windows
from infersim.modes import build_plan, load_spec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "deployments" / "vr-nvl72-lpx-afd.yaml"
NO_LPU_LATENCY = ["groq3-c2c.latency_s=0", "groq3-inter-rack.latency_s=0"]


@pytest.fixture(scope="module")
def gptoss():
    return load_model("gpt-oss-120b")


def _calibration(layer_s: float, host_scale: float | None = None):
    """The shipped calibration with the LP30's per-layer latency pinned to `layer_s` (and no kernel
    launch cost on the LPU), and optionally every GPU family's host_scale pinned."""
    cat = load_catalog()
    shipped = load_calibration()
    fitted = copy.deepcopy(shipped.fitted)
    fams = fitted.setdefault("families", {})
    fams[cat.chip("groq3-lpu").family] = {"values": {"layer_s": layer_s, "kernel_s": 0.0}}
    if host_scale is not None:
        for name, fam in fams.items():
            if "host_scale" in fam["values"]:
                fam["values"]["host_scale"] = host_scale
        fams.setdefault(cat.chip("rubin").family, {"values": {}})["values"]["host_scale"] = host_scale
    return dataclasses.replace(shipped, fitted=fitted)


def _cost(tmp_path, model, catalog=None, calibration=None, name="dep", engine=None, **changes) -> AFDStepCost:
    d = yaml.safe_load(EXAMPLE.read_text())
    for k, v in changes.items():
        d[k] = {**d[k], **v} if isinstance(v, dict) else v
    if engine is not None:
        d["engine"] = engine
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(d))
    return build_plan(load_spec(p), model, catalog=catalog, calibration=calibration).pool("decode").timer


def _shape(model, batch, past=1024):
    return batch_shape(Batch(seqs=np.float64(batch), new=np.float64(1), past=np.float64(past), span=255),
                       model_windows(model))


def _one(v) -> float:
    return float(np.asarray(v).reshape(-1)[0])


def test_pool_bound_counts_busy_time_not_pipeline_or_hop_latency(tmp_path, gptoss):
    """tp 1: 72 GPU replicas, 1 prefill -> 71 attention replicas on one 256-LPU pool of 36 FFN stages.
    With every LPU latency at 0 (per-layer latency, C2C hop latency) the FFN part F0 is all busy time.
    Pinning 25 us per layer and the catalog's hop latencies back on lengthens the chain by at least
    36 x 12/20 x 25 us = 0.54 ms (an FFN-only MoE layer is 12 of a dense layer's 20 dependent stages) but leaves the pool's busy time F0 and its bound 71 x m x F0 / 36 unchanged."""
    no_lat = _cost(tmp_path, gptoss, catalog=load_catalog().with_overrides(NO_LPU_LATENCY),
                   calibration=_calibration(0.0), name="nolat", micro_batches=2, gpu={"tp": 1, "prefill_replicas": 1})
    lat = _cost(tmp_path, gptoss, calibration=_calibration(25e-6), name="lat", micro_batches=2,
                gpu={"tp": 1, "prefill_replicas": 1})
    assert lat.afd.attention.par.replicas == 71 and lat.afd.units == 1 and lat.n_ffn == 36
    for batch in (1, 16, 64):
        shape = _shape(gptoss, batch)
        p0, p = no_lat.parts(shape), lat.parts(shape)
        f0 = _one(p0["ffn_s"])
        m = min(2, batch)
        assert _one(p0["ffn_busy_s"]) == pytest.approx(f0, rel=1e-9)          # no latency: all busy
        assert _one(p["ffn_busy_s"]) == pytest.approx(f0, rel=1e-9)           # latency adds no busy time
        # ... but lengthens the chain: gpt-oss's 36 FFN-only MoE layers are 12 of a dense layer's 20
        # dependent stages each (costmodel.execution.BLOCK_STAGES), 36 x 12/20 x 25 us = 0.54 ms
        assert _one(p["ffn_s"]) >= f0 + 36 * 12 / 20 * 25e-6 * (1 - 1e-9)
        assert _one(lat.bounds(shape)["lpu"]) == pytest.approx(71 * m * f0 / 36, rel=1e-9)
        assert _one(lat.bounds(shape)["lpu"]) < 71 * m * _one(p["ffn_s"]) / 36   # the old (latency) bound


def test_host_work_adds_to_chain_and_gpu_bounds_only(tmp_path, gptoss):
    """A synchronous engine (trtllm-cpp: host work before the GPU's) with host_scale 0 and 1: the chain
    and the GPU bound move by exactly the host work O, the link and LPU bounds not at all. The link
    bound by hand: m x 2 x 36 crossings x (tokens/m x 2880 x 2 B) / (bw x link_eff x 7 lanes)."""
    cat = load_catalog()
    link = cat.link("gpu-lpu-direct")
    costs = {s: _cost(tmp_path, gptoss, calibration=_calibration(20e-6, host_scale=s), name=f"h{s}",
                      engine="trtllm-cpp", micro_batches=2) for s in (0.0, 1.0)}
    assert not costs[1.0].host.engine.overlap
    for batch in (1, 8, 64):
        shape = _shape(gptoss, batch)
        b0, b1 = costs[0.0].bounds(shape), costs[1.0].bounds(shape)
        o = _one(costs[1.0].parts(shape)["overhead_s"])
        assert o > 0 and _one(costs[0.0].parts(shape)["overhead_s"]) == 0.0
        assert "host" not in b1
        for k in ("chain", "gpu"):
            assert _one(b1[k]) == pytest.approx(_one(b0[k]) + o, rel=1e-12)
        for k in ("link", "lpu"):
            assert _one(b1[k]) == pytest.approx(_one(b0[k]), rel=1e-12)
        m = min(2, batch)
        bw = float(link.bw_bytes_per_s_per_dir.value) * costs[1.0].afd.ffn.eff.link_eff
        assert _one(b1["link"]) == pytest.approx(m * 72 * (batch / m) * 2880 * 2 / (bw * 7), rel=1e-9)


def test_time_shares_keep_latency_out_of_the_lpu_busy_share(tmp_path, gptoss):
    """The LPU's busy shares (compute, memory, interconnect) add up to the pool bound over the step:
    one stage is busy G x m x F_busy / 36 per step; latency shows as idle."""
    cost = _cost(tmp_path, gptoss, calibration=_calibration(25e-6), micro_batches=2)
    for batch in (1, 64):
        shape = _shape(gptoss, batch)
        s = cost.time_shares(shape)["lpu"]
        t = _one(cost.total(shape))
        busy = (s["compute"] + s["memory"] + s["interconnect"]) * t
        assert busy == pytest.approx(_one(cost.bounds(shape)["lpu"]), rel=1e-9)
        assert "overhead" not in s and s["idle"] == pytest.approx(1 - busy / t, abs=1e-12)
        assert afd_bottleneck(cost, shape) in ("chain", "host")
