"""More LPX racks per NVL72 in an AFD deployment never lower per-user speed, and raise it while the
LPU pool is the binding stage. Checked through the public path: a deployment file -> plan -> the
decode pool's step timer, over models, layouts, batches, contexts, micro-batches, LPU speeds (a
catalog override of the LP30's SRAM bandwidth, so the pool binds in some draws) and fractional
LPX : NVL72 ratios."""
from __future__ import annotations

import copy
import dataclasses
from functools import lru_cache
from pathlib import Path

import pytest
import yaml
from hypothesis import event, given, settings, strategies as st

from infersim.calibration.efficiency import load_calibration
from infersim.catalog.hardware import load_catalog
from infersim.catalog.models import load_model
from infersim.modes import build_plan, load_spec

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "deployments" / "vr-nvl72-lpx-afd.yaml"
LPX_CHIPS = 256          # LP30s per LPX rack (catalog systems/lpx.yaml)
SRAM_BW = 1.5e14         # LP30 SRAM bytes/s (catalog chips/groq3-lpu.yaml); draws scale it down
MODELS = ("gpt-oss-120b", "llama-3.1-70b", "llama-3.1-8b", "deepseek-v3")


@lru_cache(maxsize=None)
def _catalog(sram_scale: float):
    return load_catalog().with_overrides([f"groq3-lpu.mem_bw_bytes_per_s={SRAM_BW * sram_scale}"])


@lru_cache(maxsize=None)
def _calibration(host_work: bool):
    """The shipped calibration, or with every GPU family's host_scale at 0 (no engine host work, so
    the other stages can bind in more draws)."""
    shipped = load_calibration()
    if host_work:
        return shipped
    fitted = copy.deepcopy(shipped.fitted)
    for fam in fitted.get("families", {}).values():
        if "host_scale" in fam["values"]:
            fam["values"]["host_scale"] = 0.0
    return dataclasses.replace(shipped, fitted=fitted)


@lru_cache(maxsize=None)
def _timer(model: str, tp: int, gpu_racks: int, m: int, ratio: float, sram_scale: float, tmp: str,
           host_work: bool = True):
    d = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    d["gpu"].update(tp=tp, racks=gpu_racks, prefill_replicas=1)
    d["lpu"]["racks_per_gpu_rack"] = ratio
    d["micro_batches"] = m
    p = Path(tmp) / f"{model}-{tp}-{gpu_racks}-{m}-{ratio!r}-{sram_scale}-{host_work}.yaml"
    p.write_text(yaml.safe_dump(d))
    return build_plan(load_spec(p), load_model(model), catalog=_catalog(sram_scale),
                      calibration=_calibration(host_work)).pool("decode").timer


def _speed(timer, batch: int, context: int) -> tuple[float, str, dict]:
    """(tokens/s per user, binding stage, bounds) of a decode step at `batch` and `context`."""
    step = timer.decode_step(batch, context, 255)
    bounds = {k: float(v) for k, v in timer.bounds(timer.uniform_decode_shape(batch, context, 255)).items()}
    return timer.tokens_per_decode_step / step.seconds, step.details["afd"]["bottleneck"], bounds


def _pool_ratio(model: str, tp: int, gpu_racks: int, sram_scale: float, tmp: str) -> float:
    """LPX racks per GPU rack that one FFN pool takes (whole racks holding the FFN weights)."""
    big = _timer(model, tp, gpu_racks, 1, 64.0, sram_scale, tmp)
    return big.afd.ffn.chips_per_replica / LPX_CHIPS / gpu_racks


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("afd-racks"))


@settings(max_examples=40, deadline=None)
@given(model=st.sampled_from(MODELS), tp=st.sampled_from((1, 2, 4, 8)), gpu_racks=st.sampled_from((1, 2)),
       m=st.integers(1, 8), context=st.integers(128, 16384), batch_frac=st.floats(0, 1),
       sram_scale=st.sampled_from((1.0, 0.1, 0.02, 0.005)), host_work=st.booleans(),
       first=st.integers(0, 12), more=st.integers(1, 16))
