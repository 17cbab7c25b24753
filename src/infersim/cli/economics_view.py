"""The cost lines of `infersim estimate` (and its --json `economics` entry): a thin layer over
`infersim.economics.plan_economics`."""
from __future__ import annotations

from typing import Optional

from infersim.cli.common import fmt_g as _g, prices_from_options
from infersim.economics import PRICINGS, Economics, Throughput, plan_economics
from infersim.errors import InputError

PRICING_HELP = ("how hardware is paid for: capex (bought: price amortised over economics.lifetime_years, plus power "
                "x PUE x electricity price) or cloud (rented by the hour)")


def check_pricing(pricing: str) -> None:
    if pricing not in PRICINGS:
        raise InputError(f"unknown --pricing '{pricing}'; choose one of {', '.join(PRICINGS)}")


def economics_of(plan, throughput: Throughput, catalog, set_, pricing: str) -> tuple[Optional[Economics], Optional[str]]:
    """(economics, None), or (None, why) when a price is missing: the estimate still stands without it.
    A bad override or a bad price is an error (raised)."""
    prices = prices_from_options(set_)
    try:
        return plan_economics(plan, throughput, catalog, prices, pricing), None
    except InputError as e:
        if str(e).startswith("no "):  # a missing price: report it, keep the estimate
            return None, str(e)
        raise


def add_json(d: dict, econ: Optional[Economics], why: Optional[str]) -> dict:
    d["economics"] = None if econ is None else econ.to_dict()
    if why is not None:
        d["economics_missing"] = why
    return d


def _usd(x: float) -> str:
    sign, x = ("-" if x < 0 else ""), abs(x)
    if x >= 1e6:
        return f"{sign}${x / 1e6:,.3g}M"
    return f"{sign}${x:,.3g}" if x < 1000 else f"{sign}${x:,.0f}"


def print_economics(econ: Optional[Economics], why: Optional[str], say) -> None:
    """Cost lines: how the hourly cost is made, cost per million tokens, per MW and per USD, each
    tier's revenue, payback and ROI, and the prices that are estimates or assumptions."""
    if econ is None:
        say(f"cost: not priced: {why}")
        return
    e, t = econ, econ.throughput
    used = {p.name.split(".", 1)[-1]: p.value for p in e.prices if p.name.startswith("economics.")}
    power = (f"{e.facility_power_w / 1e3:,.0f} kW at the facility ({e.draw_power_w / 1e3:,.0f} kW drawn of "
             f"{e.rated_power_w / 1e3:,.0f} kW rated, x PUE {used['pue']:g})")
    if e.pricing == "capex":
        say(f"cost (capex): {_usd(e.capex_usd)} amortised over {used['lifetime_years']:g} years = "
            f"{_usd(e.capex_usd_per_hour)}/h + power {power} at ${used['usd_per_kwh']:g}/kWh = "
            f"{_usd(e.energy_usd_per_hour)}/h; total {_usd(e.cost_usd_per_hour)}/h")
    else:
        say(f"cost (cloud): rent {_usd(e.cloud_usd_per_hour)}/h (power included; {power})")
    cin = "—" if e.cost_per_mtok_input_usd is None else _usd(e.cost_per_mtok_input_usd)
    per_mw = "—" if e.output_tok_s_per_facility_mw is None else _g(e.output_tok_s_per_facility_mw)
    split = (f"{cin} per million input tokens (prefill takes {t.prefill_share:.1%} of the hardware, charged to input)"
             if e.cost_per_mtok_input_usd is not None else "input tokens not charged separately (see the note)")
    say(f"  {_usd(e.cost_per_mtok_output_usd)} per million output tokens, {split}; {per_mw} output tok/s per facility "
        f"MW; {_g(e.output_tok_per_usd)} output tokens per $")
    for r in e.tiers:
        pay = "never" if r.payback_years is None else f"{r.payback_years:.3g} years"
        roi = (f"ROI over the lifetime {r.roi:+.0%}" if e.pricing == "capex" else f"margin on the rent {r.roi:+.0%}")
        say(f"  tier {r.tier} ({_usd(r.usd_per_mtok_input)} in / {_usd(r.usd_per_mtok_output)} out per Mtok, every token "
            f"sold): revenue {_usd(r.revenue_usd_per_hour)}/h, margin over running cost {_usd(r.margin_usd_per_hour)}/h"
            + (f", payback {pay}" if e.pricing == "capex" else "") + f", {roi}")
    for n in e.notes:
        say(f"  note: {n}")
    guesses = [f"{p.name} {p.value:,.4g} ({p.basis})" for p in e.uncertain_prices]
    guesses += [f"economics.{r.tier} token prices ({r.prices[0].basis})" for r in e.tiers
                if any(p.uncertain for p in r.prices)]
    say("prices that are estimates or assumptions: " + (", ".join(guesses) or "none")
        + " (sources and ranges: --json; override with --set NAME.FIELD=VALUE; opex counts power only)")
