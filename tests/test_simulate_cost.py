"""Cost lines of `infersim simulate` (infersim.economics at the simulated throughput and
utilisation): conservation of the hourly cost, the effect of a price, systems without a price, and
bad input."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cli_checks import assert_fails_cleanly
from infersim.cli.main import app

runner = CliRunner()
RUN = ["simulate", "--model", "llama-3.1-8b", "--tp", "1", "--concurrency", "8", "--input-len", "500",
       "--output-len", "100", "--requests", "40", "--quiet"]
AGG = [*RUN, "--system", "h100-sxm", "--replicas", "2"]
PD = [*RUN, "--system", "h100-sxm", "--prefill-replicas", "1", "--decode-replicas", "2"]


def _json(args):
    r = runner.invoke(app, [*args, "--json"])
    assert r.exit_code == 0, (r.stdout, r.stderr)
    return json.loads(r.stdout)


def _per_hour(usd_per_mtok, tok_s):
    return usd_per_mtok * tok_s * 3600 / 1e6


@pytest.mark.parametrize("pricing", ["capex", "cloud"])
def test_aggregated_cost_per_token_times_tokens_is_the_hourly_cost(pricing):
    s = _json([*AGG, "--pricing", pricing])
    e = s["economics"]
    assert e["pricing"] == pricing and e["throughput"]["output_tok_s"] == pytest.approx(s["output_tok_s"])
    # aggregated: the simulator cannot split a replica's time, so output tokens carry the whole hour
    assert e["cost_per_mtok_input_usd"] is None and any("all the hardware" in n for n in e["notes"])
    assert _per_hour(e["cost_per_mtok_output_usd"], s["output_tok_s"]) == pytest.approx(e["cost_usd_per_hour"])
    assert e["draw_power_w"] <= e["rated_power_w"] and e["facility_power_w"] >= e["draw_power_w"]


def test_disaggregated_input_and_output_shares_add_up_to_the_hourly_cost():
    s = _json(PD)
    e = s["economics"]
    assert e["cost_per_mtok_input_usd"] is not None and 0 < e["throughput"]["prefill_share"] < 1
    total = _per_hour(e["cost_per_mtok_output_usd"], s["output_tok_s"]) + _per_hour(e["cost_per_mtok_input_usd"],
                                                                                     s["input_tok_s"])
    assert total == pytest.approx(e["cost_usd_per_hour"])


def test_doubling_a_capex_raises_the_cost_and_leaves_the_simulation_alone():
    base = _json(AGG)
    dear = _json([*AGG, "--set", "h100-sxm.capex_usd=55000"])
    assert dear["output_tok_s"] == base["output_tok_s"]
    assert dear["economics"]["cost_per_mtok_output_usd"] > base["economics"]["cost_per_mtok_output_usd"]
    assert dear["economics"]["cost_usd_per_hour"] > base["economics"]["cost_usd_per_hour"]


def test_text_shows_the_cost_lines():
    r = runner.invoke(app, AGG)
    assert r.exit_code == 0, r.stderr
    assert "per million output tokens" in r.stdout and "per facility MW" in r.stdout and "/h" in r.stdout


def test_a_system_without_a_price_is_not_priced_and_names_the_fix():
    args = [*RUN, "--system", "mi300x", "--replicas", "2"]   # mi300x: a cloud price, no capex in the catalog
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.stderr
    assert "not priced" in r.stdout and "--set mi300x.capex_usd=" in r.stdout
    s = _json(args)
    assert s["economics"] is None and "--set mi300x.capex_usd=" in s["economics_missing"]
    assert _json([*args, "--pricing", "cloud"])["economics"]["pricing"] == "cloud"


def test_bad_pricing_is_one_line_exit_2():
    line = assert_fails_cleanly(runner.invoke(app, [*AGG, "--pricing", "lease"]))
    assert "--pricing" in line