def test_more_lpx_racks_never_lower_speed_and_raise_it_while_the_pool_binds(
        tmp_dir, model, tp, gpu_racks, m, context, batch_frac, sram_scale, host_work, first, more):
    batch = 1 + int(batch_frac * min(255, 4 * 16384 // context))  # a KV footprint a replica holds
    pool = _pool_ratio(model, tp, gpu_racks, sram_scale, tmp_dir)
    r1 = pool * (1 + first / 4)          # from the fewest racks that hold the FFN weights, in quarter pools
    r2 = r1 + pool * more / 4            # ... plus a quarter pool or more
    t1 = _timer(model, tp, gpu_racks, m, r1, sram_scale, tmp_dir, host_work)
    t2 = _timer(model, tp, gpu_racks, m, r2, sram_scale, tmp_dir, host_work)
    s1, binds, b1 = _speed(t1, batch, context)
    s2, _, _ = _speed(t2, batch, context)
    assert t2.afd.units >= t1.afd.units
    assert s2 >= s1 * (1 - 1e-12), (r1, r2, s1, s2)
    others = max(v for k, v in b1.items() if k != "lpu")
    event(f"binds: {binds}")
    if binds == "lpu" and b1["lpu"] > others and t2.afd.units > t1.afd.units:
        assert s2 > s1, (r1, r2, s1, s2)
    if more >= 4:   # at least one more whole pool
        assert t2.afd.units > t1.afd.units


def test_a_binding_pool_gets_faster_with_every_added_pool(tmp_dir):
    """gpt-oss-120b, tp 1 (71 attention replicas), 4 micro-batches of 16, LP30 SRAM at 3 TB/s (a
    50x slower what-if): one 256-LPU pool serves 71 x 4 micro-batches per step and binds. Its bound
    is 71 / u x 4 x F_busy / 36 with u pools, so 2 and 3 LPX racks per NVL72 cut it to 1/2 and 1/3
    while the other bounds stay put; per-user speed rises until another stage binds."""
    speeds, lpu = [], []
    for r in (1.0, 2.0, 3.0):
        t = _timer("gpt-oss-120b", 1, 1, 4, r, 0.02, tmp_dir)
        assert t.afd.units == int(r) and t.afd.replicas_per_unit == pytest.approx(71 / r)
        s, binds, b = _speed(t, 64, 2048)
        speeds.append(s)
        lpu.append(b["lpu"])
        if r == 1.0:
            assert binds == "lpu"
    assert lpu[1] == pytest.approx(lpu[0] / 2, rel=1e-12) and lpu[2] == pytest.approx(lpu[0] / 3, rel=1e-12)
    assert speeds[0] < speeds[1] <= speeds[2]


def test_fewer_racks_than_one_pool_is_refused_with_the_ratio(tmp_dir):
    """gpt-oss-120b's FFN weights (~61 GB) fit 129 LP30s; a pool takes one whole LPX rack, so half
    a rack per NVL72 is refused naming ratio 1."""
    from infersim.errors import InputError
    with pytest.raises(InputError, match=r"racks_per_gpu_rack to at least 1\b"):
        _timer("gpt-oss-120b", 8, 1, 2, 0.5, 1.0, tmp_dir)


# ------------------------------------------------------------------------------------------------
# Which stage binds, and the ratio at which it stops
# ------------------------------------------------------------------------------------------------


def test_binding_ratios_golden_by_hand():
    """8 attention replicas on 1 pool of 256 chips, 256 chips per unit of ratio (one GPU rack of
    LPX racks). Pool bound 10 ms with 1 pool: one replica's share 10 / 8 = 1.25 ms, so u pools give
    8 x 1.25 / u = 10 / u ms. Chain 3 ms, GPU 2 ms, link 1 ms: the pool falls below the chain
    (10 / u < 3) from u = 4 pools, ratio 4; the chain binds from there on at any ratio (10 / u <= 3 from
    u = ceil(3.33) = 4); GPU and link never bind. With a 9 ms pool: 9 / 3 = 3 pools tie the chain, so
    it stops binding only at 4 pools while the chain binds from 3 (ties go to the chain, listed first)."""
    from infersim.costmodel.afd_binding import afd_binding
    b = afd_binding({"chain": 3e-3, "gpu": 2e-3, "link": 1e-3, "lpu": 10e-3}, replicas=8, pools=1, pool_chips=256,
                    ratio=1.0, chips_per_ratio=256)
    assert b.binding == "lpu" and b.min_ratio == 1.0
    assert (b.stages["lpu"].status, b.stages["lpu"].ratio) == ("stops binding", 4.0)
    assert (b.stages["chain"].status, b.stages["chain"].ratio) == ("binds at any ratio", 4.0)
    assert b.stages["gpu"].status == b.stages["link"].status == "never binds"
    tie = afd_binding({"chain": 3e-3, "gpu": 2e-3, "link": 1e-3, "lpu": 9e-3}, 8, 1, 256, 1.0, 256)
    assert tie.stages["lpu"].ratio == 4.0 and tie.stages["chain"].ratio == 3.0
    # two GPU racks (512 chips per unit of ratio), pools of 2 racks (512 chips), 2 pools now
    two = afd_binding({"chain": 3e-3, "link": 4e-3, "lpu": 5e-3}, replicas=16, pools=2, pool_chips=512,
                      ratio=2.0, chips_per_ratio=512)
    # one replica's share 5 x 2 / 16 = 0.625 ms; below the link (4 ms) when 16 x 0.625 / u < 4: u = 3
    assert (two.stages["lpu"].status, two.stages["lpu"].ratio) == ("stops binding", 3.0)
    assert (two.stages["link"].status, two.stages["link"].ratio) == ("binds at any ratio", 3.0)
    assert two.stages["chain"].status == "never binds"
    calm = afd_binding({"chain": 3e-3, "lpu": 1e-3}, 8, 1, 256, 1.0, 256)
    assert calm.stages["lpu"].status == "never binds" and calm.stages["lpu"].ratio is None
    assert (calm.stages["chain"].status, calm.stages["chain"].ratio) == ("binds at any ratio", 1.0)


def test_reported_stop_ratio_holds_through_the_build_path(tmp_dir):
    """The slow-SRAM gpt-oss case: the ratio estimate reports for the pool to stop binding is one at
    which, rebuilt from the file, the pool no longer binds, while one pool fewer it still does."""
    t = _timer("gpt-oss-120b", 1, 1, 4, 1.0, 0.02, tmp_dir)
    b = t.decode_step(64, 2048, 255).details["afd"]["binding"]
    assert b["binding"] == "lpu"
    stop = b["stages"]["lpu"]["ratio"]
    assert b["stages"]["lpu"]["status"] == "stops binding" and stop > 1.0
    _, binds_at, _ = _speed(_timer("gpt-oss-120b", 1, 1, 4, stop, 0.02, tmp_dir), 64, 2048)
    _, binds_below, _ = _speed(_timer("gpt-oss-120b", 1, 1, 4, stop - 1.0, 0.02, tmp_dir), 64, 2048)
    assert binds_at != "lpu" and binds_below == "lpu"
