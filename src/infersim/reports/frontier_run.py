"""The README's path from nothing: the frontier of every family for a model on a trace
(planner.frontier.run_frontier with the trace: screened at its mean lengths, each family's Pareto
points confirmed by replaying the trace), written to a results file (resumed: families already
there for this model and trace are not run again; existing rows are never replaced), ready for
the report."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from infersim.planner.confirm import MAX_SIMULATED_PER_FAMILY

JOBS = 2                # replay processes: the README's 2-core machine
MAX_SIMULATED = MAX_SIMULATED_PER_FAMILY  # replays per family, frontier's default (the README's timing)


@dataclass
class FrontierRun:
    model: str                 # the model's catalog name (the rows' `model`)
    trace: object              # planner.confirm.TraceWorkload: the stored name, path and mean lengths
    ran: list[str]             # families evaluated now
    kept: list[str]            # families already in the results file
    seconds: float
    message: str

    @property
    def workload(self) -> tuple[int, int, str]:
        """(input_len, output_len, trace): the results rows' workload columns."""
        return self.trace.input_len, self.trace.output_len, self.trace.name


def _stored_families(results: Path, model: str, trace: str) -> set[str]:
    """Families of `model` with rows of `trace` in `results` that are done: a trace replay stored,
    or no configuration that runs (nothing to replay). A family screened but not replayed (a run
    stopped between the two) is run again; its stored rows are kept as they are."""
    from infersim.planner.frontier import CONFIRM_SWEEP_NAME
    from infersim.reports.data import family_of
    from infersim.sweep.store import TABLE, check_results_file, duckdb_module
    if not check_results_file(results, "RESULTS"):
        return set()
    con = duckdb_module().connect(str(results), read_only=True)
    try:
        tables = {t for (t,) in con.execute("select table_name from information_schema.tables").fetchall()}
        if TABLE not in tables:
            return set()
        rows = con.execute(f"select deployment, sweep, status from {TABLE} where model = ? and trace = ?",
                           [model, trace]).fetchall()
    finally:
        con.close()
    replayed, runs, seen = set(), set(), set()
    for dep, sweep, status in rows:
        fam = family_of(dep)
        seen.add(fam)
        if sweep == CONFIRM_SWEEP_NAME:
            replayed.add(fam)
        if status == "ok":
            runs.add(fam)
    return replayed | (seen - runs)


def frontier_into(results: Path, model: str, trace: str, max_simulated: int = MAX_SIMULATED) -> FrontierRun:
    from infersim.calibration.efficiency import load_calibration
    from infersim.catalog.hardware import load_catalog
    from infersim.catalog.models import load_model
    from infersim.planner.confirm import load_trace
    from infersim.planner.families import families
    from infersim.planner.frontier import run_frontier
    start = time.perf_counter()
    arch = load_model(model)
    tw = load_trace(trace)
    have = _stored_families(results, arch.name, tw.name)
    names = [f.name for f in families(arch, load_catalog(), load_calibration(None)) if not f.skipped]
    todo = [n for n in names if n not in have]
    if todo:
        # sensitivity off: the report's tornado runs deployments.sensitivity on its headline point itself
        run_frontier(arch.name, trace=tw.path, only=todo, out=results, sensitivity=False, jobs=JOBS,
                     max_simulated=max_simulated)
    secs = time.perf_counter() - start
    kept = [n for n in names if n in have]
    msg = (f"frontier: {arch.name} on trace {tw.name} (screened at its mean lengths, {tw.input_len} in / "
           f"{tw.output_len} out tokens; up to {max_simulated} frontier points per family replayed through the "
           f"simulator): {len(todo)} families run" + (f", {len(kept)} already in {results}" if kept else "")
           + f", {secs:.1f} s; results in {results.resolve()}")
    return FrontierRun(arch.name, tw, todo, kept, secs, msg)
