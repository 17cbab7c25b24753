"""What a report is drawn from: the rows of one results DuckDB file (`infersim frontier --out`,
`infersim sweep`; schema in sweep/store.py), opened read-only, for one model and one workload.

Rows become `planner.frontier.Point`s so the report's Pareto fronts and per-band verdicts are
planner.pareto's and planner.verdict's, not a second implementation. A row's family is its
deployment label before the grid brackets (`gpu-vr-nvl72[tp=8,...]` -> `gpu-vr-nvl72`), the name
`frontier` gives its families; AFD+MTP rows, labelled per ratio (`afd-mtp-2lpx-per-nvl72`), are
the one `afd-mtp` family as in frontier. A sweep's own deployment names are their own families.

A workload whose rows include trace replays (`frontier --trace`: sweep `frontier-simulated`, one
row per confirmed frontier point) is reported as frontier reports it: `points()` are the confirmed
(simulated) points only, the fronts and verdicts theirs; the analytical screen's rows stay
available (`screen_points()`, `screen_rows`) for figures that draw them faintly or need the screen
(the LPX ratio sweep).
"""
from __future__ import annotations

import json
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from infersim.errors import InputError, shown

OPTION = "RESULTS"  # how error messages name the results file argument


def family_of(deployment: str) -> str:
    """The family of a deployment label (see the module docstring)."""
    name = deployment.split("[", 1)[0]
    return "afd-mtp" if name.startswith("afd-mtp-") else name


@dataclass
class ReportData:
    """One model's and one workload's rows of a results file. `rows`: every row of that model and
    workload (dicts keyed by the results columns, `config` parsed into `body`, plus `family`);
    `ok`: those with status ok; `others`: how many rows of other models / workloads the file holds
    (left out of this report)."""
    path: Path
    model: str
    input_len: int
    output_len: int
    trace: Optional[str]
    rows: list[dict]
    code_versions: list[str]
    others: int = 0
    options: dict = field(default_factory=dict)  # report choices (band: the headline band)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> list[dict]:
        return [r for r in self.rows if r["status"] == "ok"]

    @property
    def simulated(self) -> bool:
        """True when the workload's rows include confirmed (trace-simulated) frontier points."""
        return any(_is_replay(r) for r in self.ok)

    @property
    def screen_rows(self) -> list[dict]:
        """The ok rows of analytical evaluations (every ok row but the trace replays)."""
        return [r for r in self.ok if not _is_replay(r)]

    @property
    def families(self) -> list[str]:
        """Families in the order they first appear in the file (frontier's fixed order)."""
        return list(dict.fromkeys(r["family"] for r in self.rows))

    @property
    def workload(self) -> str:
        lengths = f"{self.input_len} input / {self.output_len} output tokens per request"
        return f"trace {self.trace} (mean lengths: {lengths})" if self.trace else lengths

    def points(self):
        """The points the report's fronts and verdicts are drawn from, as planner.frontier.Points
        (pareto / verdict input), cached: the confirmed (trace-simulated) ones when the workload
        has any, as `frontier --trace` decides; else every ok row."""
        if "points" not in self._cache:
            rows = [r for r in self.ok if _is_replay(r)] if self.simulated else self.ok
            self._cache["points"] = _points(rows)
        return self._cache["points"]

    def screen_points(self):
        """The analytical screen's points when `points()` are the simulated ones, else [] (the
        analytical points are `points()` themselves)."""
        if "screen_points" not in self._cache:
            self._cache["screen_points"] = _points(self.screen_rows) if self.simulated else []
        return self._cache["screen_points"]

    def row_of(self, point) -> dict:
        """The results row a Point came from."""
        for r in self.ok:
            if r["config_id"] == point.config_id:
                return r
        raise KeyError(point.deployment)

    def dropped(self) -> Counter:
        """Rows that do not run, per family."""
        return Counter(r["family"] for r in self.rows if r["status"] != "ok")


def _is_replay(row: dict) -> bool:
    from infersim.planner.frontier import CONFIRM_SWEEP_NAME
    return row["sweep"] == CONFIRM_SWEEP_NAME


