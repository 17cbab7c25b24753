"""The throughput-against-interactivity frontier per family: tok/s per MW and cost per million
output tokens against tok/s per user, each family's Pareto points (planner.pareto, as `frontier`
computes them) and the per-band verdicts (planner.verdict.decide) in a table. With trace replays
in the file the fronts and verdicts are the confirmed (simulated) points', as `frontier --trace`
decides them, and the analytical screen's points are drawn faintly in their own legend group."""
from __future__ import annotations

from infersim.interactivity import BANDS, BAND_NAMES
from infersim.planner.pareto import pareto_front
from infersim.planner.verdict import OBJECTIVES, decide
from infersim.reports.data import ReportData
from infersim.reports.figures._common import REPLAY_ASSUMPTION, basis_of
from infersim.reports.spec import Annotation, Axis, FigureSpec, Series, Table
from infersim.reports.style import SCREEN_GROUP

X_AXIS = Axis("decode speed per user", "tok/s/user", log=True)
# objective (planner.verdict.OBJECTIVES key) -> (figure key, y axis, higher is better, results column)
PANELS = {
    "tok_s_per_mw": ("frontier-mw", Axis("output throughput per MW of rated power", "tok/s/MW", log=True), "max"),
    "cost_per_mtok_usd": ("frontier-cost", Axis("cost per million output tokens", "USD/Mtok", log=True), "min"),
}
ASSUMPTIONS = {
    "tok_s_per_mw": ["power is the systems' rated catalog power_w (no PUE, no utilisation-dependent draw); "
                     "several chips' power figures are estimates (`infersim chips`)",
                     "steady state: every decode replica runs its batch full (estimate_plan), no queueing"],
    "cost_per_mtok_usd": ["hardware bought at the catalog's list prices (estimates for unreleased systems), "
                          "amortised over the economics.yaml lifetime, plus power at its electricity price",
                          "steady state: every decode replica runs its batch full (estimate_plan), no queueing"],
}


def assumptions_of(data: ReportData, objective: str) -> list[str]:
    """The objective's assumptions for the report's evaluation (steady state, or the replays)."""
    first, steady = ASSUMPTIONS[objective]
    return [first, REPLAY_ASSUMPTION if data.simulated else steady]


def hover(p) -> str:
    mw = f"{p.tok_s_per_mw:,.0f} tok/s/MW" if p.tok_s_per_mw is not None else "tok/s/MW n/a"
    cost = f"${p.cost_per_mtok_usd:.3g}/Mtok" if p.cost_per_mtok_usd is not None else "cost n/a (no price)"
    how = "" if p.evaluation == "analytical" else " (simulated)"
    return f"{p.deployment}<br>batch {p.batch}{how}: {p.tok_s_per_user:.1f} tok/s/user, {mw}, {cost}"


def verdict_table(points, objective: str) -> Table:
    """One row per band: the winner, its margin over the runner-up, and the two best points."""
    rows = []
    for band in BAND_NAMES:
        v = decide(points, band, objective)
        if v.winner is None:
            rows.append([band, "no point in this band", "", "", ""])
            continue
        margin = f"{v.margin:.2f}x" if v.margin is not None else "(only family)"
        rows.append([band, v.winner, margin, v.runner_up or "", v.winner_point.deployment])
    return Table(["band (tok/s/user)", "winner", "margin over runner-up", "runner-up", "winning deployment"], rows)


def frontier_figure(data: ReportData, objective: str) -> FigureSpec:
    key, y_axis, sense = PANELS[objective]
    attr, _, label = OBJECTIVES[objective]
    points = data.points()
    title = f"{label} against tok/s per user, per family"
    fig = FigureSpec(
        key, title,
        caption=(f"Each family's Pareto frontier (line: no other point of the family is both faster per user and "
                 f"better on {label}) over every configuration that runs (dots), {data.model}, {data.workload}. "
                 "The table gives each interactivity band's winner and its margin over the runner-up. "
                 + basis_of(data)),
        x=X_AXIS, y=y_axis,
        inputs=[f"results file {data.path.name}: {len(data.ok)} configurations that run of {len(data.rows)}"
                + (f" ({len(points)} of them trace replays)" if data.simulated else ""),
                "estimate_plan per configuration (catalog specs, calibration fit)", "economics.yaml prices"]
        + (["serving simulator (deployments.run.simulate_plan) per replayed point"] if data.simulated else []),
        assumptions=assumptions_of(data, objective),
        table=verdict_table(points, objective))
    screen = [p for p in data.screen_points() if getattr(p, attr) is not None]
    if screen:
        # first, so the families' fronts are drawn over it
        fig.series.append(Series(f"{SCREEN_GROUP} (all families)", [p.tok_s_per_user for p in screen],
                                 [getattr(p, attr) for p in screen], "scatter",
                                 [f"analytical screen, {p.family}: " + hover(p) for p in screen], group=SCREEN_GROUP))
    for fam in data.families:
        mine = [p for p in points if p.family == fam and getattr(p, attr) is not None]
        if not mine:
            continue
        front = sorted(pareto_front(mine, [(lambda p: p.tok_s_per_user, "max"), (lambda p: getattr(p, attr), sense)]),
                       key=lambda p: p.tok_s_per_user)
        # the front first: the legend entry of a family (one per group) is its frontier
        fig.series.append(Series(fam, [p.tok_s_per_user for p in front], [getattr(p, attr) for p in front], "line",
                                 [hover(p) for p in front], group=fam))
        fig.series.append(Series(f"{fam} (all)", [p.tok_s_per_user for p in mine], [getattr(p, attr) for p in mine],
                                 "scatter", [hover(p) for p in mine], group=fam))
    ys = [y for s in fig.series for y in s.y]
    if ys:
        for name, low in BANDS[1:]:
            fig.annotations.append(Annotation(low, min(ys), f"{name} tok/s/user ->"))
    without = [f for f in data.families if not any(p.family == f and getattr(p, attr) is not None for p in points)
               and any(p.family == f for p in points)]
    if without:
        fig.notes.append(f"families that run but have no {label} figure (a system without a price or power figure), "
                         "so are not drawn: " + ", ".join(without))
    dropped = data.dropped()
    if dropped:
        fig.notes.append("configurations that do not run (left out): "
                         + ", ".join(f"{f} {n}" for f, n in dropped.items()))
    if not fig.series:
        fig.empty_reason = f"no configuration in {data.path.name} that runs has a {label} figure"
    return fig


def frontier_mw(data: ReportData) -> FigureSpec:
    return frontier_figure(data, "tok_s_per_mw")


def frontier_cost(data: ReportData) -> FigureSpec:
    return frontier_figure(data, "cost_per_mtok_usd")
