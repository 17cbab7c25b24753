"""Modes and the one pipeline: flags and files compile into the same spec and plan; a mode is one
registered module; plans refuse what no mode can serve."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from infersim.catalog.hardware import load_catalog
from infersim.catalog.models import load_model
from infersim.deployments.options import spec_from_options
from infersim.deployments.plan import Plan, plain_pool
from infersim.errors import InputError
from infersim.estimate import estimate_plan
from infersim.mapping.deployment import build_deployment
from infersim.modes import build_plan, load_spec, modes, register
from infersim.modes import _MODES  # the registry itself, to undo a test registration

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "deployments"


@pytest.fixture(scope="module")
def gptoss():
    return load_model("gpt-oss-120b")


def _write(tmp_path: Path, d: dict) -> Path:
    p = tmp_path / "dep.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def test_every_mode_is_a_module_of_its_own():
    here = Path(__import__("infersim.modes", fromlist=["x"]).__file__).parent
    files = {p.stem for p in here.glob("*.py") if not p.stem.startswith("_")}
    assert set(modes()) == files == {"gpu", "pd", "lpu", "afd", "spec"}


def test_a_new_mode_registers_by_name_and_builds(tmp_path, gptoss):
    """What the README says adding a mode takes: one builder registered under a name."""
    @register("one-h100-test", needs=(), description="test")
    def build(ctx):
        dep = build_deployment(ctx.model, "h100-sxm", chips=2, tp=2, precision="fp8", catalog=ctx.catalog,
                               calibration=ctx.calibration)
        return ctx.plan([plain_pool(dep)])
    try:
        spec = load_spec(_write(tmp_path, {"name": "t", "mode": "one-h100-test"}))
        plan = build_plan(spec, load_model("llama-3.1-8b"))
        assert plan.decode_pool.deployment.par.tp == 2
        assert estimate_plan(plan, batch=4)["tok_s_per_user"] > 0
    finally:
        _MODES.pop("one-h100-test")


def test_unknown_mode_lists_the_registered_ones(tmp_path):
    with pytest.raises(InputError, match="unknown mode 'gpx'.*afd, gpu, lpu, pd, spec"):
        load_spec(_write(tmp_path, {"name": "t", "mode": "gpx", "gpu": {"system": "vr-nvl72"}}))


def test_flags_and_file_compile_to_the_same_plan(gptoss):
    """`--system vr-nvl72 --tp 8 --precision fp8` and examples/deployments/vr-nvl72.yaml describe the
    same rack: the same pools, and so the same estimate."""
    cat = load_catalog()
    flags = build_plan(spec_from_options(cat, system="vr-nvl72", tp=8, precision="fp8"), gptoss, cat)
    file = build_plan(load_spec(EXAMPLES / "vr-nvl72.yaml"), gptoss, cat)
    a, b = flags.decode_pool.deployment, file.decode_pool.deployment
    assert (a.par, a.n_chips, a.plan.name, a.chip.name) == (b.par, b.n_chips, b.plan.name, b.chip.name)
    assert a.par.replicas == 72 // 8
    ea, eb = estimate_plan(flags, batch=8), estimate_plan(file, batch=8)
    assert ea["tok_s_per_user"] == eb["tok_s_per_user"]
    assert ea["racks"] == eb["racks"] == {"gpu": 1}


def test_pd_file_splits_the_rack_and_names_the_kv_link(tmp_path, gptoss):
    d = yaml.safe_load((EXAMPLES / "vr-nvl72.yaml").read_text())
    d.update(mode="pd")
    d["gpu"]["prefill_replicas"] = 3
    plan = build_plan(load_spec(_write(tmp_path, d)), gptoss)
    pre, dec = plan.serving_pools()
    assert (pre.role, pre.replicas, dec.role, dec.replicas) == ("prefill", 3, "decode", 6)
    assert plan.kv_link is not None and plan.kv_link.kind == "nvlink"  # both pools inside one NVL72


def test_gpu_mode_with_prefill_replicas_points_at_pd(tmp_path, gptoss):
    d = yaml.safe_load((EXAMPLES / "vr-nvl72.yaml").read_text())
    d["gpu"]["prefill_replicas"] = 2
    with pytest.raises(InputError, match="mode: pd"):
        build_plan(load_spec(_write(tmp_path, d)), gptoss)


@pytest.mark.parametrize("example", ["vr-nvl72-lpx-afd", "vr-nvl72-lpx-spec"])
@pytest.mark.parametrize("link", ["nvlink5", "groq3-c2c"])
def test_gpu_lpu_link_must_be_able_to_join_them(tmp_path, gptoss, example, link):
    cat = load_catalog()
    if link not in cat.links:
        pytest.skip(f"no {link} in the catalog")
    d = yaml.safe_load((EXAMPLES / f"{example}.yaml").read_text())
    d["link"] = link
    with pytest.raises(InputError, match="cannot join GPU racks to LPU racks"):
        build_plan(load_spec(_write(tmp_path, d)), gptoss, cat)


def test_plan_refuses_pools_no_request_can_pass(gptoss):
    dep = build_deployment(gptoss, "h100-sxm", chips=8, tp=8, precision="fp8")
    spec = load_spec(EXAMPLES / "vr-nvl72.yaml")
    with pytest.raises(InputError, match="one 'both' pool or one 'prefill' and one 'decode'"):
        Plan(spec, gptoss, [plain_pool(dep, "decode")]).serving_pools()
    with pytest.raises(InputError):
        Plan(spec, gptoss, [plain_pool(dep), plain_pool(dep)]).serving_pools()


def test_bare_sram_chip_is_sized_or_refused_by_the_caller(gptoss):
    """Without a chip count an LPU pipeline is sized for the batch (estimate) or refused with the
    count (simulate); with none of those it holds the weights alone."""
    from infersim.modes._shared import Sizing
    cat = load_catalog()
    spec = spec_from_options(cat, system="groq-lpu-v1")
    m = load_model("llama-3.1-8b")
    weights_only = build_plan(spec, m, cat).decode_pool.deployment.chips_per_replica
    sized = build_plan(spec, m, cat, sizing=Sizing(8192, 16, auto=True)).decode_pool.deployment.chips_per_replica
    assert sized > weights_only >= 1
    with pytest.raises(InputError, match=f"e.g. {sized} per replica"):
        build_plan(spec, m, cat, sizing=Sizing(8192, 16, auto=False))