def _points(rows: list[dict]) -> list:
    """planner.frontier.Points of results rows (those with a finite tok/s per user); a replay's
    TTFT is its simulated p50, an analytical row's one prompt's prefill."""
    from infersim.planner.frontier import Point
    from infersim.planner.confirm import EVALUATION
    return [Point(r["family"], r["deployment"], r["batch"], r["tok_s_per_user"], r["output_tok_s"],
                  _finite(r["tok_s_per_mw"]), _finite(r["cost_per_mtok_output_usd"]), r["body"],
                  config_id=r["config_id"], ttft_s=_finite(r["ttft_s"]),
                  evaluation=EVALUATION if _is_replay(r) else "analytical")
            for r in rows if _finite(r["tok_s_per_user"]) is not None]


def _finite(v) -> Optional[float]:
    return float(v) if v is not None and math.isfinite(float(v)) else None


def load_report_data(path: str | Path, model: Optional[str] = None,
                     lengths: Optional[tuple[int, int]] = None) -> ReportData:
    """Read `path` (read-only) and pick the model (`model`, needed when the file holds several) and
    its workload: the one of `lengths` (input, output tokens) when given, else the one with the
    most rows. Bad files are an InputError (sweep.store.check_results_file)."""
    path = Path(path)
    return select_report_data(path, read_results(path), model, lengths=lengths)


def read_results(path: str | Path) -> list[dict]:
    """Every row of the results file at `path` (read-only), checked as load_report_data says; the
    dashboard reads a file once and selects from it (select_report_data)."""
    from infersim.sweep.store import META, TABLE, check_results_file, duckdb_module
    path = Path(path)
    if not check_results_file(path, OPTION):
        raise InputError(f"{OPTION} '{shown(path)}' does not exist; write one with `infersim frontier --out FILE` "
                         "or `infersim sweep`")
    duckdb = duckdb_module()
    con = duckdb.connect(str(path), read_only=True)
    try:
        tables = {t for (t,) in con.execute("select table_name from information_schema.tables").fetchall()}
        if TABLE not in tables or META not in tables:
            raise InputError(f"{OPTION} '{shown(path)}' is an empty DuckDB file, not infersim results; write one "
                             "with `infersim frontier --out FILE`")
        cur = con.execute(f"select * from {TABLE} order by finished_at, config_id")
        names = [d[0] for d in cur.description]
        rows = [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        con.close()
    if not rows:
        raise InputError(f"{OPTION} '{shown(path)}' has no results rows (an empty sweep); run `infersim frontier "
                         "--out FILE` or `infersim sweep` into it first")
    return rows


def select_report_data(path: Path, rows: list[dict], model: Optional[str],
                       workload: Optional[tuple[int, int, Optional[str]]] = None,
                       lengths: Optional[tuple[int, int]] = None) -> ReportData:
    """The ReportData of `model` and `workload` ((input_len, output_len, trace)) among `rows`
    (read_results); without `workload`, the model's workload with the most rows (of those at
    `lengths`, (input, output tokens), when given)."""
    models = list(dict.fromkeys(r["model"] for r in rows))
    if model is None:
        if len(models) > 1:
            raise InputError(f"{OPTION} '{shown(path)}' holds several models ({', '.join(models)}); choose one "
                             "with --model")
        model = models[0]
    elif model not in models:
        raise InputError(f"{OPTION} '{shown(path)}' has no rows of model '{shown(model)}'; it holds "
                         f"{', '.join(models)}")
    mine = [r for r in rows if r["model"] == model]
    workloads = Counter((r["input_len"], r["output_len"], r["trace"]) for r in mine
                        if lengths is None or (r["input_len"], r["output_len"]) == tuple(lengths))
    if workload is not None and tuple(workload) not in workloads:
        raise InputError(f"{OPTION} '{shown(path)}' has no rows of model '{shown(model)}' at workload {workload}")
    if not workloads:
        raise InputError(f"{OPTION} '{shown(path)}' has no rows of {model} at {lengths[0]} in / {lengths[1]} out tokens")
    (inp, out, trace) = tuple(workload) if workload is not None else workloads.most_common(1)[0][0]
    chosen = []
    for r in mine:
        if (r["input_len"], r["output_len"], r["trace"]) == (inp, out, trace):
            chosen.append({**r, "family": family_of(r["deployment"]), "body": json.loads(r["config"])})
    versions = sorted({r["code_version"] for r in chosen if r["code_version"]})
    return ReportData(path, model, inp, out, trace, chosen, versions, others=len(rows) - len(chosen))
