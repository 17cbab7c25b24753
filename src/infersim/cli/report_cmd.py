"""`infersim report RESULTS.duckdb --out report.html [--png DIR]`, and from nothing:
`infersim report --model M --trace NAME` (runs the frontier into RESULTS first). Registered in
cli/main.py; the work is in infersim/reports/; this module parses options and prints where the
files are."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from infersim.cli.common import err, out
from infersim.errors import InputError, shown

DEFAULT_OUT = "infersim-report.html"
DEFAULT_RESULTS = "infersim-results.duckdb"


def report(results: Optional[Path] = typer.Argument(None, help="results DuckDB file (infersim frontier --out / "
                                                    f"infersim sweep); with --trace, where the frontier is written "
                                                    f"(default {DEFAULT_RESULTS}; resumed if it exists)"),
           out_file: Path = typer.Option(Path(DEFAULT_OUT), "--out", help="the self-contained HTML report to write"),
           png_dir: Optional[Path] = typer.Option(None, "--png", help="also write each figure as PNG into this folder"),
           model: Optional[str] = typer.Option(None, "--model", help="the model to report (needed with --trace, or "
                                               "when the results file holds several)"),
           trace: Optional[str] = typer.Option(None, "--trace", help="run the frontier for --model on this trace's "
                                               "mean lengths first (a shipped trace name or a file), then report; "
                                               "its first requests drive the simulated CDFs"),
           band: str = typer.Option("50-150", "--band", help="the headline interactivity band (tok/s per user): "
                                    "<50, 50-150, 150-400, 400-1000, >1000"),
           overwrite: bool = typer.Option(False, "--overwrite", help="replace existing output files (the report and "
                                          "PNGs; a results file is only ever added to)")):
    """A report people read: every figure of a results file (frontier per family, cost against
    the latency target, ROI, TTFT/TPOT CDFs, time per chip kind, LPX:NVL72 ratio, sensitivity,
    validation) as one self-contained interactive HTML file that opens offline, and as PNGs."""
    from infersim.interactivity import BAND_NAMES
    from infersim.reports.data import load_report_data, read_results, select_report_data
    from infersim.reports.figures import FIGURES, build_figures
    from infersim.reports.write import check_png_targets, check_target, write_html, write_pngs
    if band not in BAND_NAMES:
        raise InputError(f"--band '{shown(band)}' is not a band; choose from {', '.join(BAND_NAMES)}")
    check_target(out_file, overwrite)  # every refusal before any work, so nothing is half written
    if png_dir is not None:
        check_png_targets([k for k, _, _ in FIGURES], png_dir, overwrite)
    if trace is not None:
        results = results or Path(DEFAULT_RESULTS)
        run = _frontier_for_trace(results, model, trace)
        data = select_report_data(results, read_results(results), run.model, run.workload)
        data.options["trace_path"] = str(run.trace.path)  # the rows name the file; the CDFs read it here
    elif results is None:
        raise InputError("give a results file (infersim report RESULTS.duckdb) or --model and --trace to make one")
    else:
        data = load_report_data(results, model)
    data.options["band"] = band
    specs = build_figures(data)
    path = write_html(data, specs, out_file, overwrite)
    empty = [s.key for s in specs if s.is_empty]
    out.print(f"report: {path.resolve()} ({len(specs)} figures" + (f", {len(empty)} without data: "
              f"{', '.join(empty)}" if empty else "") + ")", markup=False, highlight=False)
    if png_dir is not None:
        paths = write_pngs(specs, png_dir, overwrite)
        out.print(f"PNG: {len(paths)} figures in {png_dir.resolve()}", markup=False, highlight=False)


def _frontier_for_trace(results: Path, model: Optional[str], trace: str):
    """Run (or resume) the frontier for `model` on the trace into `results` (reports.frontier_run)."""
    from infersim.reports.frontier_run import frontier_into
    if model is None:
        raise InputError("--trace needs --model: the model whose frontier to run on the trace (infersim models)")
    got = frontier_into(results, model, trace)
    err.print(got.message, markup=False, highlight=False)
    return got
