"""`infersim plan --model M (--trace NAME | --input-len N --output-len N --rate R) --slo ... --budget ...`
(registered in cli/main.py). The work is in infersim/planner/plan.py; this module parses options
and prints."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table
from rich.text import Text

from infersim.cli.common import emit_json, fmt_g, out
from infersim.errors import InputError


def plan(model: str = typer.Option(..., "--model", help="catalog model (infersim models)"),
         trace: Optional[str] = typer.Option(None, "--trace", help="request trace: a file, or a shipped trace's name"),
         input_len: Optional[int] = typer.Option(None, "--input-len", help="synthetic: prompt tokens per request"),
         output_len: Optional[int] = typer.Option(None, "--output-len", help="synthetic: output tokens per request"),
         rate: Optional[float] = typer.Option(None, "--rate", help="synthetic: Poisson arrivals, requests/s"),
         rate_scale: Optional[float] = typer.Option(None, "--rate-scale", help="trace: divide its arrival times by "
                                                    "this (> 1 = more traffic than recorded)"),
         requests: Optional[int] = typer.Option(None, "--requests", help="trace: simulate its first N requests; "
                                                "synthetic: N requests (default 1000)"),
         slo: Optional[str] = typer.Option(None, "--slo", help="targets, e.g. ttft_p99=2s,tok_s_per_user_p50=500 "
                                           "(ttft/tpot/itl/e2e _p50.._p999 or _mean in s/ms/us; "
                                           "tok_s_per_user_p50/p10/p5/p1 in tok/s)"),
         budget: Optional[str] = typer.Option(None, "--budget", help="limits: racks=N, usd_per_hour=X (capex "
                                              "amortised + power), mw=X (rated IT power), capex_usd=X"),
         objective: str = typer.Option("cost_per_mtok", "--objective", help="cost_per_mtok, tok_s_per_mw, "
                                       "output_tok_s or tok_s_per_user"),
         finalists: int = typer.Option(8, "--finalists", help="deployments confirmed by simulation"),
         only: Optional[str] = typer.Option(None, "--families", help="only these families, comma-separated"),
         out_file: Optional[Path] = typer.Option(None, "--out", help="also write every screened configuration "
                                                 "(at its sized batch) to this DuckDB file's `results` table"),
         as_json: bool = typer.Option(False, "--json", help="print the result as JSON")):
    """The best deployment of a model for a workload under SLOs, a budget and an objective: every
    family screened analytically, the best finalists confirmed by simulating the workload, runners-up
    with the reason each lost. Exit code 0 also when no deployment meets the SLOs (the verdict says
    so, and which came closest)."""
    from infersim.planner.budget import parse_budget
    from infersim.planner.plan import run_plan
    from infersim.planner.plan_report import to_json
    from infersim.planner.plan_workload import plan_workload
    from infersim.serving.metrics import parse_slo
    targets, limits = parse_slo(slo), parse_budget(budget)
    if finalists < 1:
        raise InputError(f"--finalists must be at least 1; got {finalists}")
    workload = plan_workload(trace, input_len=input_len, output_len=output_len, rate=rate, requests=requests,
                             rate_scale=rate_scale)
    families = [f.strip() for f in only.split(",") if f.strip()] if only else None
    if out_file is not None:
        from infersim.sweep.store import check_results_file
        check_results_file(out_file)
        out_file.parent.mkdir(parents=True, exist_ok=True)
    res = run_plan(model, workload, targets, limits, objective, finalists=finalists, only=families, out=out_file)
    if as_json:
        emit_json(to_json(res))
        return
    _print(res, out_file)


def _num(x, fmt=fmt_g) -> str:
    return "—" if x is None else fmt(x)


def _say(text: str = "") -> None:
    out.print(text, markup=False, highlight=False)


def _print(res, out_file) -> None:
    from infersim.planner.plan_report import OBJECTIVES
    w = res.workload
    _say(f"{res.model} on {w.name}: simulated {w.window}; mean {w.mean_input:.0f} in / {w.mean_output:.0f} out, "
         f"offered {w.offered_req_s:.3g} req/s = {w.offered_output_tok_s:.4g} output tok/s")
    _say(f"SLO {res.slo or 'none'}; budget {res.budget or 'none'}; objective {res.objective} "
         f"({OBJECTIVES[res.objective][2]}); cost buys the hardware at the catalog's prices, tok/s per MW at rated "
         "power (no PUE)")
    t = Table(title=Text("simulated finalists (best first)"), title_justify="left")
    for c in ("deployment", "racks", "tok/s/user p50", "output tok/s", "$/Mtok out", "tok/s per MW", "SLO", "why not"):
        t.add_column(c, justify="left" if c in ("deployment", "SLO", "why not") else "right")
    for f in ([res.best] if res.best else []) + res.runners_up:
        slo = ", ".join(f"{k} {_fig(v)}" for k, v in f.slo.items())
        t.add_row(Text(f.cand.label), _num(f.cand.fp.racks), _num(f.tok_s_per_user), _num(f.output_tok_s),
                  _num(f.cost_per_mtok_usd, lambda x: f"{x:.3g}"), _num(f.tok_s_per_mw), Text(slo),
                  Text("BEST" if f is res.best else f.reason or ""))
    _say()
    out.print(t)
    _say(f"\nverdict: {res.verdict}")
    if res.best is not None:
        _say(f"best deployment ({res.best.cand.label}): {res.best.cand.deployment}")
    pruned = ", ".join(f"{k} {n}" for k, n in sorted(res.pruned.items())) or "none"
    stages = ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in res.stages_s.items())
    _say(f"screened {res.screened} configurations ({res.not_runnable} do not run: the model or one sequence does not "
         f"fit); pruned: {pruned}; simulated {res.simulated}; {stages}"
         + (f"; all written to {out_file}" if out_file else ""))
    for name, why in res.skipped_families.items():
        _say(f"  family {name} skipped: {why}")


def _fig(v: dict) -> str:
    from infersim.planner.plan_report import fmt_value
    return f"{fmt_value(v['value'], v['unit'])}{'' if v['met'] else ' MISS'}"
