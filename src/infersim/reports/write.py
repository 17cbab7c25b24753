"""Writing the report's files: atomically (a temp file in the same folder, then rename), and an
existing file is replaced only when asked (`overwrite`)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from infersim.errors import InputError, shown
from infersim.reports.data import ReportData
from infersim.reports.spec import FigureSpec


def check_target(path: Path, overwrite: bool, option: str = "--out") -> None:
    """Refuse before any work: a directory, a missing parent folder, or an existing file without
    `overwrite`."""
    if path.is_dir():
        raise InputError(f"{option} '{shown(path)}' is a directory; give a file name")
    if path.exists() and not overwrite:
        raise InputError(f"{option} '{shown(path)}' exists; left it untouched: pass --overwrite to replace it "
                         "or give another name")
    if not path.parent.exists():
        raise InputError(f"{option} '{shown(path)}': folder {shown(path.parent)} does not exist")


def atomic_write(path: Path, content: bytes) -> None:
    """Write `content` to a temp file next to `path`, then rename it over `path`."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def header(data: ReportData) -> dict[str, str]:
    """The report's header lines."""
    out = {"model": data.model, "workload": data.workload, "results file": str(data.path),
           "rows": f"{len(data.rows)} configurations ({len(data.ok)} run)",
           "code version": ", ".join(data.code_versions) or "unknown"}
    from infersim.sweep.store import code_version
    out["report written by"] = f"infersim {code_version()}"
    if data.others:
        out["left out"] = f"{data.others} rows of other models or workloads in the same file"
    return out


def write_html(data: ReportData, specs: list[FigureSpec], path: Path, overwrite: bool = False) -> Path:
    from infersim.reports.render_plotly import report_html
    check_target(path, overwrite)
    atomic_write(path, report_html(header(data), specs).encode("utf-8"))
    return path


def check_png_targets(keys: list[str], folder: Path, overwrite: bool) -> list[Path]:
    """The PNG paths (`folder/<key>.png`), refused before anything is written: `folder` a file, its
    parent missing, or a PNG there already without `overwrite`."""
    if folder.exists() and not folder.is_dir():
        raise InputError(f"--png '{shown(folder)}' is a file; give a folder")
    if not folder.exists() and not folder.parent.exists():
        raise InputError(f"--png '{shown(folder)}': folder {shown(folder.parent)} does not exist")
    paths = [folder / f"{k}.png" for k in keys]
    if folder.exists():
        for p in paths:
            check_target(p, overwrite, "--png")
    return paths


def write_pngs(specs: list[FigureSpec], folder: Path, overwrite: bool = False) -> list[Path]:
    """Each figure as `folder/<key>.png` (the folder is made if missing)."""
    from infersim.reports.render_png import render_png
    from infersim.reports.style import group_colours
    paths = check_png_targets([s.key for s in specs], folder, overwrite)
    folder.mkdir(exist_ok=True)
    colours = group_colours(specs)
    for s, p in zip(specs, paths):
        atomic_write(p, render_png(s, colours))
    return paths
