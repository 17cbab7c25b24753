"""`infersim.economics`: golden cases computed by hand (capex amortisation, power with PUE and idle
draw, cost per million input and output tokens, revenue / payback / ROI, cloud rent, a system priced
by its chips), monotonicity, the shipped price data, and bad input (one line, exit code 2)."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings, strategies as st
from typer.testing import CliRunner

from cli_checks import assert_fails_cleanly
from infersim.catalog.hardware import load_catalog
from infersim.catalog.models import load_model
from infersim.calibration.efficiency import load_calibration
from infersim.cli.main import app
from infersim.deployments.sensitivity import sensitivity
from infersim.economics import Throughput, load_prices, plan_economics, split_overrides, throughput_of_plan_estimate
from infersim.errors import InputError
from infersim.estimate import estimate_plan
from infersim.modes import build_plan, load_spec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "deployments"
runner = CliRunner()
HOURS_PER_YEAR = 8766.0  # 365.25 days

TOY = """
chips:
  - {name: toy-gpu, kind: gpu, family: toy, vendor: none, description: made up, memory_kind: hbm,
     mem_bytes: {value: 8.0e10, basis: spec, source: test}, mem_bw_bytes_per_s: {value: 3.0e12, basis: spec, source: test},
     tdp_w: {value: 1000, basis: spec, source: test}, capex_usd: {value: 10000, basis: spec, source: test},
     cloud_usd_per_hour: {value: 2.0, basis: spec, source: test}}
systems:
  - {name: toy-rack, description: made up, chip: toy-gpu, n_chips: 8, scale_up_link: null, scale_up_domain: 1,
     power_w: {value: 100000, basis: spec, source: test}, capex_usd: {value: 8.766e6, basis: spec, source: test},
     cloud_usd_per_hour: {value: 500, basis: spec, source: test}}
  - {name: toy-box, description: made up without prices, chip: toy-gpu, n_chips: 8, scale_up_link: null,
     scale_up_domain: 1}
