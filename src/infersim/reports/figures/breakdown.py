"""Where each chip kind's time goes, per mode: the decode step of each mode's best configuration
in the headline band (tok/s per MW), split by estimate_plan's `time_shares` (the step timer's
shares per chip kind: compute, memory, interconnect, host overhead, waiting on the GPU<->LPU link,
idle; the link's own busy share)."""
from __future__ import annotations

from infersim.reports.data import ReportData
from infersim.reports.figures._common import ANALYTICAL_FIGURE, band_of_report, estimate_of, family_bests, no_band_point
from infersim.reports.spec import Axis, FigureSpec, Series

# (chip kind, activity) -> legend label; activities not listed use their own name
LABELS = {"overhead": "host overhead", "link": "waiting on the GPU<->LPU link", "busy": "link busy"}
ORDER = ("compute", "memory", "interconnect", "overhead", "link", "idle", "busy")


def time_breakdown(data: ReportData) -> FigureSpec:
    band = band_of_report(data)
    fig = FigureSpec(
        "time-breakdown", f"Where each chip kind's decode step goes, per mode ({band} tok/s/user band)",
        caption=(f"One decode step of each mode's best configuration (tok/s per MW) in the {band} tok/s/user band, "
                 "split into the share of the step each chip kind spends computing, moving memory, on its "
                 "interconnect, on host overhead, waiting on the GPU<->LPU link, or idle. "
                 f"{data.model}, {data.workload}. {ANALYTICAL_FIGURE}"),
        x=Axis("share of the decode step", "%"), y=Axis("mode: chip kind", categorical=True),
        inputs=["estimate_plan's step timer per configuration: catalog peaks and bandwidths, the calibration fit "
                "(compute and memory efficiency, host overhead)"],
        assumptions=["shares are exclusive: the timer charges overlapped work to the part that binds (a roofline), "
                     "so a memory-bound step shows near-zero compute",
                     "efficiencies are fitted on GPUs with measurements; LPU and wafer figures use derived or "
                     "assumed efficiencies (see `infersim sensitivity`)"],
        barmode="stack")
    best: dict[str, object] = {}
    tok_mw = lambda p: p.tok_s_per_mw or 0.0  # noqa: E731
    for p in family_bests(data).values():
        mode = p.body["deployment"]["mode"]
        if mode not in best or tok_mw(p) > tok_mw(best[mode]):
            best[mode] = p
    if not best:
        fig.empty_reason = no_band_point(data, "time breakdown")
        return fig
    rows: list[tuple[str, str, dict]] = []
    for mode, p in best.items():
        for kind, shares in estimate_of(data, p)["time_shares"].items():
            rows.append((f"{mode}: {kind}", kind, _with_idle(shares)))
        fig.notes.append(f"{mode}: {p.deployment} at batch {p.batch} ({p.tok_s_per_user:.0f} tok/s/user)")
    activities = [a for a in ORDER if any(a in s for _, _, s in rows)]
    activities += sorted({a for _, _, s in rows for a in s} - set(activities))
    for act in activities:
        ys = [label for label, _, s in rows if act in s]
        xs = [100.0 * s[act] for _, _, s in rows if act in s]
        hv = [f"{label}<br>{LABELS.get(act, act)}: {x:.1f}% of the step" for label, x in zip(ys, xs)]
        fig.series.append(Series(LABELS.get(act, act), xs, ys, "bar", hv, orientation="h", group=f"activity {act}"))
    return fig


def _with_idle(shares: dict) -> dict:
    """`shares` with the rest of the step as idle where the timer lists only busy parts (a link whose
    only share is `busy`: token ids crossing it take microseconds of a millisecond step, and a row
    of 0.1% alone reads as a missing bar)."""
    rest = 1.0 - sum(shares.values())
    if "idle" in shares or rest <= 1e-9:
        return shares
    return {**shares, "idle": rest}
