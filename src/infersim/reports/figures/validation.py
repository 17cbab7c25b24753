"""The validation figures: predicted against measured for every validated row, and the median
|error| by interactivity band (InferenceX points) and by hardware, from the shipped snapshot of
the last full `infersim validate --json` (reports/validation_snapshot.py says why a snapshot and
how to reproduce it). They are about the simulator, not about the results file."""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from infersim.interactivity import BAND_NAMES
from infersim.reports.data import ReportData
from infersim.reports.spec import Axis, FigureSpec, Series

WHY = ("from a snapshot of the last full `{command}` (code {code_version}, {taken_at}; a full run takes minutes, "
       "a report seconds): reproduce it with `{command}`")


def _snapshot():
    from infersim.reports.validation_snapshot import load_snapshot
    return load_snapshot()


def _inputs(snap: dict) -> list[str]:
    return ["the shipped measurement CSV (published benchmarks, calibration/) and the InferenceX serving points",
            f"calibration: {snap.get('calibration')}", WHY.format(**snap)]


ASSUMPTIONS = ["each row's unpublished serving settings (engine, layout, concurrency) are the validation's "
               "assumptions, listed per row in `infersim validate --json`",
               "in-sample: the calibration was fitted on these rows (held-out errors: `infersim validate`)"]


def _empty(fig: FigureSpec) -> FigureSpec:
    fig.caption = fig.caption or "How far infersim's predictions are from published measurements."
    fig.inputs = fig.inputs or ["a snapshot of `infersim validate --json` (none shipped here)"]
    fig.empty_reason = ("no validation snapshot is shipped with this installation; run `infersim validate --json > "
                        "v.json` then `python -m infersim.reports.validation_snapshot v.json`")
    return fig


def validation_parity(data: ReportData) -> FigureSpec:
    fig = FigureSpec("validation-parity", "Validation: predicted against measured, per hardware", caption="",
                     x=Axis("measured (each row in its own metric's unit)", log=True),
                     y=Axis("predicted (same unit)", log=True), assumptions=list(ASSUMPTIONS))
    snap = _snapshot()
    if not snap or not snap.get("rows"):
        return _empty(fig)
    rows = [r for r in snap["rows"] if r.get("measured") and r.get("predicted") and r["measured"] > 0
            and r["predicted"] > 0]
    fig.inputs = _inputs(snap)
    errs = np.abs([r["error"] for r in rows])
    fig.caption = (f"Every validated row ({len(rows)}: throughput, TTFT, TPOT, ... each in its own unit), predicted by "
                   f"infersim against the published measurement; on the dashed diagonal a prediction is exact. Median "
                   f"|error| {np.median(errs):.0%}, {np.mean(errs > 0.5):.0%} of rows off by more than 50%. Shown "
                   + WHY.format(**snap) + ".")
    lo = min(min(r["measured"], r["predicted"]) for r in rows)
    hi = max(max(r["measured"], r["predicted"]) for r in rows)
    fig.series.append(Series("exact", [lo, hi], [lo, hi], "line", dash=True, group="exact"))
    by_hw: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_hw[r["hardware"] or "unknown"].append(r)
    for hw, rs in sorted(by_hw.items()):
        fig.series.append(Series(hw, [r["measured"] for r in rs], [r["predicted"] for r in rs], "scatter",
                                 [f"{r['id']} ({r['set']}): {r['metric']} measured {r['measured']:.4g}, predicted "
                                  f"{r['predicted']:.4g}, error {r['error']:+.0%}" for r in rs], group=f"hw {hw}"))
    return fig


def validation_errors(data: ReportData) -> FigureSpec:
    fig = FigureSpec("validation-errors", "Validation: median |error| by interactivity band and by hardware",
                     caption="", x=Axis("group", categorical=True), y=Axis("median |predicted - measured| / measured",
                                                                             "%"), assumptions=list(ASSUMPTIONS))
    snap = _snapshot()
    if not snap or not snap.get("rows"):
        return _empty(fig)
    fig.inputs = _inputs(snap)
    fig.caption = ("How far predictions are from measurements, as the median relative error: by the interactivity "
                   "band of the InferenceX points (their tok/s per user; the measurement CSV has no band) and by "
                   "hardware over every row; hover for the number of rows. Shown " + WHY.format(**snap) + ".")
    bands: dict[str, list[float]] = defaultdict(list)
    hws: dict[str, list[float]] = defaultdict(list)
    for r in snap["rows"]:
        if r.get("error") is None:
            continue
        if r.get("band") in BAND_NAMES:
            bands[r["band"]].append(abs(r["error"]))
        hws[r["hardware"] or "unknown"].append(abs(r["error"]))
    for name, groups, order in (("by interactivity band (InferenceX)", bands, [b for b in BAND_NAMES if b in bands]),
                                ("by hardware (all rows)", hws, sorted(hws))):
        if not order:
            continue
        labels = [f"{g} tok/s/user" if groups is bands else g for g in order]
        ys = [100.0 * float(np.median(groups[g])) for g in order]
        fig.series.append(Series(name, labels, ys, "bar",
                                 [f"{lab}: median |error| {y:.0f}% over {len(groups[g])} rows"
                                  for lab, y, g in zip(labels, ys, order)], group=name))
    poor = [f"{g} ({100 * float(np.median(v)):.0f}%)" for g, v in {**bands, **hws}.items() if np.median(v) > 0.25]
    if poor:
        fig.notes.append("groups whose median error exceeds 25% (poor predictions there): " + ", ".join(poor))
    return fig
