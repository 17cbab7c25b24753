"""The dashboard's view of one results file: every row read at start, read-only
(reports.data.read_results, which refuses a missing, foreign, old-schema or empty file), and again
when the file changes (a sweep or frontier still writing into it: its rows appear without a
restart; while a writer holds the file locked, the rows already read are kept), the models and
workloads it holds, and the figures of a `Selection`.

A selection narrows the rows before the report's figure builders run, so its Pareto fronts and
per-band verdicts are those of the rows left: families not chosen are left out, and so are
configurations that run but miss an SLO (below the minimum tok/s per user, above the maximum
TTFT); each figure then says in a note how many the SLO left out. Figures are drawn by
reports.render_plotly with one colour per family for the whole workload, so a family keeps its
colour whatever is toggled.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from infersim.errors import InputError, shown
from infersim.reports.data import ReportData, family_of, read_results, select_report_data

Workload = tuple[int, int, Optional[str]]  # input_len, output_len, trace


@dataclass(frozen=True)
class Selection:
    """What the page asks for. `families` None: every family; SLO bounds None: no bound.
    Units: tok/s per user (decode speed), seconds (TTFT)."""
    model: str
    workload: Workload
    families: Optional[tuple[str, ...]] = None
    min_tok_s_per_user: Optional[float] = None
    max_ttft_s: Optional[float] = None


def workload_label(w: Workload) -> str:
    inp, out, trace = w
    return f"trace {trace} (mean {inp} in / {out} out)" if trace else f"{inp} in / {out} out tokens"


def finite_or_none(obj):
    """`obj` with every non-finite float replaced by None (JSON has no NaN or infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


class Results:
    """One results file, read at construction (InputError when it cannot be used)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._stamp = _stamp(self.path)
        self._load(read_results(self.path))

    def _load(self, rows: list[dict]) -> None:
        self.rows = rows
        self._data: dict[tuple[str, Workload], ReportData] = {}
        self._colours: dict[tuple[str, Workload], dict[str, str]] = {}
        self._index = self._make_index()

    def refresh(self) -> bool:
        """Re-read the file when its size or modification time changed since the last read; True
        when it did. A file that cannot be read now (a writer holds its lock, it is mid-write) keeps
        the rows already read, and is tried again on the next call."""
        stamp = _stamp(self.path)
        if stamp == self._stamp:
            return False
        try:
            rows = read_results(self.path)
        except InputError:
            return False
        self._stamp = stamp
        self._load(rows)
        return True

    def index(self) -> list[dict]:
        """[{model, workloads: [{input_len, output_len, trace, label, rows, families}]}], in file order,
        each model's workloads most rows first (the file re-read first if it changed)."""
        self.refresh()
        return self._index

    def _make_index(self) -> list[dict]:
        per_model: dict[str, Counter] = {}
        fams: dict[tuple[str, Workload], dict[str, None]] = {}
        for r in self.rows:
            w = (r["input_len"], r["output_len"], r["trace"])
            per_model.setdefault(r["model"], Counter())[w] += 1
            fams.setdefault((r["model"], w), {})[family_of(r["deployment"])] = None
        return [{"model": m, "workloads": [
            {"input_len": w[0], "output_len": w[1], "trace": w[2], "label": workload_label(w), "rows": n,
             "families": list(fams[(m, w)])} for w, n in c.most_common()]} for m, c in per_model.items()]

    def data(self, model: str, workload: Workload) -> ReportData:
        key = (model, tuple(workload))
        if key not in self._data:
            self._data[key] = select_report_data(self.path, self.rows, model, key[1])
        return self._data[key]

    def colours(self, model: str, workload: Workload) -> dict[str, str]:
        """One colour per family over every figure of the unfiltered workload."""
        from infersim.reports.figures import build_figures
        from infersim.reports.style import group_colours
        key = (model, tuple(workload))
        if key not in self._colours:
            self._colours[key] = group_colours(build_figures(self.data(model, workload)))
        return self._colours[key]

    def narrowed(self, sel: Selection) -> tuple[ReportData, Counter]:
        """The selection's ReportData, and per family how many configurations that run the SLO left out."""
        data = self.data(sel.model, sel.workload)
        if sel.families is not None:
            unknown = sorted(set(sel.families) - set(data.families))
            if unknown:
                raise InputError(f"unknown family '{shown(unknown[0])}' for this workload; choose from "
                                 f"{', '.join(data.families)}")
        kept, missed = [], Counter()
        for r in data.rows:
            if sel.families is not None and r["family"] not in sel.families:
                continue
            if r["status"] == "ok" and not meets_slo(r, sel):
                missed[r["family"]] += 1
                continue
            kept.append(r)
        return dataclasses.replace(data, rows=kept, _cache={}), missed

    def figures(self, sel: Selection) -> dict:
        """{header, slo, figures: [{key, spec, plotly}]}: every report figure of the selection, its
        spec as data (FigureSpec.to_dict) and its plotly figure (None when empty)."""
        from infersim.reports.figures import build_figures
        from infersim.reports.write import header
        self.refresh()
        data, missed = self.narrowed(sel)
        specs = build_figures(data)
        note = slo_note(sel, missed)
        colours = self.colours(sel.model, sel.workload)
        out = []
        for spec in specs:
            if note:
                spec.notes.append(note)
            out.append(figure_payload(spec, colours))
        return {"header": header(data), "slo_left_out": sum(missed.values()), "figures": out}


def _stamp(path: Path) -> Optional[tuple[int, int]]:
    """(size, mtime in ns) of the file, None when it cannot be stat'ed."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def figure_payload(spec, colours: dict[str, str]) -> dict:
    from infersim.reports.render_plotly import to_plotly
    fig = None if spec.is_empty else json.loads(to_plotly(spec, colours).to_json())
    return {"key": spec.key, "spec": finite_or_none(spec.to_dict()), "empty": spec.is_empty,
            "why_empty": spec.why_empty() if spec.is_empty else None, "plotly": fig}


def meets_slo(row: dict, sel: Selection) -> bool:
    """A configuration meets the SLO when its decode speed per user is at least the minimum and its
    TTFT at most the maximum; an unknown value does not meet a bound set on it."""
    def value(k):
        v = row.get(k)
        return float(v) if v is not None and math.isfinite(float(v)) else None
    speed, ttft = value("tok_s_per_user"), value("ttft_s")
    if sel.min_tok_s_per_user is not None and (speed is None or speed < sel.min_tok_s_per_user):
        return False
    if sel.max_ttft_s is not None and (ttft is None or ttft > sel.max_ttft_s):
        return False
    return True


def slo_note(sel: Selection, missed: Counter) -> Optional[str]:
    bounds = [f"at least {sel.min_tok_s_per_user:g} tok/s per user" if sel.min_tok_s_per_user is not None else None,
              f"TTFT at most {sel.max_ttft_s:g} s" if sel.max_ttft_s is not None else None]
    bounds = [b for b in bounds if b]
    if not bounds:
        return None
    per = ", ".join(f"{f} {n}" for f, n in missed.items()) or "none"
    return (f"SLO ({' and '.join(bounds)}): {sum(missed.values())} configurations that run miss it and are left "
            f"out of the fronts and verdicts ({per})")
