"""FigureSpec -> PNG with matplotlib's Agg backend (no display, no browser): the same series,
axes and table as the HTML; an empty figure is its reason, written where the plot would be. No
figure logic here: only drawing what the spec says."""
from __future__ import annotations

import io
import textwrap
from typing import Optional

from infersim.reports.spec import FigureSpec, Series
from infersim.reports.style import group_colours

DPI = 110
SIZE_IN = (10.0, 6.0)


def _plain(text: str) -> str:
    return text.replace("<br>", "\n")


def _bars(ax, spec: FigureSpec, bars: list[tuple[Series, str]]) -> None:
    """Bar series on a categorical axis: grouped side by side, stacked or overlaid (spec.barmode)."""
    horizontal = any(s.orientation == "h" for s, _ in bars)
    cats = list(dict.fromkeys(v for s, _ in bars for v in (s.y if horizontal else s.x)))
    pos = {c: i for i, c in enumerate(cats)}
    n = len(bars)
    width = 0.8 / n if spec.barmode == "group" else 0.8
    stack: dict = {}
    for i, (s, colour) in enumerate(bars):
        cats_s, vals = (s.y, s.x) if horizontal else (s.x, s.y)
        offset = (i - (n - 1) / 2) * width if spec.barmode == "group" else 0.0
        where = [pos[c] + offset for c in cats_s]
        if spec.barmode == "stack":
            base = [stack.get(c, 0.0) for c in cats_s]
            for c, v in zip(cats_s, vals):
                stack[c] = stack.get(c, 0.0) + v
        else:
            base = s.base or [0.0] * len(vals)
        if horizontal:
            ax.barh(where, vals, height=width, left=base, color=colour, label=s.name)
        else:
            ax.bar(where, vals, width=width, bottom=base, color=colour, label=s.name)
    ticks = (ax.set_yticks, ax.set_yticklabels) if horizontal else (ax.set_xticks, ax.set_xticklabels)
    ticks[0](range(len(cats)))
    ticks[1]([textwrap.shorten(str(c), 60) for c in cats], fontsize=7, rotation=0 if horizontal else 30,
             **({} if horizontal else {"ha": "right"}))


def render_png(spec: FigureSpec, colours: Optional[dict[str, str]] = None) -> bytes:
    """The figure as PNG bytes."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colours = colours or group_colours([spec])
    fig, ax = plt.subplots(figsize=SIZE_IN, dpi=DPI)
    try:
        ax.set_title(textwrap.fill(spec.title, 90), fontsize=11)
        if spec.is_empty:
            ax.axis("off")
            ax.text(0.5, 0.5, textwrap.fill(f"No figure: {spec.why_empty()}", 80), ha="center", va="center",
                    fontsize=11, color="#555555", transform=ax.transAxes)
        else:
            _draw(ax, spec, colours)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        return buf.getvalue()
    finally:
        plt.close(fig)


def _draw(ax, spec: FigureSpec, colours: dict[str, str]) -> None:
    bars, labelled = [], set()
    for s in spec.series:
        key = s.group or s.name
        colour = colours.get(key, "#333333")
        label = key if key not in labelled else None  # one legend entry per group, as in the HTML
        labelled.add(key)
        if s.kind == "bar":
            bars.append((s, colour))
        elif s.kind == "scatter":
            ax.scatter(s.x, s.y, s=10, color=colour, alpha=0.35, label=label, linewidths=0)
        elif s.kind == "step":
            ax.step(s.x, s.y, where=s.step_where, color=colour, label=label, linestyle="--" if s.dash else "-")
        else:
            ax.plot(s.x, s.y, marker="o", markersize=4, color=colour, label=label, linestyle="--" if s.dash else "-")
    if bars:
        _bars(ax, spec, bars)
    if spec.x.log and not spec.x.categorical:
        ax.set_xscale("log")
    if spec.y.log and not spec.y.categorical:
        ax.set_yscale("log")
    ax.set_xlabel(spec.x.title)
    ax.set_ylabel(spec.y.title)
    for a in spec.annotations:
        ax.annotate(a.text, (a.x, a.y), fontsize=7, color="#555555", va="bottom")
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="best", ncol=2 if len(labelled) > 6 else 1)
