"""`infersim frontier --model M --input-len N --output-len N` (registered in cli/main.py). The
work is in infersim/planner/; this module parses options and prints."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from infersim.cli.common import emit_json, err, fmt_g, out
from infersim.errors import InputError, shown


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag} '{shown(text)}' is not a comma-separated list of whole numbers (e.g. 1,8,64)") from None
    if not values or min(values) < 1:
        raise InputError(f"{flag} '{shown(text)}': give whole numbers, each at least 1 (e.g. 1,8,64)")
    return values


def frontier(model: str = typer.Option(..., "--model", help="catalog model (infersim models)"),
             input_len: int = typer.Option(..., "--input-len", help="prompt tokens per request"),
             output_len: int = typer.Option(..., "--output-len", help="output tokens per request"),
             out_file: Optional[Path] = typer.Option(None, "--out", help="also write every evaluated configuration "
                                                     "to this DuckDB file's `results` table (as `infersim sweep`)"),
             batches: str = typer.Option("1,2,4,8,16,32,64,128,256,512", "--batches",
                                         help="sequences per decode replica to screen, comma-separated"),
             only: Optional[str] = typer.Option(None, "--families", help="only these families, comma-separated"),
             no_sensitivity: bool = typer.Option(False, "--no-sensitivity", help="skip the verdicts' sensitivity "
                                                 "sweeps (faster)"),
             as_json: bool = typer.Option(False, "--json", help="print families' frontiers and verdicts as JSON")):
    """Every deployment family for one model and workload across load: each family's Pareto
    frontier (tok/s per user against tok/s per MW and against cost per million output tokens) and a
    verdict per interactivity band."""
    from infersim.planner.frontier import run_frontier, to_json
    if input_len < 1 or output_len < 1:
        raise InputError(f"--input-len and --output-len must each be at least 1 token; got {input_len} and {output_len}")
    families = [f.strip() for f in only.split(",") if f.strip()] if only else None
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
    res = run_frontier(model, input_len, output_len, batches=_ints(batches, "--batches"), only=families,
                       out=out_file, sensitivity=not no_sensitivity)
    summary = (f"screened {res.screened} configurations ({len(res.families)} families) in {res.seconds:.1f} s"
               + (f"; all written to {out_file}" if out_file else ""))
    if as_json:
        emit_json(to_json(res))
        err.print(summary, markup=False, highlight=False)
        return
    _print(res)
    out.print(summary, markup=False, highlight=False)


def _num(x, fmt=fmt_g) -> str:
    return "—" if x is None else fmt(x)


def _print(res) -> None:
    from infersim.planner.frontier import band_label
    out.print(f"{res.model}, {res.input_len} in / {res.output_len} out; tok/s per MW at {res.power_basis}; cost "
              "buying the hardware at the catalog's prices (infersim.economics)", markup=False, highlight=False)
    for f in res.families:
        head = f"{f.name}: {f.description}"
        if f.skipped:
            out.print(f"\n{head}\n  skipped: {f.skipped}", markup=False, highlight=False)
            continue
        t = Table(title=Text(head), title_justify="left")
        for c in ("deployment", "batch", "tok/s/user", "output tok/s", "tok/s per MW", "$/Mtok out", "frontier"):
            t.add_column(c, justify="left" if c in ("deployment", "frontier") else "right")
        mw, cost = {id(p) for p in f.mw_front}, {id(p) for p in f.cost_front}
        for p in f.frontier:
            on = "+".join(n for n, s in (("MW", mw), ("cost", cost)) if id(p) in s)
            t.add_row(Text(p.deployment),  # labels hold [..]: not rich markup
                      str(p.batch), _num(p.tok_s_per_user), _num(p.output_tok_s), _num(p.tok_s_per_mw),
                      _num(p.cost_per_mtok_usd, lambda x: f"{x:.3g}"), on)
        out.print()
        out.print(t)
        notes = [f"{f.screened} screened, {len(f.points)} run"]
        if f.dropped:
            notes.append(f"{f.dropped} dropped (first: {f.first_reason})")
        if f.points and not f.frontier:
            notes.append("no frontier: the catalog has no power figure or price for this hardware")
        out.print("  " + "; ".join(notes), markup=False, highlight=False)
    out.print("\nVerdicts", markup=False, highlight=False)
    for v in res.verdicts:
        label = band_label(v)
        if v.winner is None:
            out.print(f"  {label}: no family reaches this band", markup=False, highlight=False)
            continue
        if v.runner_up is None:
            out.print(f"  {label}: {v.winner} ({v.winner_point.deployment}, batch {v.winner_point.batch}) alone",
                      markup=False, highlight=False)
            continue
        flip = ("; the winner FLIPS at an end of an input's range" if v.flips
                else "; no input's range end flips it" if v.sensitive_to else "")
        out.print(f"  {label}: {v.winner} ({v.winner_point.deployment}, batch {v.winner_point.batch}) by "
                  f"{v.margin:.2f}x over {v.runner_up} ({v.runner_up_point.deployment}, batch "
                  f"{v.runner_up_point.batch}){flip}", markup=False, highlight=False)
        for s in v.sensitive_to:
            out.print(f"      {s}", markup=False, highlight=False)
