"""The README's path from nothing: the frontier of every family for a model on a trace, written to
a results file (resumed: families already there for this model and workload are not run again;
existing rows are never replaced), ready for the report.

TODO(frontier --trace): `infersim frontier` learns `--trace` (planner/frontier.py); until then the
trace's mean lengths are computed here and passed as input/output lengths, so the stored rows
carry `trace` NULL and the report is told the trace's name."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from infersim.errors import InputError, shown


@dataclass
class FrontierRun:
    lengths: tuple[int, int]   # mean input and output tokens per request of the trace, rounded
    ran: list[str]             # families evaluated now
    kept: list[str]            # families already in the results file
    seconds: float
    message: str


def trace_lengths(trace: str) -> tuple[int, int]:
    """The trace's mean input and output tokens per request, rounded (at least 1)."""
    from infersim.workload.traces import read_trace
    try:
        reqs = read_trace(trace)
    except OSError as e:
        raise InputError(f"--trace '{shown(trace)}': cannot read it ({e.strerror or e}); check the path") from None
    if len(reqs.input_tokens) == 0:
        raise InputError(f"--trace '{shown(trace)}' has no requests")
    return max(1, round(float(reqs.input_tokens.mean()))), max(1, round(float(reqs.output_tokens.mean())))


def _stored_families(results: Path, model: str, lengths: tuple[int, int]) -> set[str]:
    from infersim.reports.data import family_of
    from infersim.sweep.store import TABLE, check_results_file, duckdb_module
    if not check_results_file(results, "RESULTS"):
        return set()
    con = duckdb_module().connect(str(results), read_only=True)
    try:
        tables = {t for (t,) in con.execute("select table_name from information_schema.tables").fetchall()}
        if TABLE not in tables:
            return set()
        rows = con.execute(f"select distinct deployment from {TABLE} where model = ? and input_len = ? and "
                           "output_len = ?", [model, *lengths]).fetchall()
    finally:
        con.close()
    return {family_of(d) for (d,) in rows}


def frontier_into(results: Path, model: str, trace: str) -> FrontierRun:
    from infersim.calibration.efficiency import load_calibration
    from infersim.catalog.hardware import load_catalog
    from infersim.catalog.models import load_model
    from infersim.planner.families import families
    from infersim.planner.frontier import run_frontier
    start = time.perf_counter()
    arch = load_model(model)
    lengths = trace_lengths(trace)
    have = _stored_families(results, arch.name, lengths)
    names = [f.name for f in families(arch, load_catalog(), load_calibration(None)) if not f.skipped]
    todo = [n for n in names if n not in have]
    if todo:
        # sensitivity off: the report's tornado runs deployments.sensitivity on its headline point itself
        run_frontier(arch.name, *lengths, only=todo, out=results, sensitivity=False)
    secs = time.perf_counter() - start
    kept = [n for n in names if n in have]
    msg = (f"frontier: {arch.name} at {trace}'s mean lengths ({lengths[0]} in / {lengths[1]} out tokens): "
           f"{len(todo)} families run" + (f", {len(kept)} already in {results}" if kept else "")
           + f", {secs:.1f} s; results in {results.resolve()}")
    return FrontierRun(lengths, todo, kept, secs, msg)
