"""The report's figures as data: a `FigureSpec` says what a figure shows, the inputs behind it,
which of them are estimates or assumptions, its axes and its series. Builders
(reports/figures/*.py) make them from a `ReportData`; renderers (render_plotly: interactive HTML,
render_png: matplotlib PNG) draw them and hold no figure logic, so the HTML, the PNGs and the
dashboard show the same numbers.

A figure whose data is absent has no series and says why in `empty_reason`; renderers draw that
sentence in its place, never blank axes.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal, Optional, Union

SeriesKind = Literal["line", "scatter", "bar", "step"]
Value = Union[float, str]  # numbers, or category labels on a categorical (bar) axis


@dataclass
class Axis:
    """An axis: `label` (what), `unit` (shown in brackets; "" for none), `log` (log scale),
    `categorical` (x values are labels, e.g. families or inputs)."""
    label: str
    unit: str = ""
    log: bool = False
    categorical: bool = False

    @property
    def title(self) -> str:
        return f"{self.label} ({self.unit})" if self.unit else self.label


@dataclass
class Series:
    """One trace: `x`, `y` of equal length; `kind` line / scatter / bar / step; `hover` one text
    per point (None: the values alone); `group` the legend group it toggles with (a family);
    `orientation` "h" draws bars along x (tornado); `base` where each bar starts (None: zero);
    `dash` a dashed line (a reference or an assumption, not a result); `step_where` for a step
    series: "post" holds each y until the next x, "pre" takes the next y right after each x."""
    name: str
    x: list[Value]
    y: list[Value]
    kind: SeriesKind = "line"
    hover: Optional[list[str]] = None
    group: Optional[str] = None
    orientation: Literal["v", "h"] = "v"
    base: Optional[list[float]] = None
    dash: bool = False
    step_where: Literal["post", "pre"] = "post"

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise ValueError(f"series {self.name!r}: {len(self.x)} x values but {len(self.y)} y values")
        if self.hover is not None and len(self.hover) != len(self.x):
            raise ValueError(f"series {self.name!r}: {len(self.hover)} hover texts for {len(self.x)} points")

    def finite(self) -> bool:
        """True when it has a point whose numeric values are all finite."""
        def ok(v):
            return isinstance(v, str) or (v is not None and math.isfinite(float(v)))
        return any(ok(a) and ok(b) for a, b in zip(self.x, self.y))


@dataclass
class Annotation:
    """A text placed at data coordinates (x, y) of the figure."""
    x: Value
    y: Value
    text: str


@dataclass
class Table:
    """A small table shown under the figure (e.g. the per-band verdicts)."""
    columns: list[str]
    rows: list[list[str]]


@dataclass
class FigureSpec:
    """One figure. `key` is stable (file names, dashboard ids); `caption` says what it shows;
    `inputs` the inputs behind it; `assumptions` which of those are estimates or assumptions;
    `notes` anything a reader must know (a poor prediction, a capped sweep). `barmode` is how bar
    series share a category: group, stack or overlay."""
    key: str
    title: str
    caption: str
    x: Axis
    y: Axis
    series: list[Series] = field(default_factory=list)
    inputs: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    annotations: list[Annotation] = field(default_factory=list)
    table: Optional[Table] = None
    barmode: Literal["group", "stack", "overlay"] = "group"
    empty_reason: Optional[str] = None

    @property
    def is_empty(self) -> bool:
        return not any(s.finite() for s in self.series)

    def why_empty(self) -> str:
        return self.empty_reason or "no data for this figure in the results file"

    def to_dict(self) -> dict:
        """Plain JSON-able dict (the dashboard's API)."""
        return asdict(self)


def empty(key: str, title: str, caption: str, reason: str, x: Optional[Axis] = None,
          y: Optional[Axis] = None, inputs: Optional[list[str]] = None) -> FigureSpec:
    """A figure without data, saying why (`reason`, one sentence a reader can act on)."""
    return FigureSpec(key, title, caption, x or Axis(""), y or Axis(""), inputs=inputs or [], empty_reason=reason)
