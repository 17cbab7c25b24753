"""ROI and payback at the token-price tiers: each family's cheapest configuration in the headline
band, its hardware bought at the catalog's prices (infersim.economics.plan_economics, capex
pricing, as the results' cost columns), selling its tokens at each tier's prices."""
from __future__ import annotations

from infersim.reports.data import ReportData
from infersim.reports.figures._common import (band_of_report, basis_of, family_bests, inputs, no_band_point, plan_of,
                                              throughput_of_point)
from infersim.reports.spec import Axis, FigureSpec, Series


def roi_payback(data: ReportData) -> FigureSpec:
    from infersim.economics import load_prices, plan_economics
    band = band_of_report(data)
    fig = FigureSpec(
        "roi-payback", f"Payback at the token-price tiers, cheapest point per family in the {band} tok/s/user band",
        caption=(f"Years for each family's cheapest configuration in the {band} tok/s/user band to pay back its "
                 "hardware from its margin (revenue at the tier's prices minus power), running flat out; hover for "
                 f"ROI over the hardware's lifetime. {data.model}, {data.workload}. A missing bar never pays back "
                 "(margin at or below zero). " + basis_of(data)),
        x=Axis("family", categorical=True), y=Axis("payback", "years", log=True),
        inputs=["economics.yaml: token price tiers, lifetime, PUE, electricity price, idle draw",
                "catalog capex per system", ("each point's simulated output tok/s (input tokens at the workload's "
                                             "mean ratio), utilisation 1" if data.simulated else
                                             "estimate_plan throughput of each point (utilisation 1)")],
        assumptions=["token prices of both tiers are assumptions (a listed price of another model, or no published "
                     "price at all for the premium tier): see economics.yaml's sources and ranges",
                     "utilisation 1: every replica busy all the time (an upper bound on revenue)",
                     "opex is power only: no staff, network, floor space or financing (payback is a lower bound)"])
    bests = family_bests(data, "cost_per_mtok_usd")
    if not bests:
        fig.empty_reason = no_band_point(data, "cost comparison")
        return fig
    catalog = inputs(data)[0]
    prices = load_prices()
    per_tier: dict[str, tuple[list, list, list]] = {}
    never = []
    for fam, p in bests.items():
        e = plan_economics(plan_of(data, p), throughput_of_point(data, p), catalog, prices, "capex")
        for t in e.tiers:
            xs, ys, hv = per_tier.setdefault(t.tier, ([], [], []))
            if t.payback_years is None:
                never.append(f"{fam} at the {t.tier} tier")
                continue
            xs.append(fam)
            ys.append(t.payback_years)
            hv.append(f"{p.deployment}, batch {p.batch}<br>{t.tier}: payback {t.payback_years:.2g} years, ROI over "
                      f"the lifetime {t.roi:.1f}x, margin ${t.margin_usd_per_hour:,.0f}/h, cost "
                      f"${e.cost_per_mtok_output_usd:.3g}/Mtok output at utilisation 1")
    for tier, (xs, ys, hv) in per_tier.items():
        fig.series.append(Series(f"{tier} tier", xs, ys, "bar", hv, group=f"tier {tier}"))
    if never:
        fig.notes.append("never pays back (margin <= 0): " + "; ".join(never))
    return fig
