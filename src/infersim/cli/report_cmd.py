"""`infersim report RESULTS.duckdb --out report.html [--png DIR]` (registered in cli/main.py). The
work is in infersim/reports/; this module parses options and prints where the files are."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from infersim.cli.common import out
from infersim.errors import InputError

DEFAULT_OUT = "infersim-report.html"


def report(results: Path = typer.Argument(..., help="results DuckDB file (infersim frontier --out / infersim sweep)"),
           out_file: Path = typer.Option(Path(DEFAULT_OUT), "--out", help="the self-contained HTML report to write"),
           png_dir: Optional[Path] = typer.Option(None, "--png", help="also write each figure as PNG into this folder"),
           model: Optional[str] = typer.Option(None, "--model", help="the model to report (needed when the results "
                                               "file holds several)"),
           overwrite: bool = typer.Option(False, "--overwrite", help="replace existing output files")):
    """A report people read: every figure of the results file (frontier per family, cost against
    the latency target, ROI, TTFT/TPOT CDFs, time per chip kind, LPX:NVL72 ratio, sensitivity,
    validation) as one self-contained interactive HTML file, opening offline, and as PNGs."""
    from infersim.reports.data import load_report_data
    from infersim.reports.figures import build_figures
    from infersim.reports.write import check_target, write_html
    check_target(out_file, overwrite)
    data = load_report_data(results, model)
    specs = build_figures(data)
    path = write_html(data, specs, out_file, overwrite)
    empty = [s.key for s in specs if s.is_empty]
    out.print(f"report: {path.resolve()} ({len(specs)} figures" + (f", {len(empty)} without data: "
              f"{', '.join(empty)}" if empty else "") + ")", markup=False, highlight=False)
    if png_dir is not None:
        raise InputError("--png is not available yet")
