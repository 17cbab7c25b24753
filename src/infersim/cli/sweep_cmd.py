"""`infersim sweep FILE.yaml --out results.duckdb` and `infersim query results.duckdb "select ..."`
(registered in cli/main.py). The work is in infersim/sweep/; this module parses and prints."""
from __future__ import annotations

import csv
import datetime
import decimal
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from infersim.cli.common import emit_json, err, fmt_g, out
from infersim.errors import InputError, shown


def sweep(file: Path = typer.Argument(..., help="sweep YAML (examples/sweeps/small.yaml)"),
          out_file: Path = typer.Option(..., "--out", help="DuckDB file; its `results` table gets one row per "
                                        "configuration (an existing one is continued, never replaced)"),
          jobs: Optional[int] = typer.Option(None, "--jobs", help="worker processes (default min(4, CPUs)); 1 runs "
                                             "in this process; with --ray local: the instance's CPUs"),
          ray: Optional[str] = typer.Option(None, "--ray", help="run as Ray tasks: a cluster ADDRESS, auto (the "
                                            "cluster this machine joined) or local (a private instance); needs "
                                            "`pip install 'infersim[ray]'`"),
          overwrite: bool = typer.Option(False, "--overwrite", help="evaluate this sweep's configurations again, "
                                         "replacing their rows (other rows stay)"),
          commit_every: int = typer.Option(64, "--commit-every", help="rows per transaction (also committed at "
                                           "least every second)"),
          quiet: bool = typer.Option(False, "--quiet", help="no progress lines on stderr"),
          as_json: bool = typer.Option(False, "--json", help="print the run's summary as JSON")):
    """Evaluate a grid of deployments x models x loads into a DuckDB table `results` (resumable:
    run the same command again after a kill and it continues where it stopped)."""
    from infersim.sweep.report import SweepStopped
    from infersim.sweep.runner import default_jobs, run_sweep
    from infersim.sweep.spec import expand, read_sweep
    from infersim.sweep.store import ResultStore
    spec = read_sweep(file)
    configs = expand(spec, file.parent, shown(file.name))
    jobs = jobs if jobs is not None else default_jobs()
    if jobs < 1 or commit_every < 1:
        raise InputError("--jobs and --commit-every must each be at least 1")
    if ray is not None:
        from infersim.sweep.ray_runner import ray_module
        ray_module()  # not installed: say so before the results file is created
    out_file.parent.mkdir(parents=True, exist_ok=True)
    store = ResultStore(out_file)
    log = (lambda msg: None) if quiet else (lambda msg: err.print(msg, markup=False, highlight=False))
    try:
        report = run_sweep(configs, store, sweep_name=spec.name, jobs=jobs, ray_address=ray, overwrite=overwrite,
                           commit_every=commit_every, log=log)
        rows = store.count()
    except SweepStopped as e:
        err.print(f"error: {e}", markup=False, highlight=False)
        raise typer.Exit(1) from None
    finally:
        store.close()
    summary = {"sweep": spec.name, "out": str(out_file), "configurations": report.total,
               "already_written": report.already, "deleted": report.deleted, "evaluated": report.evaluated,
               "status": report.status, "seconds": report.seconds, "configs_per_s": report.configs_per_s,
               "backend": report.backend, "pool_restarts": report.pool_restarts, "rows_in_table": rows}
    if as_json:
        emit_json(summary)
        return
    status = ", ".join(f"{k} {v}" for k, v in sorted(report.status.items())) or "nothing new"
    out.print(f"sweep {spec.name}: {report.total} configurations, {report.already} already in {out_file}"
              + (f" ({report.deleted} deleted first: --overwrite)" if report.deleted else "")
              + f"; evaluated {report.evaluated} in {report.seconds:.1f} s ({report.configs_per_s:.0f}/s, "
              f"{report.backend}): {status}; the table holds {rows} rows", markup=False, highlight=False)
    if report.evaluated:
        out.print(f'read them with: infersim query {out_file} "select deployment, model, batch, tok_s_per_user, '
                  'tok_s_per_mw from results where status = \'ok\' order by tok_s_per_mw desc limit 10"',
                  markup=False, highlight=False)


def _plain(v):
    """A DuckDB value as JSON/CSV can carry it."""
    if isinstance(v, (datetime.datetime, datetime.date, datetime.time)):
        return v.isoformat()
    if isinstance(v, decimal.Decimal):
        return float(v)
    if isinstance(v, float) and v != v:
        return None
    return v


def _cell(v) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return fmt_g(v)
    return str(_plain(v))


def query(db: Path = typer.Argument(..., help="a DuckDB file written by `infersim sweep`"),
          sql: str = typer.Argument(..., help='SQL, e.g. "select * from results limit 5"'),
          as_json: bool = typer.Option(False, "--json", help="rows as a JSON list of objects"),
          as_csv: bool = typer.Option(False, "--csv", help="rows as CSV with a header")):
    """Run SQL on a results file, read-only, and print the rows as a table (or --json / --csv)."""
    from infersim.sweep.store import duckdb_module, first_line
    if as_json and as_csv:
        raise InputError("give --json or --csv, not both")
    if not db.is_file():
        raise InputError(f"'{shown(db)}' is not a file; give the DuckDB file a sweep wrote (--out)")
    duckdb = duckdb_module()
    try:
        # read-only, and no files or network reachable from the SQL (COPY TO, ATTACH, INSTALL)
        con = duckdb.connect(str(db), read_only=True,
                             config={"enable_external_access": False, "lock_configuration": True})
    except duckdb.Error as e:
        raise InputError(f"cannot open '{shown(db)}' ({first_line(e)}); give a DuckDB file written by `infersim sweep`"
                         " (not one a sweep is writing)") from None
    try:
        cur = con.execute(sql)
        if cur.description is None:
            raise InputError("the SQL returned no rows to print; give a query (select ...)")
        names = [d[0] for d in cur.description]
        rows = cur.fetchall()
    except duckdb.Error as e:
        raise InputError(f"SQL failed: {first_line(e)}") from None
    finally:
        con.close()
    if as_json:
        emit_json([{n: _plain(v) for n, v in zip(names, r)} for r in rows])
    elif as_csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(names)
        w.writerows([[_plain(v) for v in r] for r in rows])
    else:
        t = Table(title=f"{len(rows)} rows")
        for n in names:
            t.add_column(Text(n))
        for r in rows:
            t.add_row(*(Text(_cell(v)) for v in r))  # Text: '[...]' in a value is not markup
        out.print(t)
