"""Presentation shared by both renderers: one colour per legend group (a family keeps its colour
in every figure and in HTML and PNG alike)."""
from __future__ import annotations

from infersim.reports.spec import FigureSpec

# Okabe-Ito plus Tableau colours: distinguishable, including for colour-blind readers
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
           "#8c564b", "#7f7f7f", "#bcbd22", "#17becf", "#9467bd", "#e377c2", "#393b79", "#637939")


SCREEN_GROUP = "analytical screen"  # the screen's points behind simulated fronts: drawn faint, in grey
SCREEN_COLOUR = "#b0b0b0"


def group_colours(specs: list[FigureSpec]) -> dict[str, str]:
    """{group or series name: colour}, in order of first appearance across `specs` (the
    analytical screen always grey, taking no palette colour)."""
    names: dict[str, None] = {}
    for spec in specs:
        for s in spec.series:
            if (s.group or s.name) != SCREEN_GROUP:
                names.setdefault(s.group or s.name, None)
    return {SCREEN_GROUP: SCREEN_COLOUR, **{n: PALETTE[i % len(PALETTE)] for i, n in enumerate(names)}}
