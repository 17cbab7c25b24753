"""`infersim plan`: the best deployment of a model for a workload, under SLOs, a budget and an
objective, and the runners-up with the reason each lost.

Stages (each timed, `PlanResult.stages_s`):
1. enumerate: every family of planner.families at 1, 2, 4, ... copies of its unit up to the racks
   budget (planner.candidates), each plan built once; plans that do not build, or do not run even at
   batch 1 (the model or one sequence's KV cache does not fit), are counted as not runnable;
2. screen: size each runnable candidate for the workload's offered output tok/s (candidates.size),
   then run the prune checks (planner.bounds: the budget, exact; SLO bounds that queueing cannot
   improve, with a margin), counted by reason;
3. simulate: the best `finalists` survivors by the analytical objective, at most one per family
   until every family that survived has one (diversity: the closed form can rank families wrongly),
   deployments that serve the offered load first; each replays the workload through the serving
   simulator (deployments.run.simulate_plan). Their SLO percentiles, throughput and per-user speed
   are the simulation's; cost per million output tokens is infersim.economics (capex mode, the
   catalog's prices) at the simulated output and input tok/s, the simulated utilisation and the
   analytical prefill share; tok/s per MW is simulated output tok/s over rated power (no PUE);
4. rank: among finalists that meet every SLO, by the objective. `output_tok_s` ranks by capacity:
   the analytical output tok/s at the largest batch that fits (at the workload's own rate every
   deployment that keeps up serves the same tok/s); the SLOs are still checked at that rate.
   Objectives within TIE of each other tie, and the cheaper per Mtok, then the smaller, ranks first.
   Runners-up: the other finalists, each with why it lost, then up to OVER_BUDGET_SHOWN over-budget
   deployments whose analytical objective beats the best (not simulated; the limit each breaks).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from infersim.errors import InputError
from infersim.planner.bounds import DEFAULT_CHECKS, Prune, ScreenContext
from infersim.planner.budget import BUDGET_KEYS, Budget
from infersim.planner.candidates import MAX_BATCH, Candidate, build, enumerate_candidates, size
from infersim.planner.plan_report import TIE, OBJECTIVES, Finalist, decide, rank_key, ratio_worse

DEFAULT_FINALISTS = 8
SWEEP_NAME = "plan"
OVER_BUDGET_SHOWN = 3  # over-budget deployments listed among the runners-up (those that would rank higher)


@dataclass
class PlanResult:
    model: str
    workload: object
    slo: object
    budget: Budget
    objective: str
    best: Optional[Finalist]
    runners_up: list[Finalist]
    screened: int
    not_runnable: int
    pruned: dict[str, int]
    simulated: int
    stages_s: dict[str, float]
    verdict: str
    skipped_families: dict[str, str]


def _analytic(c: Candidate, w, objective: str, catalog, prices) -> Optional[float]:
    """The objective from the sized estimate, serving min(offered, sized) output tok/s."""
    d = c.sized
    served = min(w.offered_output_tok_s, d["output_tok_s"])
    if objective == "tok_s_per_user":
        return d["tok_s_per_user"]
    if objective == "output_tok_s":
        return d["output_tok_s"]
    if objective == "tok_s_per_mw":
        return served / (c.fp.power_w / 1e6) if c.fp.power_w else None
    return _cost(c, served, served * w.mean_input / w.mean_output, served / d["output_tok_s"], d["prefill_share"],
                 catalog, prices)


def _cost(c: Candidate, out_tok_s, in_tok_s, utilisation, prefill_share, catalog, prices) -> Optional[float]:
    from infersim.economics import Throughput, plan_economics
    if not out_tok_s or out_tok_s <= 0:
        return None
    try:
        t = Throughput(out_tok_s, in_tok_s, min(1.0, max(0.0, utilisation)), min(1.0, max(0.0, prefill_share)))
        return plan_economics(c.plan, t, catalog, prices, "capex").cost_per_mtok_output_usd
    except InputError:
        return None


def pick_finalists(cands: list[Candidate], scores: dict[int, Optional[float]], objective: str, k: int) -> list[Candidate]:
    """Up to `k`: serving the offered load first, then the analytical objective; one per family
    (best first) before any family gets a second."""
    better = OBJECTIVES[objective][1]
    def rank(c):
        v = scores[id(c)]
        return (not c.serves, v is None, 0.0 if v is None else (v if better == "min" else -v), c.racks)
    ordered = sorted(cands, key=rank)
    firsts, seen = [], set()
    for c in ordered:
        if c.family not in seen:
            seen.add(c.family)
            firsts.append(c)
    chosen = firsts[:k]
    rest = [c for c in ordered if c not in chosen]
    return chosen + rest[:max(0, k - len(chosen))]


def _slo_figures(summary: dict, slo) -> dict:
    out = {}
    for t in (slo.targets if slo else ()):
        got = summary["slo"][t.key]
        if t.is_rate:
            v, target, unit = got["value_tok_s"], t.tok_s, "tok/s"
            factor = math.inf if not v else target / v
        else:
            v, target, unit = got["value_s"], t.seconds, "s"
            factor = math.inf if v is None else v / target
        out[t.key] = {"value": v, "target": target, "unit": unit, "met": bool(got["met"]), "factor": factor}
    return out


def simulate_finalist(c: Candidate, w, slo, catalog, prices) -> Finalist:
    """Replay the workload through `c`'s plan (module docstring, stage 3)."""
    import numpy as np
    from infersim.deployments.run import simulate_plan
    f = Finalist(c)
    try:
        res = simulate_plan(c.plan, w.requests, slo=slo)
    except InputError as e:
        f.error = f"simulation refused it: {e}"
        return f
    s = f.summary = res.summary
    tpot = res.records.tpot_s()
    tpot = tpot[~np.isnan(tpot)]
    f.tok_s_per_user = float(np.percentile(1.0 / tpot, 50)) if tpot.size else None
    f.output_tok_s = s["output_tok_s"]
    f.tok_s_per_mw = f.output_tok_s / (c.fp.power_w / 1e6) if c.fp.power_w else None
    util = s.get("utilisation")
    f.cost_per_mtok_usd = _cost(c, f.output_tok_s, s["input_tok_s"], util if isinstance(util, float) else 1.0,
                                c.sized["prefill_share"], catalog, prices)
    f.capacity_tok_s = capacity(c, w)
    f.slo = _slo_figures(s, slo)
    if s.get("requests_completed", 0) < s.get("requests_injected", 0):
        f.slo["completed"] = {"value": s["requests_completed"], "target": s["requests_injected"], "unit": "requests",
                              "met": False, "factor": s["requests_injected"] / max(s["requests_completed"], 1)}
    return f


