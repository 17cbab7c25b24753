"""The LPX:NVL72 ratio sweep: AFD configurations by LPX racks per NVL72 rack, the best tok/s per
MW at each ratio in each interactivity band. When the results file holds fewer than MIN_RATIOS
ratios, the stored AFD configurations are also evaluated at EXTRA_RATIOS on the spot (sweep's
own estimate_config, the same evaluation as the stored rows), and the caption says so."""
from __future__ import annotations

import copy

from infersim.interactivity import BAND_NAMES, band_of
from infersim.reports.data import ReportData, family_of
from infersim.reports.figures._common import ANALYTICAL_FIGURE
from infersim.reports.spec import Axis, FigureSpec, Series

MIN_RATIOS = 3
EXTRA_RATIOS = (1, 2, 3, 4, 6, 8)


def _afd_rows(data: ReportData) -> list[dict]:
    # the screen's rows: trace replays cover frontier points only, not the ratio grid
    return [r for r in data.screen_rows if r["mode"] == "afd" and r["lpx_per_nvl72"] is not None
            and r["tok_s_per_mw"] is not None]


def _on_demand(data: ReportData, rows: list[dict]) -> list[dict]:
    """Each band's best stored AFD configuration (tok/s per MW) at every EXTRA_RATIOS ratio it
    lacks (its NVL72 racks as stored: a ratio whose LPX share cannot hold the FFN does not run and
    is left out)."""
    from infersim.sweep.evaluate import estimate_config
    have = {(r["deployment"], r["batch"], r["lpx_per_nvl72"]) for r in rows}
    best: dict[str, dict] = {}
    for r in rows:
        band = band_of(r["tok_s_per_user"])
        if band not in best or r["tok_s_per_mw"] > best[band]["tok_s_per_mw"]:
            best[band] = r
    out = []
    for r in best.values():
        for ratio in EXTRA_RATIOS:
            if (r["deployment"], r["batch"], float(ratio)) in have:
                continue
            body = copy.deepcopy(r["body"])
            body["deployment"]["lpu"]["racks_per_gpu_rack"] = ratio
            got = estimate_config(body)
            if got["status"] == "ok" and got["tok_s_per_mw"] is not None:
                out.append({**got, "deployment": f"{r['deployment']} at {ratio} LPX/NVL72", "lpx_per_nvl72": float(ratio),
                            "family": r["family"]})
    return out


def lpx_ratio(data: ReportData) -> FigureSpec:
    rows = _afd_rows(data)
    fig = FigureSpec(
        "lpx-ratio", "AFD: tok/s per MW against LPX racks per NVL72 rack, per interactivity band",
        caption="", x=Axis("LPX racks per NVL72 rack", "ratio"), y=Axis("best output tok/s per MW of rated power",
                                                                         "tok/s/MW", log=True),
        inputs=["AFD rows of the results file (lpx_per_nvl72 = lpu.racks_per_gpu_rack)",
                "estimate_plan per configuration (the AFD step timer: GPU attention, LPU FFN, the link)"],
        assumptions=["power is the racks' rated catalog power_w; LPX rack power is a catalog figure with its source "
                     "(`infersim systems`)", "the GPU<->LPU link's bandwidth and latency are catalog estimates"])
    if not rows:
        fig.empty_reason = (f"{data.path.name} has no AFD rows that run (no `afd` deployment); run `infersim frontier` "
                            "(its afd-*lpx-per-nvl72 families) into it")
        return fig
    ratios = {r["lpx_per_nvl72"] for r in rows}
    extra = _on_demand(data, rows) if len(ratios) < MIN_RATIOS else []
    how = (f"{len(ratios)} ratio(s) stored, so each band's best stored configuration was also evaluated at "
           f"{', '.join(str(x) for x in EXTRA_RATIOS)} LPX per NVL72 for this figure" if extra else
           f"{len(ratios)} ratios from the results file")
    fig.caption = (f"For each interactivity band, the highest tok/s per MW of any AFD configuration at each LPX:NVL72 "
                   f"ratio ({how}). {data.model}, {data.workload}. {ANALYTICAL_FIGURE}"
                   + (" (the analytical screen's AFD rows)" if data.simulated else ""))
    every = rows + extra
    for band in BAND_NAMES:
        best: dict[float, dict] = {}
        for r in every:
            if band_of(r["tok_s_per_user"]) != band:
                continue
            cur = best.get(r["lpx_per_nvl72"])
            if cur is None or r["tok_s_per_mw"] > cur["tok_s_per_mw"]:
                best[r["lpx_per_nvl72"]] = r
        if not best:
            continue
        xs = sorted(best)
        fig.series.append(Series(
            f"{band} tok/s/user", xs, [best[x]["tok_s_per_mw"] for x in xs], "line",
            [f"{best[x].get('deployment')} batch {best[x]['batch']}: {best[x]['tok_s_per_user']:.0f} tok/s/user, "
             f"{best[x]['tok_s_per_mw']:,.0f} tok/s/MW ({family_of(best[x].get('deployment', ''))})" for x in xs],
            group=f"band {band}"))
    same = [a.name for i, a in enumerate(fig.series) for b in fig.series[:i] if a.x == b.x and a.y == b.y]
    if same:
        fig.notes.append("lines drawn on top of one another (the same best tok/s per MW at every ratio, e.g. when "
                         "the prefill pool caps throughput whatever the decode batch): " + ", ".join(sorted(set(same))))
    return fig