"""


@pytest.fixture(scope="module")
def toy_catalog(tmp_path_factory):
    path = tmp_path_factory.mktemp("hw") / "toy.yaml"
    path.write_text(TOY)
    return load_catalog([path])


def toy_plan(catalog, system: str = "toy-rack", racks: float = 2.0):
    """A stand-in for a built plan: `racks` of `system` (plan_economics reads racks, the spec's
    system names and the pools' chips)."""
    chip = catalog.chip(catalog.system(system).chip)
    dep = SimpleNamespace(chip=chip, n_chips=int(8 * racks))
    return SimpleNamespace(racks={"gpu": racks}, spec=SimpleNamespace(gpu=SimpleNamespace(system=system), lpu=None),
                           pools=[SimpleNamespace(deployment=dep)], premium=None)


# PUE 1.5, 10 cents per kWh, a one-year life, idle at 20% of rated power; a tier at $0.5 in / $10 out
PRICES = ["economics.lifetime_years=1", "economics.pue=1.5", "economics.usd_per_kwh=0.1",
          "economics.idle_power_fraction=0.2", "economics.standard.usd_per_mtok_input=0.5",
          "economics.standard.usd_per_mtok_output=10"]
SERVED = Throughput(output_tok_s=1e5, input_tok_s=2e5, utilisation=1.0, prefill_share=0.25)


def test_capex_amortisation_power_and_cost_per_mtok_by_hand(toy_catalog):
    e = plan_economics(toy_plan(toy_catalog), SERVED, toy_catalog, load_prices(overrides=PRICES))
    # two racks at $8.766M over one year of 8766 h: $2000/h
    assert e.capex_usd == pytest.approx(2 * 8.766e6)
    assert e.capex_usd_per_hour == pytest.approx(2000.0)
    # 2 x 100 kW rated, fully busy, x PUE 1.5 = 300 kW at $0.10/kWh: $30/h
    assert e.rated_power_w == pytest.approx(200e3) and e.draw_power_w == pytest.approx(200e3)
    assert e.facility_power_w == pytest.approx(300e3)
    assert e.energy_usd_per_hour == pytest.approx(30.0)
    assert e.cost_usd_per_hour == pytest.approx(2030.0)
    # 1e5 output tok/s = 360 Mtok/h carries 75% of $2030; 2e5 input tok/s = 720 Mtok/h carries 25%
    assert e.cost_per_mtok_output_usd == pytest.approx(2030 * 0.75 / 360)
    assert e.cost_per_mtok_input_usd == pytest.approx(2030 * 0.25 / 720)
    assert e.output_tok_s_per_facility_mw == pytest.approx(1e5 / 0.3)
    assert e.output_tok_per_usd == pytest.approx(360e6 / 2030)
    # the standard tier: revenue 720 x 0.5 + 360 x 10 = $3960/h, margin over power $3930/h
    std = next(t for t in e.tiers if t.tier == "standard")
    assert std.revenue_usd_per_hour == pytest.approx(3960.0)
    assert std.margin_usd_per_hour == pytest.approx(3930.0)
    assert std.payback_years == pytest.approx(2 * 8.766e6 / (3930 * HOURS_PER_YEAR))
    assert std.roi == pytest.approx(3930 / 2000 - 1)  # one year: lifetime margin / capex - 1


def test_idle_draw_at_part_load_by_hand(toy_catalog):
    half = Throughput(1e5, 2e5, utilisation=0.5, prefill_share=0.25)
    e = plan_economics(toy_plan(toy_catalog), half, toy_catalog, load_prices(overrides=PRICES))
    # 200 kW x (0.2 + 0.8 x 0.5) = 120 kW drawn, x 1.5 = 180 kW: $18/h
    assert e.draw_power_w == pytest.approx(120e3)
    assert e.energy_usd_per_hour == pytest.approx(18.0)
    assert "economics.idle_power_fraction" in [p.name for p in e.prices]


def test_cloud_rent_by_hand(toy_catalog):
    e = plan_economics(toy_plan(toy_catalog), SERVED, toy_catalog, load_prices(overrides=PRICES), "cloud")
    assert e.capex_usd is None and e.energy_usd_per_hour == 0
    assert e.cost_usd_per_hour == pytest.approx(1000.0)  # 2 racks x $500/h, power included
    assert e.cost_per_mtok_output_usd == pytest.approx(1000 * 0.75 / 360)
    std = next(t for t in e.tiers if t.tier == "standard")
    assert std.payback_years is None and std.roi == pytest.approx((3960 - 1000) / 1000)


def test_a_system_without_prices_is_priced_by_its_chips(toy_catalog):
    e = plan_economics(toy_plan(toy_catalog, "toy-box", 1.0), SERVED, toy_catalog, load_prices(overrides=PRICES))
    assert e.capex_usd == pytest.approx(8 * 10000)
    assert e.rated_power_w == pytest.approx(8 * 1000)  # the chips' TDP
    names = [p.name for p in e.prices]
    assert "toy-gpu.capex_usd" in names and "toy-gpu.tdp_w" in names
    rent = plan_economics(toy_plan(toy_catalog, "toy-box", 1.0), SERVED, toy_catalog, load_prices(), "cloud")
    assert rent.cost_usd_per_hour == pytest.approx(8 * 2.0)


def test_a_missing_price_names_the_fix():
    cat = load_catalog()
    plan = toy_plan(cat, "mi355x-8", 1.0)
    with pytest.raises(InputError, match="capex_usd.*--set"):
        plan_economics(plan, SERVED, cat, load_prices())


@settings(max_examples=30, deadline=None)
@given(capex=st.floats(1e4, 1e8), factor=st.floats(1.01, 10), tok=st.floats(1.0, 1e7), kwh=st.floats(0.01, 1.0))
def test_monotonic_in_price_and_throughput(toy_catalog, capex, factor, tok, kwh):
    plan = toy_plan(toy_catalog)
    base = load_prices(overrides=[f"economics.usd_per_kwh={kwh!r}"])

    def cost(cat, prices, out_tok_s):
        return plan_economics(plan, Throughput(out_tok_s, out_tok_s, 1.0, 0.3), cat, prices).cost_per_mtok_output_usd

    cat = toy_catalog.with_overrides([f"toy-rack.capex_usd={capex!r}"])
    dearer = toy_catalog.with_overrides([f"toy-rack.capex_usd={capex * factor!r}"])
    assert cost(dearer, base, tok) > cost(cat, base, tok)
    assert cost(cat, load_prices(overrides=[f"economics.usd_per_kwh={kwh * factor!r}"]), tok) > cost(cat, base, tok)
    assert cost(cat, base, tok * factor) < cost(cat, base, tok)


@pytest.mark.parametrize("bad", [dict(output_tok_s=0, input_tok_s=1), dict(output_tok_s=-1, input_tok_s=1),
                                 dict(output_tok_s=float("nan"), input_tok_s=1),
                                 dict(output_tok_s=1, input_tok_s=1, utilisation=1.5),
                                 dict(output_tok_s=1, input_tok_s=1, prefill_share=-0.1)])
def test_bad_throughput(bad):
    with pytest.raises(InputError):
        Throughput(**bad)


def test_shipped_prices_have_sources_and_ranges():
    prices = load_prices()
    for key in prices.keys():
        q = prices.quantity(key)
        assert q.source and q.value is not None
        if q.basis in ("estimate", "assumption"):
            assert q.low <= q.value <= q.high and q.low < q.high, key
    cat = load_catalog()
    for name in ("vr-nvl72", "gb200-nvl72", "gb300-nvl72", "lpx", "cs3"):
        q = cat.system(name).capex_usd
        assert q is not None and q.source and q.low < q.high, name
    assert cat.system("lpx").capex_usd.basis == "assumption"  # no LPX price is published


def test_split_overrides_keeps_order():
    hw, prices = split_overrides(["a.b=1", "economics.pue=1.2", "c.d=2", "Economics.usd_per_kwh=0.1"])
    assert hw == ["a.b=1", "c.d=2"] and prices == ["economics.pue=1.2", "Economics.usd_per_kwh=0.1"]


# ------------------------------------------------------------------------------------- plans and the CLI

def test_prefill_share_of_an_estimate():
    cat, cal = load_catalog(), load_calibration(None)
    pd = build_plan(load_spec(EXAMPLES / "vr-nvl72-pd.yaml"), load_model("gpt-oss-120b"), cat, cal)
    d = estimate_plan(pd, 32, 2000, 500)
    pre, dec = pd.prefill_pool.deployment.n_chips, pd.decode_pool.deployment.n_chips
    assert d["prefill_share"] == pytest.approx(pre / (pre + dec))  # disaggregated: the prefill chips' share
    agg = build_plan(load_spec(EXAMPLES / "vr-nvl72.yaml"), load_model("gpt-oss-120b"), cat, cal)
    short, long = estimate_plan(agg, 32, 500, 500), estimate_plan(agg, 32, 8000, 500)
    assert 0 < short["prefill_share"] < long["prefill_share"] < 1  # longer prompts: more time prefilling
    t = throughput_of_plan_estimate(long)
    assert t.input_tok_s == pytest.approx(t.output_tok_s * 16)


def test_estimate_cli_reports_cost():
    args = ["estimate", "--deployment", str(EXAMPLES / "vr-nvl72-lpx-afd.yaml"), "--model", "gpt-oss-120b",
            "--batch", "32", "--input", "2000", "--output", "500"]
    r = runner.invoke(app, args + ["--json"])
    assert r.exit_code == 0, r.output
    e = json.loads(r.stdout)["economics"]
    assert {u["name"] for u in e["units"]} == {"vr-nvl72", "lpx"}
    assert "lpx.capex_usd" in e["uncertain_prices"] and e["cost_per_mtok_output_usd"] > 0
    dear = json.loads(runner.invoke(app, args + ["--json", "--set", "lpx.capex_usd=2e7"]).stdout)["economics"]
    assert dear["cost_per_mtok_output_usd"] > e["cost_per_mtok_output_usd"]
    text = runner.invoke(app, args).stdout
    assert "per million output tokens" in text and "prices that are estimates or assumptions: " in text
    static = runner.invoke(app, ["estimate", "--model", "llama-3.1-8b", "--system", "hgx-h100", "--tp", "1",
                                 "--pricing", "cloud", "--json"])
    assert json.loads(static.stdout)["economics"]["cloud_usd_per_hour"] == pytest.approx(49.24)


def test_cost_sensitivity_sweeps_prices():
    rep = sensitivity(load_spec(EXAMPLES / "lpx.yaml"), "gpt-oss-120b", metric="cost_per_mtok_output_usd",
                      batch=8, input_len=1000, output_len=500)
    rows = {r.name: r for r in rep.rows}
    assert {"lpx.capex_usd", "economics.lifetime_years", "economics.usd_per_kwh", "economics.pue"} <= set(rows)
    life = rows["economics.lifetime_years"]
    assert life.metric_low > rep.baseline > life.metric_high  # a longer life spreads capex thinner
    plain = sensitivity(load_spec(EXAMPLES / "lpx.yaml"), "gpt-oss-120b", metric="tok_s_per_user",
                        batch=8, input_len=1000, output_len=500)
    assert not any(r.name.startswith("economics.") or r.name.endswith("capex_usd") for r in plain.rows)


@pytest.mark.parametrize("setting", ["economics.pue=-1", "economics.usd_per_kwh=0", "economics.lifetime_years=nan",
                                     "economics.nonsense=1", "economics.gold.usd_per_mtok_output=1",
                                     "lpx.capex_usd=0", "lpx.capex_usd=-5e6", "lpx.capex_usd=inf"])
def test_bad_prices_fail_cleanly(setting):
    line = assert_fails_cleanly(runner.invoke(app, ["estimate", "--deployment", str(EXAMPLES / "lpx.yaml"),
                                                    "--model", "gpt-oss-120b", "--set", setting]))
    assert setting.split("=")[0].split(".")[-1] in line or "economics" in line


def test_bad_pricing_fails_cleanly():
    assert_fails_cleanly(runner.invoke(app, ["estimate", "--model", "llama-3.1-8b", "--system", "hgx-h100",
                                             "--pricing", "rent"]))
