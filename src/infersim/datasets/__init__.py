"""Data that ships with infersim (copied from the project's shared folder; sources and licences in
each folder's README.md): the published-measurement calibration set, InferenceX serving points,
MLPerf dataset lengths and public request traces.

Paths resolve inside the installed package, never relative to the working directory."""
from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent
CALIBRATION_DIR = ROOT / "calibration"
TRACES_DIR = ROOT / "traces"


def measurements_csv() -> Path:
    """The published measurements `validate` and `calibrate` use by default."""
    return CALIBRATION_DIR / "measurements.csv"


def trace(name: str) -> Path:
    """A shipped trace by file name (e.g. 'AzureLLMInferenceTrace_conv.csv')."""
    return TRACES_DIR / name
