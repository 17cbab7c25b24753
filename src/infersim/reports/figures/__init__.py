"""One builder per figure: `ReportData` -> `FigureSpec`. `FIGURES` is the report's order;
`build_figures` runs them all, turning a builder's InputError or failure into a figure that says
why it is empty (a report never crashes for one figure)."""
from __future__ import annotations

from collections.abc import Callable

from infersim.errors import InputError
from infersim.reports.data import ReportData
from infersim.reports.figures.breakdown import time_breakdown
from infersim.reports.figures.cost_target import cost_vs_speed_target, cost_vs_ttft_target
from infersim.reports.figures.economics import roi_payback
from infersim.reports.figures.frontier import frontier_cost, frontier_mw
from infersim.reports.figures.ratio import lpx_ratio
from infersim.reports.figures.simulation import tpot_cdf, ttft_cdf
from infersim.reports.figures.tornado import sensitivity_tornado
from infersim.reports.figures.validation import validation_errors, validation_parity
from infersim.reports.spec import FigureSpec, empty

# (key, title, builder)
FIGURES: list[tuple[str, str, Callable[[ReportData], FigureSpec]]] = [
    ("frontier-mw", "tok/s per MW against tok/s per user, per family", frontier_mw),
    ("frontier-cost", "cost per Mtok against tok/s per user, per family", frontier_cost),
    ("cost-vs-speed-target", "cost per Mtok against the per-user speed target", cost_vs_speed_target),
    ("cost-vs-ttft-target", "cost per Mtok against the TTFT target", cost_vs_ttft_target),
    ("roi-payback", "payback at the token-price tiers", roi_payback),
    ("ttft-cdf", "TTFT distribution from simulation", ttft_cdf),
    ("tpot-cdf", "TPOT distribution from simulation", tpot_cdf),
    ("time-breakdown", "where each chip kind's time goes, per mode", time_breakdown),
    ("lpx-ratio", "the LPX:NVL72 ratio sweep", lpx_ratio),
    ("sensitivity-tornado", "the headline's sensitivity tornado", sensitivity_tornado),
    ("validation-parity", "validation: predicted against measured", validation_parity),
    ("validation-errors", "validation: error by interactivity band and hardware", validation_errors),
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
