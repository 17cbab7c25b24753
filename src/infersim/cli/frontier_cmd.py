"""`infersim frontier --model M --input-len N --output-len N` or `--trace FILE` (registered in
cli/main.py). The work is in infersim/planner/; this module parses options and prints."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from infersim.cli.common import emit_json, err, fmt_g, fmt_ms, out
from infersim.errors import InputError, shown
from infersim.planner.confirm import MAX_SIMULATED_PER_FAMILY


def _ints(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(f"{flag} '{shown(text)}' is not a comma-separated list of whole numbers (e.g. 1,8,64)") from None
    if not values or min(values) < 1:
        raise InputError(f"{flag} '{shown(text)}': give whole numbers, each at least 1 (e.g. 1,8,64)")
    return values


def frontier(model: str = typer.Option(..., "--model", help="catalog model (infersim models)"),
             input_len: Optional[int] = typer.Option(None, "--input-len", help="prompt tokens per request"),
             output_len: Optional[int] = typer.Option(None, "--output-len", help="output tokens per request"),
             trace: Optional[str] = typer.Option(None, "--trace", help="a request trace instead of the lengths (a path, "
                                                 "or the name of a shipped trace as `simulate --trace` takes it): "
                                                 "screened at its mean lengths, each family's frontier then confirmed "
                                                 "by replaying it through the simulator"),
             power_basis: str = typer.Option("rated", "--power-basis", help="tok/s per MW of rated power (the "
                                             "systems' power_w) or facility power (utilisation-dependent draw x PUE, "
                                             "infersim.economics)"),
             max_simulated: int = typer.Option(MAX_SIMULATED_PER_FAMILY, "--max-simulated", help="--trace: replay at most this many "
                                               "frontier points per family (evenly spread over tok/s per user)"),
             jobs: Optional[int] = typer.Option(None, "--jobs", help="--trace: processes replaying the frontier "
                                                "points (default min(4, CPUs), as `sweep`)"),
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
    verdict per interactivity band; with --trace, the frontier points confirmed by trace simulation."""
    from infersim.planner.frontier import run_frontier, to_json
    families = [f.strip() for f in only.split(",") if f.strip()] if only else None
    if out_file is not None:
        out_file.parent.mkdir(parents=True, exist_ok=True)
    res = run_frontier(model, input_len, output_len, trace=trace, batches=_ints(batches, "--batches"),
                       only=families, out=out_file, sensitivity=not no_sensitivity, power_basis=power_basis,
                       max_simulated=max_simulated, jobs=_jobs(jobs))
    summary = _stages_line(res) + (f"; all written to {out_file}" if out_file else "")
    if as_json:
        emit_json(to_json(res))
        err.print(summary, markup=False, highlight=False)
        return
    _print(res)
    out.print(summary, markup=False, highlight=False)


def _jobs(jobs: Optional[int]) -> int:
    from infersim.sweep.runner import default_jobs
    if jobs is None:
        return default_jobs()
    if jobs < 1:
        raise InputError(f"--jobs must be at least 1, got {jobs}")
    return jobs


def _stages_line(res) -> str:
    s = res.stages
    line = (f"screened {res.screened} configurations ({len(res.families)} families) in {s['screen_s']:.1f} s")
    if res.trace is not None:
        capped = sum(f.not_simulated for f in res.families)
        line += (f"; simulated {s['simulated']} frontier points ({s['simulated_requests']:,} trace requests) in "
                 f"{s['simulate_s']:.1f} s ({s['jobs']} process(es))" + (f", {capped} more left unsimulated by --max-simulated" if capped else ""))
    return line + f"; verdicts in {s['verdicts_s']:.1f} s; {res.seconds:.1f} s in all"


def _num(x, fmt=fmt_g) -> str:
    return "—" if x is None else fmt(x)


def _print(res) -> None:
    from infersim.planner.frontier import band_label
    if res.trace is None:
        work = f"{res.input_len} in / {res.output_len} out"
    else:
        work = (f"trace {res.trace.name} ({res.trace.requests:,} requests; screened at its means, {res.input_len} in / "
                f"{res.output_len} out; frontier points confirmed by replaying it closed loop, figures simulated with "
                "the analytical ones in brackets)")
    out.print(f"{res.model}, {work}; tok/s per MW at {res.power_basis} power: {res.power_basis_text}; cost "
              "buying the hardware at the catalog's prices (infersim.economics)", markup=False, highlight=False)
    for f in res.families:
        head = f"{f.name}: {f.description}"
        if f.skipped:
            out.print(f"\n{head}\n  skipped: {f.skipped}", markup=False, highlight=False)
            continue
        out.print()
        out.print(_table(f, head, res.trace is not None))
        notes = [f"{f.screened} screened, {len(f.points)} run"]
        if f.dropped:
            notes.append(f"{f.dropped} dropped (first: {f.first_reason})")
        if res.trace is not None:
            notes.append(f"{len(f.confirmed)} frontier points simulated")
            if f.not_simulated:
                notes.append(f"{f.not_simulated} frontier points not simulated (--max-simulated)")
            if f.no_tpot:
                notes.append(f"{f.no_tpot} replays completed no request with a TPOT")
            under = sum(1 for p in f.confirmed if p.replay.get("underloaded"))
            if under:
                notes.append(f"{under} replays underloaded ('*': the trace has fewer requests than the concurrency)")
        if f.points and not f.frontier:
            notes.append("no frontier: the catalog has no power figure or price for this hardware")
        out.print("  " + "; ".join(notes), markup=False, highlight=False)
    _print_verdicts(res, band_label)


def _table(f, head: str, confirmed: bool) -> Table:
    t = Table(title=Text(head), title_justify="left")
    cols = ["deployment", "batch", "tok/s/user", "output tok/s", "tok/s per MW", "$/Mtok out"]
    cols += ["TTFT p50 ms", "TTFT p99 ms", "users"] if confirmed else []
    for c in cols + ["frontier"]:
        t.add_column(c, justify="left" if c in ("deployment", "frontier") else "right",
                     overflow="fold" if c == "deployment" else "ellipsis")
    mw, cost = {id(p) for p in f.mw_front}, {id(p) for p in f.cost_front}
    cost_fmt = lambda x: f"{x:.3g}"  # noqa: E731
    for p in f.frontier:
        on = "+".join(n for n, s in (("MW", mw), ("cost", cost)) if id(p) in s)
        a = p.analytical

        def cell(attr, fmt=fmt_g):
            v = _num(getattr(p, attr), fmt)
            return v if a is None else f"{v} ({_num(getattr(a, attr), fmt)})"
        row = [Text(p.deployment), str(p.batch), cell("tok_s_per_user"), cell("output_tok_s"), cell("tok_s_per_mw"),
               cell("cost_per_mtok_usd", cost_fmt)]  # labels hold [..]: not rich markup
        if confirmed:
            r = p.replay
            row += [cell("ttft_s", fmt_ms), fmt_ms(r["ttft_p99_s"]),
                    f"{r['concurrency']:,}" + ("*" if r["underloaded"] else "")]
        t.add_row(*row, on)
    return t


def _print_verdicts(res, band_label) -> None:
    out.print("\nVerdicts" + (" (from the simulated points)" if res.trace is not None else ""),
              markup=False, highlight=False)
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
