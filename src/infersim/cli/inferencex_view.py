"""`validate`'s InferenceX section: the per-point table, skip counts by reason, error groups by
interactivity band, feature and hardware, and the verdict against the target; and the JSON that
joins both validation sets (every row, skip and group carries `set`)."""
from __future__ import annotations

from rich.table import Table

from infersim.cli.common import fmt_g
from infersim.validation.inferencex_report import METRICS, TARGET_ABS_ERR, InferenceXReport

MEASUREMENTS_SET = "measurements"
SHORT = {"output_tok_s_per_chip": "out tok/s/GPU", "tok_s_per_user": "tok/s/user", "ttft_ms": "TTFT ms"}


def combined_json(measurements: dict | None, inferencex: InferenceXReport | None, calibration: str) -> dict:
    """One JSON document: the measurement report's fields unchanged apart from a `set` key on
    each row, skip and group, then the InferenceX rows, skips and groups, and its summary."""
    doc = {"calibration": measurements["calibration"] if measurements else calibration,
           "rows": [], "skipped": [], "groups": []}
    if measurements:
        doc["parameters"] = measurements.get("parameters", {})  # the rows each fitted parameter rests on
        for part in ("rows", "skipped", "groups"):
            doc[part] = [{**x, "set": MEASUREMENTS_SET} for x in measurements[part]]
    if inferencex is not None:
        ix = inferencex.to_dict()
        for part in ("rows", "skipped", "groups"):
            doc[part] += ix.pop(part)
        doc["inferencex"] = ix
    return doc


def _err(x: float | None) -> str:
    return "—" if x is None else f"{x:+.0%}"


def print_inferencex(rep: InferenceXReport, out) -> None:
    by_point: dict[str, dict] = {}
    for r in rep.rows:
        by_point.setdefault(r.id, {"r": r})[r.metric] = r
    t = Table(title=f"InferenceX points: predicted vs measured ({len(by_point)} of {rep.points} points; the "
                    "benchmark client simulated, closed loop)")
    for c in ("id", "hw", "framework", "prec", "isl/osl", "conc", "features",
              *(f"{SHORT[m]} meas / pred / err" for m in METRICS)):
        t.add_column(c)
    for pid, d in by_point.items():
        r = d["r"]
        cells = [f"{fmt_g(d[m].measured)} / {fmt_g(d[m].predicted)} / {_err(d[m].error)}" if m in d else "—"
                 for m in METRICS]
        t.add_row(pid, r.hardware, r.framework, r.precision, f"{r.isl}/{r.osl}", str(r.concurrency),
                  ",".join(f for f in r.features if f != "aggregated"), *cells)
    out.print(t)
    if rep.skipped:
        out.print(f"[bold]InferenceX: skipped {len(rep.skipped)} points[/] (ids and reasons in --json), by reason:")
        for reason, n in rep.skipped_by_reason().items():
            out.print(f"  {n:4d}  {reason}", markup=False, highlight=False)
    g = Table(title="InferenceX: median |error| (mean |error|, rows) by measured interactivity band (tok/s/user), "
                    "feature and hardware; simulated in-sample, then in closed form: in-sample / held out by "
                    "configuration (points the fit used)")
    g.add_column("by")
    g.add_column("group")
    for m in METRICS:
        g.add_column(SHORT[m])
    cells: dict[tuple[str, str], dict[str, str]] = {}
    for x in rep.groups():
        cf, ho = x["closed_form_median_abs_err"], x["heldout_closed_form_median_abs_err"]
        closed = "" if ho is None else f"; cf {cf:.1%} / held out {ho:.1%} ({x['heldout_closed_form_n']})"
        cells.setdefault((x["by"], x["group"]), {})[x["metric"]] = \
            f"{x['median_abs_err']:.1%} ({x['mean_abs_err']:.0%}, {x['n']}){closed}"
    for (by, group), c in cells.items():
        g.add_row(by, group, *(c.get(m, "—") for m in METRICS))
    out.print(g)
    overall = {x["metric"]: x for x in rep.groups() if x["by"] == "metric"}
    for m in METRICS:
        x = overall.get(m)
        if x is None:
            continue
        verdict = "meets" if x["median_abs_err"] <= x["target"] else "FAR FROM" if x["median_abs_err"] > 2 * x[
            "target"] else "MISSES"
        ho = x["heldout_closed_form_median_abs_err"]
        held = ("" if ho is None else f"; held out by configuration (closed form, the {x['heldout_closed_form_n']} "
                f"points the fit used) {ho:.1%} ({'meets' if ho <= x['target'] else 'MISSES'} the target)")
        out.print(f"summary inferencex {SHORT[m]:13s}: {x['n']:3d} points, median |error| {x['median_abs_err']:.1%} "
                  f"simulated in-sample ({verdict} the {x['target']:.0%} target){held}")
    if any(x["median_abs_err"] > x["target"] for x in overall.values()):
        out.print(f"note: the InferenceX predictions miss the {TARGET_ABS_ERR:.0%} target. The fit uses every point "
                  "that maps, in closed form (validation/inferencex_fit.py); TTFT is predicted, never fitted")
    out.print(f"InferenceX: {len(by_point)} of {rep.points} points predicted, {len(rep.skipped)} skipped; "
              f"source {rep.source}", markup=False, highlight=False)
