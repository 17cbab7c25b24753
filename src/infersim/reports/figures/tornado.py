"""The sensitivity tornado of the headline figure: the headline point's tok/s per MW (the winner
of the headline band) with each uncertain input it uses swept to the ends of its range, one at a
time (deployments.sensitivity)."""
from __future__ import annotations

from infersim.reports.data import ReportData
from infersim.reports.figures._common import (ANALYTICAL_FIGURE, band_of_report, headline_point, inputs, no_band_point,
                                              spec_of)
from infersim.reports.spec import Axis, FigureSpec, Series

TOP = 12  # inputs shown, by swing


def sensitivity_tornado(data: ReportData) -> FigureSpec:
    from infersim.deployments.sensitivity import sensitivity
    band = band_of_report(data)
    p = headline_point(data)
    fig = FigureSpec(
        "sensitivity-tornado", f"What moves the headline: tok/s per MW of the {band} tok/s/user winner",
        caption="", x=Axis("output tok/s per MW of rated power", "tok/s/MW"),
        y=Axis("uncertain input [low .. high]", categorical=True),
        inputs=["deployments.sensitivity: every catalog estimate or assumption with a range the plan uses, and the "
                "calibration's fitted values over their leave-one-group-out range"],
        assumptions=["each input moves alone, the others at their values (no interactions)",
                     "the ranges are the catalog's and the fit's stated ranges (`infersim chips --json`)"],
        barmode="overlay")
    if p is None:
        fig.empty_reason = no_band_point(data, "headline point")
        return fig
    catalog, calibration, arch = inputs(data)
    rep = sensitivity(spec_of(p), arch, metric="tok_s_per_mw", batch=p.batch, input_len=data.input_len,
                      output_len=data.output_len, catalog=catalog, calibration=calibration)
    fig.caption = (f"The headline point, {p.deployment} at batch {p.batch} ({p.family}, the {band} tok/s/user winner "
                   f"on tok/s per MW: {rep.baseline:,.0f} tok/s/MW), with each uncertain input at the low and the high "
                   f"end of its range; the {TOP} largest swings, largest on top. {data.model}, {data.workload}. "
                   + ANALYTICAL_FIGURE + (" The point is the simulated band winner; its baseline and swings here are "
                                          "its analytical estimate's." if data.simulated else ""))
    moving = [r for r in rep.rows
              if (r.metric_low is not None or r.metric_high is not None) and (r.swing is None or r.swing > 0)]
    rows = moving[:TOP][::-1]
    if len(rep.rows) > len(moving):
        fig.notes.append(f"{len(rep.rows) - len(moving)} more uncertain inputs used by the plan do not move it "
                         "(or break it at both ends)")
    broken = [f"{r.name}: {r.low_error or r.high_error}" for r in rep.rows if r.low_error or r.high_error]
    if broken:
        fig.notes.append("at an end of its range the deployment does not run: " + "; ".join(broken[:5]))
    for end, attr, val in (("low end", "metric_low", "low"), ("high end", "metric_high", "high")):
        sel = [r for r in rows if getattr(r, attr) is not None]
        labels = [f"{r.name} [{r.low:.3g}..{r.high:.3g}]" for r in sel]
        fig.series.append(Series(
            f"input at its {end}", [getattr(r, attr) - rep.baseline for r in sel], labels, "bar",
            [f"{r.name} = {getattr(r, val):.4g} ({r.basis}): {getattr(r, attr):,.0f} tok/s/MW<br>{r.source}"
             for r in sel],
            group=f"input at its {end}", orientation="h", base=[rep.baseline] * len(sel)))
    if not rows:
        fig.empty_reason = "the headline point uses no uncertain input with a range"
    return fig
