"""One builder per figure: `ReportData` -> `FigureSpec`. `FIGURES` is the report's order;
`build_figures` runs them all, turning a builder's InputError or failure into a figure that says
why it is empty (a report never crashes for one figure)."""
from __future__ import annotations

from collections.abc import Callable

from infersim.errors import InputError
from infersim.reports.data import ReportData
from infersim.reports.figures.frontier import frontier_cost, frontier_mw
from infersim.reports.spec import FigureSpec, empty

# (key, title, builder)
FIGURES: list[tuple[str, str, Callable[[ReportData], FigureSpec]]] = [
    ("frontier-mw", "tok/s per MW against tok/s per user, per family", frontier_mw),
    ("frontier-cost", "cost per Mtok against tok/s per user, per family", frontier_cost),
]


def build_figure(data: ReportData, key: str) -> FigureSpec:
    for k, title, builder in FIGURES:
        if k == key:
            try:
                return builder(data)
            except InputError as e:
                return empty(k, title, "", str(e))
            except Exception as e:  # noqa: BLE001 - one figure's bug must not lose the others; it is shown
                return empty(k, title, "", f"figure not built: {type(e).__name__}: {e}")
    raise InputError(f"unknown figure '{key}'; choose from {', '.join(k for k, _, _ in FIGURES)}")


def build_figures(data: ReportData, keys: list[str] | None = None) -> list[FigureSpec]:
    return [build_figure(data, k) for k, _, _ in FIGURES if keys is None or k in keys]