def capacity(c: Candidate, w) -> float:
    """Analytical output tok/s at the largest batch (1, 2, 4, ... MAX_BATCH) whose KV cache fits."""
    from infersim.estimate import estimate_plan
    best, b = c.sized["output_tok_s"], c.batch
    while b * 2 <= MAX_BATCH:
        b *= 2
        try:
            best = max(best, estimate_plan(c.plan, batch=b, input_len=w.input_len, output_len=w.output_len)["output_tok_s"])
        except InputError:
            break
    return best


def run_plan(model: str, workload, slo, budget: Budget, objective: str = "cost_per_mtok", *,
             finalists: int = DEFAULT_FINALISTS, only: Optional[list[str]] = None, checks=DEFAULT_CHECKS,
             out: Optional[str | Path] = None) -> PlanResult:
    """Plan `model` for `workload` (plan_workload.PlanWorkload) under `slo` (serving.metrics.SLO or
    None) and `budget`, best by `objective` (OBJECTIVES); see the module docstring."""
    from infersim.calibration.efficiency import load_calibration
    from infersim.catalog.hardware import load_catalog
    from infersim.catalog.models import load_model
    from infersim.economics import load_prices
    if objective not in OBJECTIVES:
        raise InputError(f"--objective '{objective}' is unknown; choose one of {', '.join(OBJECTIVES)}")
    if not isinstance(finalists, int) or finalists < 1:
        raise InputError(f"--finalists must be a whole number, at least 1; got {finalists}")
    stages: dict[str, float] = {}
    t0 = time.perf_counter()
    arch = load_model(model)
    catalog, calibration, prices = load_catalog(), load_calibration(None), load_prices()
    cands, skipped = enumerate_candidates(arch, catalog, calibration, budget, only)
    for c in cands:
        build(c, arch, catalog, calibration, prices)
        if c.error is None:
            size(c, workload.input_len, workload.output_len, workload.offered_output_tok_s)
    runnable = [c for c in cands if c.error is None]
    stages["enumerate_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    if not runnable:
        first = next((c for c in cands), None)
        raise InputError(f"no deployment family runs {arch.name} at {workload.input_len} in / {workload.output_len} "
                         f"out" + (f" (e.g. {first.label}: {first.error})" if first else ""))
    pruned: dict[str, int] = {}
    prunes: dict[int, Prune] = {}
    alive = list(runnable)
    ctx = ScreenContext(workload, slo, budget)
    for check in checks:
        verdicts = check(alive, ctx)
        keep = []
        for c, p in zip(alive, verdicts):
            if p is None:
                keep.append(c)
            else:
                prunes[id(c)] = p
                pruned[p.kind] = pruned.get(p.kind, 0) + 1
        alive = keep
    if sum(n for k, n in pruned.items() if k.startswith("budget:")) == len(runnable):
        raise InputError(_nothing_fits(arch.name, budget, runnable))
    scores = {id(c): _analytic(c, workload, objective, catalog, prices) for c in alive}
    chosen = pick_finalists(alive, scores, objective, finalists)
    stages["screen_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    done = [simulate_finalist(c, workload, slo, catalog, prices) for c in chosen]
    stages["simulate_s"] = time.perf_counter() - t2
    t3 = time.perf_counter()
    best, runners, verdict = decide(done, objective, [(c, prunes[id(c)]) for c in runnable if id(c) in prunes
                                                      and not prunes[id(c)].kind.startswith("budget:")])
    runners += _over_budget(runnable, prunes, workload, objective, catalog, prices, best)
    if out is not None:
        _write(out, arch.name, workload, cands)
    stages["rank_s"] = time.perf_counter() - t3
    stages["total_s"] = time.perf_counter() - t0
    return PlanResult(arch.name, workload, slo, budget, objective, best, runners, len(cands),
                      len(cands) - len(runnable), pruned, len(done), stages, verdict, skipped)


def _over_budget(runnable, prunes, w, objective: str, catalog, prices, best) -> list[Finalist]:
    """Up to OVER_BUDGET_SHOWN over-budget candidates whose analytical objective beats the best's by
    more than a tie (or any, without a best), with their analytical figures and the limit each breaks."""
    over = [c for c in runnable if id(c) in prunes and prunes[id(c)].kind.startswith("budget:")]
    shown = []
    for c in over:
        v = _analytic(c, w, objective, catalog, prices)
        f = Finalist(c, tok_s_per_user=c.sized["tok_s_per_user"], output_tok_s=min(w.offered_output_tok_s,
                     c.sized["output_tok_s"]), capacity_tok_s=c.sized["output_tok_s"], simulated=False,
                     reason=f"over budget: {prunes[id(c)].detail} (not simulated: analytical figures)")
        f.tok_s_per_mw = f.output_tok_s / (c.fp.power_w / 1e6) if c.fp.power_w else None
        setattr(f, OBJECTIVES[objective][0], v)
        ahead = best is None or (ratio_worse(best, f, objective) or 0.0) > 1 + TIE
        if v is not None and ahead:
            shown.append(f)
    return sorted(shown, key=rank_key(objective))[:OVER_BUDGET_SHOWN]


def _nothing_fits(model: str, budget: Budget, runnable: list[Candidate]) -> str:
    """'nothing fits in racks=2: the smallest feasible deployment of M needs 3 racks (label)'."""
    key = next(k for k in BUDGET_KEYS if getattr(budget, k) is not None)
    unit = BUDGET_KEYS[key][1]
    priced = [c for c in runnable if c.fp.value(key) is not None]
    if not priced:
        return f"nothing fits in {budget}: no runnable deployment of {model} has a catalog price to check it against"
    c = min(priced, key=lambda c: c.fp.value(key))
    return (f"nothing fits in {budget}: the smallest feasible deployment of {model} needs {c.fp.value(key):.4g} "
            f"{unit} ({c.label}); raise --budget {key}")


def _write(out, model: str, w, cands: list[Candidate]) -> None:
    """Every screened candidate into the DuckDB `results` table, at its sized batch (batch 1 for one
    that does not run: an `infeasible` row with the reason), with the frontier's / sweep's config_id
    scheme (sweep.evaluate.estimate_config of the same body)."""
    from infersim.deployments.spec import DeploymentSpec, check_spec
    from infersim.sweep.evaluate import estimate_config
    from infersim.sweep.spec import LABELS, config_id
    from infersim.sweep.store import ResultStore, config_columns
    store = ResultStore(out)
    try:
        rows = []
        for c in cands:
            spec = check_spec(DeploymentSpec.model_validate({"name": c.label, **c.deployment}), c.label)
            body = {"model": model, "deployment": spec.model_dump(mode="json", exclude=set(LABELS)),
                    "workload": {"input_len": w.input_len, "output_len": w.output_len, "trace": w.trace},
                    "load": {"kind": "batch", "value": c.batch or 1}}
            cid = config_id(body)
            rows.append({**config_columns(cid, SWEEP_NAME, c.label, body), **estimate_config(body)})
        store.write(rows)
    finally:
        store.close()
