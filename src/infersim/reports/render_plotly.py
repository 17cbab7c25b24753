"""FigureSpec -> plotly figure (interactive: hover, zoom, legend toggling by group), and the
self-contained HTML report: plotly.js is inlined from the installed plotly package once, no CDN,
so the file opens offline. No figure logic here: only drawing what the spec says."""
from __future__ import annotations

import html
import json
from typing import Optional

from infersim.reports.spec import FigureSpec, Series
from infersim.reports.style import group_colours


def _trace(s: Series, colour: str, show_legend: bool):
    import plotly.graph_objects as go
    common = {"name": s.name, "legendgroup": s.group or s.name, "showlegend": show_legend}
    if s.hover is not None:
        common.update(hovertext=s.hover, hoverinfo="text")
    if s.kind == "bar":
        return go.Bar(x=s.x, y=s.y, orientation=s.orientation, base=s.base, marker_color=colour, **common)
    mode = "markers" if s.kind == "scatter" else "lines+markers"
    line = {"color": colour, "dash": "dash" if s.dash else "solid"}
    if s.kind == "step":
        line["shape"] = "hv" if s.step_where == "post" else "vh"
        mode = "lines"
    marker = {"color": colour, "size": 5 if s.kind == "scatter" else 7, "opacity": 0.35 if s.kind == "scatter" else 1}
    return go.Scatter(x=s.x, y=s.y, mode=mode, line=line, marker=marker, **common)


def to_plotly(spec: FigureSpec, colours: Optional[dict[str, str]] = None):
    """The plotly Figure of a non-empty spec."""
    import plotly.graph_objects as go
    colours = colours or group_colours([spec])
    fig = go.Figure()
    seen: set[str] = set()
    for s in spec.series:
        key = s.group or s.name
        # one legend entry per group: clicking it toggles the family's every series at once
        fig.add_trace(_trace(s, colours.get(key, "#333333"), key not in seen))
        seen.add(key)
    for a in spec.annotations:
        fig.add_annotation(x=_axis_value(a.x, spec.x.log), y=_axis_value(a.y, spec.y.log), text=html.escape(a.text),
                           showarrow=False, font={"size": 10, "color": "#555555"}, xanchor="left", yanchor="bottom")
    fig.update_layout(title=spec.title, barmode=spec.barmode, template="plotly_white", height=480,
                      margin={"l": 70, "r": 20, "t": 50, "b": 60}, legend={"groupclick": "togglegroup"})
    fig.update_xaxes(title=spec.x.title, type=_axis_type(spec.x), range=_single_value_range(spec, "x"))
    fig.update_yaxes(title=spec.y.title, type=_axis_type(spec.y), range=_single_value_range(spec, "y"))
    return fig


def _single_value_range(spec: FigureSpec, which: str):
    """An explicit range of a decade around the values when a log axis's data hold one value, up
    to float rounding (all requests with the same TPOT, say): plotly's autorange of a (near)
    zero-width log span draws ticks at -Infinity (a console error and no axis); None (autorange)
    otherwise."""
    import math
    axis = spec.x if which == "x" else spec.y
    if not axis.log:
        return None
    values = {float(v) for s in spec.series for v in (s.x if which == "x" else s.y)
              if isinstance(v, (int, float)) and math.isfinite(v) and v > 0}
    if not values or math.log10(max(values)) - math.log10(min(values)) > 1e-6:
        return None
    centre = math.log10(min(values))
    return [centre - 0.5, centre + 0.5]


def _axis_type(axis) -> str:
    return "category" if axis.categorical else "log" if axis.log else "linear"


def _axis_value(v, log: bool):
    """Annotations on a log axis are placed in log10 units (plotly's convention)."""
    import math
    return math.log10(v) if log and isinstance(v, (int, float)) and v > 0 else v


def figure_block(spec: FigureSpec, colours: dict[str, str]) -> str:
    """One figure's HTML: title, caption, the plot (or why it is empty), table, inputs, assumptions."""
    e = html.escape
    parts = [f'<section class="figure" id="fig-{e(spec.key)}" data-key="{e(spec.key)}">', f"<h2>{e(spec.title)}</h2>",
             f'<p class="caption">{e(spec.caption)}</p>']
    if spec.is_empty:
        parts.append(f'<div class="empty" data-empty="1">No figure: {e(spec.why_empty())}</div>')
    else:
        div = to_plotly(spec, colours).to_html(full_html=False, include_plotlyjs=False, div_id=f"plot-{spec.key}",
                                               config={"displaylogo": False, "responsive": True})
        parts.append(f'<div class="plot">{div}</div>')
    if spec.table is not None:
        head = "".join(f"<th>{e(c)}</th>" for c in spec.table.columns)
        body = "".join("<tr>" + "".join(f"<td>{e(str(v))}</td>" for v in row) + "</tr>" for row in spec.table.rows)
        parts.append(f'<table class="data"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>')
    for label, items, cls in (("Notes", spec.notes, "notes"), ("Inputs", spec.inputs, "inputs"),
                              ("Estimates and assumptions", spec.assumptions, "assumptions")):
        if items:
            lis = "".join(f"<li>{e(i)}</li>" for i in items)
            parts.append(f'<div class="{cls}"><h3>{label}</h3><ul>{lis}</ul></div>')
    parts.append("</section>")
    return "\n".join(parts)


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
header{border-bottom:1px solid #ccc;margin-bottom:1.5em}.warning{background:#fff6e0;padding:.6em;border-left:4px solid #E69F00}
section.figure{margin:2.5em 0}.caption{color:#333}.empty{padding:2em;background:#f4f4f4;color:#555;font-style:italic}
table.data{border-collapse:collapse;font-size:.9em}table.data td,table.data th{border:1px solid #ddd;padding:.3em .6em}
h3{font-size:1em;margin:.8em 0 .2em}ul{margin:.2em 0}li{font-size:.9em}"""


def report_html(header: dict[str, str], specs: list[FigureSpec]) -> str:
    """The whole self-contained report. `header`: label -> value lines (model, workload, code
    version, results file...)."""
    from plotly.offline import get_plotlyjs
    e = html.escape
    colours = group_colours(specs)
    rows = "".join(f"<tr><th>{e(k)}</th><td>{e(v)}</td></tr>" for k, v in header.items())
    title = f"infersim report: {header.get('model', '')}"
    body = "\n".join(figure_block(s, colours) for s in specs)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{e(title)}</title>"
            f"<style>{STYLE}</style>\n<script type=\"text/javascript\">{get_plotlyjs()}</script>\n</head><body>"
            f"<header><h1>{e(title)}</h1><p class=\"warning\">Every number here is a simulated prediction of "
            "infersim's models (analytical estimates and discrete-event simulation), not a measurement; the "
            "validation figure shows how far predictions have been from published measurements.</p>"
            f"<table class=\"meta\">{rows}</table></header>\n{body}\n"
            f"<script type=\"application/json\" id=\"report-meta\">{_json_script(header)}</script></body></html>")


def _json_script(obj) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(obj).replace("</", "<\\/")
