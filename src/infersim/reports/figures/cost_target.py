"""Cost per million output tokens against the latency target: for each family, the lowest cost
of any of its configurations that meets a target, as the target tightens. Two targets: a per-user
decode speed (tok/s per user at least T: TPOT at most 1/T) and a time to first token (TTFT at most
T; estimate_plan's prefill of one prompt, no queueing)."""
from __future__ import annotations

from infersim.reports.data import ReportData
from infersim.reports.figures._common import REPLAY_ASSUMPTION, basis_of
from infersim.reports.figures.frontier import ASSUMPTIONS, hover
from infersim.reports.spec import Axis, FigureSpec, Series

Y_AXIS = Axis("lowest cost per million output tokens meeting the target", "USD/Mtok", log=True)


def _staircase(points, value, meets_when_larger: bool):
    """(targets, best cost, the point giving it), by target ascending: at each target (the points'
    own values: the cost only changes there) the cheapest point that meets it."""
    by_target: dict[float, object] = {}
    best = None
    # visit from the tightest target to the loosest: everything visited so far meets the current
    # one (equal targets come together, so the last write at a target has seen all of them)
    for p in sorted(points, key=value, reverse=meets_when_larger):
        if best is None or p.cost_per_mtok_usd < best.cost_per_mtok_usd:
            best = p
        by_target[value(p)] = best
    xs = sorted(by_target)
    return xs, [by_target[x].cost_per_mtok_usd for x in xs], [by_target[x] for x in xs]


def _figure(data: ReportData, key: str, title: str, x: Axis, value, larger: bool, target_text: str,
            extra_assumption: str) -> FigureSpec:
    fig = FigureSpec(
        key, title,
        caption=(f"For each family, the cheapest configuration that meets the target ({target_text}), {data.model}, "
                 f"{data.workload}. A step down is a configuration that is cheaper and still meets the target. "
                 + basis_of(data)),
        x=x, y=Y_AXIS,
        inputs=[f"results file {data.path.name}: cost_per_mtok_output_usd, tok_s_per_user, ttft_s per configuration",
                "economics.yaml prices, catalog specs and the calibration fit behind each estimate"],
        assumptions=[ASSUMPTIONS["cost_per_mtok_usd"][0],
                     REPLAY_ASSUMPTION if data.simulated else extra_assumption])
    for fam in data.families:
        mine = [p for p in data.points() if p.family == fam and p.cost_per_mtok_usd is not None
                and value(p) is not None]
        if not mine:
            continue
        xs, ys, who = _staircase(mine, value, larger)
        # a speed target T is met by points at T or faster: the cost holds left of each target ("pre");
        # a TTFT target T by points at T or quicker: it holds right of each target ("post")
        fig.series.append(Series(fam, xs, ys, "step", [f"target {xv:.3g}: " + hover(p) for xv, p in zip(xs, who)],
                                 group=fam, step_where="pre" if larger else "post"))
    if not fig.series:
        fig.empty_reason = f"no configuration in {data.path.name} that runs has a cost (systems without a price)"
    return fig


def cost_vs_speed_target(data: ReportData) -> FigureSpec:
    return _figure(data, "cost-vs-speed-target", "Cost per Mtok against the per-user speed target",
                   Axis("target: at least this decode speed per user", "tok/s/user", log=True),
                   lambda p: p.tok_s_per_user, True, "tok/s per user at least the target",
                   "steady-state decode speed (estimate_plan); a served trace adds queueing (see the CDFs)")


def cost_vs_ttft_target(data: ReportData) -> FigureSpec:
    what = "TTFT (simulated p50 with queueing)" if data.simulated else "TTFT"
    return _figure(data, "cost-vs-ttft-target", "Cost per Mtok against the time-to-first-token target",
                   Axis("target: time to first token at most", "s", log=True),
                   lambda p: p.ttft_s, False, f"{what} at most the target",
                   "TTFT is one prompt's prefill alone (estimate_plan), no queueing behind other prompts")
