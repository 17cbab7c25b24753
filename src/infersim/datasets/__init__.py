"""Data that ships with infersim (copied from the project's shared folder; sources and licences in
this folder's README.md and each subfolder's README.md): the published-measurement calibration set,
InferenceX serving points, MLPerf dataset lengths and public request traces.

Paths resolve inside the installed package, never relative to the working directory."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent
CALIBRATION_DIR = ROOT / "calibration"
TRACES_DIR = ROOT / "traces"
# sha256 of every shipped data file (`sha256sum -c` format, paths relative to ROOT), written by
# scripts/refresh_datasets.py; a test checks the files against it so a partial copy is caught
MANIFEST = ROOT / "MANIFEST.sha256"
TRACE_SUFFIXES = (".csv", ".jsonl")


def measurements_csv() -> Path:
    """The published measurements `validate` and `calibrate` use by default."""
    return CALIBRATION_DIR / "measurements.csv"


def inferencex_points() -> Path:
    """The InferenceX serving points `validate` predicts by default (format in its README.md)."""
    return CALIBRATION_DIR / "inferencex" / "points.csv"


def trace(name: str) -> Path:
    """A shipped trace by file name (e.g. 'AzureLLMInferenceTrace_conv.csv')."""
    return TRACES_DIR / name


def trace_names() -> list[str]:
    """File names of the shipped traces, sorted."""
    return sorted(p.name for p in TRACES_DIR.iterdir() if p.suffix in TRACE_SUFFIXES)


def display_path(path) -> str:
    """How to record `path` in a committed file: a shipped file as its path from the repository root
    (`src/infersim/datasets/...`, no machine-specific prefix), anything else as given."""
    resolved = Path(path).resolve()
    if resolved.is_relative_to(ROOT):
        return (Path("src/infersim/datasets") / resolved.relative_to(ROOT)).as_posix()
    return str(path)
