"""`infersim frontier`: every deployment family for one model and workload, across load, reduced
to each family's Pareto frontier and a verdict per interactivity band.

Screening is analytical: each (deployment, batch) configuration is one `estimate` of the plan at
that many sequences per decode replica (sweep.evaluate.estimate_config: estimate.estimate_plan and
infersim.economics at the catalog's prices, buying the hardware). The workload is either fixed
lengths (`input_len`, `output_len`) or a trace, screened at its mean lengths (sweep.spec's trace
workload: the rows' `trace` column names it). tok/s per MW is output tokens/s over the plan's power
on one of two bases (`POWER_BASES`): `rated`, the systems' catalog power_w (no PUE, full draw), which
compares hardware, or `facility`, infersim.economics' utilisation-dependent draw x PUE (analytical
points run at full load; confirmed points at their simulated utilisation). Configurations that
cannot run (the model or the batch's KV cache does not fit, a precision the chip lacks, ...) are
dropped and counted per family with the first reason.

With a trace, each family's frontier points are then confirmed by replaying the trace through the
serving simulator (planner/confirm.py), the fronts and verdicts recomputed from the confirmed
points alone; the analytical figures stay alongside (`Point.analytical`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

from infersim.errors import InputError, shown
from infersim.planner.confirm import (EVALUATION, MAX_SIMULATED_PER_FAMILY, TraceWorkload, load_trace, pick,
                                      replay_all, store_body, task_of)
from infersim.planner.families import Family, families
from infersim.planner.pareto import pareto_front
from infersim.interactivity import BAND_NAMES
from infersim.planner.verdict import OBJECTIVES, Verdict, decide, margin, margin_swings

DEFAULT_BATCHES = tuple(2 ** i for i in range(10))  # 1 .. 512 sequences per decode replica
POWER_BASES = {"rated": "rated power (the systems' catalog power_w; no PUE, full draw)",
               "facility": "facility power (infersim.economics: utilisation-dependent draw x PUE; analytical "
                           "points at full load, confirmed points at their simulated utilisation)"}
SENSITIVE_TOP = 3
SWEEP_NAME = "frontier"
CONFIRM_SWEEP_NAME = "frontier-simulated"  # the `sweep` column of confirmed points' rows


@dataclass
class Point:
    """One evaluated configuration that runs. Units: tok/s per user (decode), output tok/s of the
    whole deployment, output tok/s per MW (of the run's power basis), USD per million output tokens
    (None: a system without a price or power figure), TTFT in seconds (p50 when simulated).
    `evaluation` is `analytical` or `trace-simulation`; a confirmed point keeps its screened twin
    in `analytical` and its replay (concurrency, requests, underloaded, utilisation, TTFT p99) in
    `replay`; `config_id` is its row's in the results store."""
    family: str
    deployment: str
    batch: int
    tok_s_per_user: float
    output_tok_s: float
    tok_s_per_mw: Optional[float]
    cost_per_mtok_usd: Optional[float]
    body: dict = field(repr=False, default_factory=dict)
    config_id: str = ""
    ttft_s: Optional[float] = None
    evaluation: str = "analytical"
    analytical: Optional["Point"] = field(repr=False, default=None)
    replay: dict = field(default_factory=dict)


def fronts(points: list[Point]) -> tuple[list[Point], list[Point]]:
    """(tok/s per MW front, cost front) of `points`, each against tok/s per user."""
    per_user = (lambda p: p.tok_s_per_user, "max")
    return (pareto_front(points, [per_user, (lambda p: p.tok_s_per_mw, "max")]),
            pareto_front(points, [per_user, (lambda p: p.cost_per_mtok_usd, "min")]))


def on_either(mw_front: list[Point], cost_front: list[Point]) -> list[Point]:
    """Points on either front, once each, by tok/s per user."""
    seen, out = set(), []
    for p in mw_front + cost_front:
        if id(p) not in seen:
            seen.add(id(p))
            out.append(p)
    return sorted(out, key=lambda p: p.tok_s_per_user)


@dataclass
class FamilyResult:
    name: str
    description: str
    points: list[Point]               # every configuration that runs (analytical)
    mw_front: list[Point]             # Pareto: max tok/s per user, max tok/s per MW (confirmed ones with a trace)
    cost_front: list[Point]           # Pareto: max tok/s per user, min cost per Mtok (confirmed ones with a trace)
    screened: int = 0
    dropped: int = 0
    first_reason: Optional[str] = None
    skipped: Optional[str] = None
    confirmed: list[Point] = field(default_factory=list)   # trace replays of the analytical frontier
    not_simulated: int = 0            # analytical frontier points past the per-family bound
    no_tpot: int = 0                  # replays that completed no request with a TPOT

    @property
    def frontier(self) -> list[Point]:
        """Points on either frontier, by tok/s per user."""
        return on_either(self.mw_front, self.cost_front)


@dataclass
class FrontierResult:
    model: str
    input_len: int
    output_len: int
    families: list[FamilyResult]
    verdicts: list[Verdict]
    screened: int
    seconds: float
    power_basis: str = "rated"
    trace: Optional[TraceWorkload] = None
    stages: dict = field(default_factory=dict)  # seconds per stage and counts

    @property
    def power_basis_text(self) -> str:
        return POWER_BASES[self.power_basis]


def _bodies(fam: Family, model: str, workload: dict, batches) -> list:
    """SweepConfigs of a family's deployments at every batch: the same canonical bodies and ids as
    `infersim sweep` (a frontier row and a sweep row of one configuration share its config_id)."""
    from infersim.deployments.spec import DeploymentSpec, check_spec
    from infersim.sweep.spec import LABELS, SweepConfig, config_id
    out = []
    for label, dep in fam.deployments:
        spec = check_spec(DeploymentSpec.model_validate({"name": label, **dep}), label)
        canon = spec.model_dump(mode="json", exclude=set(LABELS))
        for b in batches:
            body = {"model": model, "deployment": canon, "workload": dict(workload),
                    "load": {"kind": "batch", "value": b}}
            out.append(SweepConfig(config_id(body), label, body))
    return out


def _check(input_len, output_len, trace, batches, power_basis, max_simulated) -> None:
    lengths = input_len is not None or output_len is not None
    if (trace is not None) == lengths:
        raise InputError("give exactly one workload: --trace FILE (its lengths), or --input-len N and --output-len N"
                         + (", not both" if lengths else ""))
    if trace is None:
        if input_len is None or output_len is None:
            raise InputError("give both --input-len and --output-len (tokens per request), or --trace FILE instead")
        for flag, v in (("--input-len", input_len), ("--output-len", output_len)):
            if not isinstance(v, int) or v < 1:
                raise InputError(f"{flag} must be a whole number of tokens, at least 1; got {v}")
    if not batches or any(not isinstance(b, int) or b < 1 for b in batches):
        raise InputError(f"--batches must be whole numbers, each at least 1; got {list(batches)}")
    if power_basis not in POWER_BASES:
        raise InputError(f"unknown --power-basis '{shown(power_basis)}'; choose {' or '.join(POWER_BASES)}")
    if max_simulated is not None and (not isinstance(max_simulated, int) or max_simulated < 1):
        raise InputError(f"--max-simulated must be a whole number of points per family, at least 1; got {max_simulated}")


class _Plans:
    """Plans of the screened bodies, built once per deployment, and the economics inputs."""

    def __init__(self, arch, catalog, calibration):
        from infersim.economics import load_prices
        self.arch, self.catalog, self.calibration, self.prices = arch, catalog, calibration, load_prices()
        self._built: dict[str, object] = {}

    def of(self, body: dict):
        from infersim.deployments.spec import DeploymentSpec
        from infersim.modes import build_plan
        from infersim.sweep.spec import canonical_json
        key = canonical_json(body["deployment"])
        if key not in self._built:
            spec = DeploymentSpec.model_validate({"name": SWEEP_NAME, **body["deployment"]})
            self._built[key] = build_plan(spec, self.arch, self.catalog, self.calibration)
        return self._built[key]

    def all_output(self, body: dict, output_tok_s: float, utilisation: float):
        """economics.plan_economics of the plan serving `output_tok_s` at `utilisation`, every cost
        charged to output tokens (no input tokens, prefill share 0): the basis of a confirmed
        point's cost, and its facility power; None where the hardware has no price (plan_economics
        needs one)."""
        from infersim.economics import Throughput, plan_economics
        try:
            return plan_economics(self.of(body), Throughput(output_tok_s, 0.0, utilisation, 0.0), self.catalog,
                                  self.prices, "capex")
        except InputError:
            return None

    def facility_per_mw(self, body: dict, output_tok_s: float, utilisation: float) -> Optional[float]:
        """Output tok/s per MW of facility power (economics: draw at `utilisation` x PUE); None
        without a price."""
        e = self.all_output(body, output_tok_s, utilisation)
        return None if e is None else e.output_tok_s_per_facility_mw


def run_frontier(model: str, input_len: Optional[int] = None, output_len: Optional[int] = None, *,
                 trace: Optional[str | Path] = None, batches=DEFAULT_BATCHES, only: Optional[list[str]] = None,
                 out: Optional[str | Path] = None, sensitivity: bool = True, power_basis: str = "rated",
                 max_simulated: Optional[int] = MAX_SIMULATED_PER_FAMILY, jobs: int = 1) -> FrontierResult:
    """Screen every family (or the ones named in `only`) for `model` at `input_len` / `output_len`
    tokens, or at the mean lengths of `trace` (then confirm each family's frontier by replaying it,
    at most `max_simulated` points per family, None: all; in `jobs` processes), and `batches` sequences per decode
    replica; `out` also writes every evaluated configuration (feasible or not, and each confirmed
    replay) to that DuckDB file's `results` table (sweep.store)."""
    from infersim.calibration.efficiency import load_calibration
    from infersim.catalog.hardware import load_catalog
    from infersim.catalog.models import load_model
    from infersim.sweep.evaluate import estimate_config
    _check(input_len, output_len, trace, batches, power_basis, max_simulated)
    start, cpu = time.perf_counter(), time.process_time()
    arch = load_model(model)
    tw = load_trace(trace) if trace is not None else None
    workload = tw.body() if tw is not None else {"input_len": input_len, "output_len": output_len, "trace": None}
    catalog, calibration = load_catalog(), load_calibration(None)
    fams = families(arch, catalog, calibration)
    if only:
        unknown = sorted(set(only) - {f.name for f in fams})
        if unknown:
            raise InputError(f"unknown family '{unknown[0]}'; choose from {', '.join(f.name for f in fams)}")
        fams = [f for f in fams if f.name in only]
    plans = _Plans(arch, catalog, calibration)
    store = _store(out)
    results, screened, stages = [], 0, {}
    try:
        for fam in fams:
            configs = _bodies(fam, arch.name, workload, sorted(set(batches)))
            rows = [(c, estimate_config(c.body)) for c in configs]
            screened += len(rows)
            if store is not None:
                from infersim.sweep.store import config_columns
                store.write([{**config_columns(c.config_id, SWEEP_NAME, c.name, c.body), **r} for c, r in rows])
            results.append(_family_result(fam, rows, plans, power_basis))
        stages["screen_s"], stages["screen_cpu_s"] = time.perf_counter() - start, time.process_time() - cpu
        if tw is not None:
            t = time.perf_counter()
            stages.update(_confirm(results, plans, tw, store, max_simulated, power_basis, jobs),
                          simulate_s=time.perf_counter() - t)
    finally:
        if store is not None:
            store.close()
    t, cpu = time.perf_counter(), time.process_time()
    points = [p for f in results for p in (f.confirmed if tw is not None else f.points)]
    verdicts = [decide(points, band, obj) for obj in OBJECTIVES for band in BAND_NAMES]
    if sensitivity:
        for v in verdicts:
            _sensitivity(v, arch, workload["input_len"], workload["output_len"], catalog, calibration)
    stages["verdicts_s"], stages["verdicts_cpu_s"] = time.perf_counter() - t, time.process_time() - cpu
    stages["screened"] = screened
    return FrontierResult(arch.name, workload["input_len"], workload["output_len"], results, verdicts, screened,
                          time.perf_counter() - start, power_basis, tw, stages)


def _store(out):
    if out is None:
        return None
    from infersim.sweep.store import ResultStore
    return ResultStore(out)


def _family_result(fam: Family, rows, plans: _Plans, power_basis: str) -> FamilyResult:
    points, dropped, reason = [], 0, None
    for c, r in rows:
        if r["status"] != "ok":
            dropped += 1
            reason = reason or f"{c.name} at batch {r['batch'] or c.body['load']['value']}: {r['error']}"
            continue
        per_mw = (r["tok_s_per_mw"] if power_basis == "rated"
                  else plans.facility_per_mw(c.body, r["output_tok_s"], 1.0))  # steady state: full load
        points.append(Point(fam.name, c.name, r["batch"], r["tok_s_per_user"], r["output_tok_s"], per_mw,
                            r["cost_per_mtok_output_usd"], c.body, config_id=c.config_id, ttft_s=r["ttft_s"]))
    mw, cost = fronts(points)
    return FamilyResult(fam.name, fam.description, points, mw, cost, screened=len(rows), dropped=dropped,
                        first_reason=reason, skipped=fam.skipped)


def _confirmed_point(screened: Point, fig: dict) -> Point:
    keep = ("concurrency", "requests", "underloaded", "utilisation", "ttft_p99_s")
    return Point(screened.family, screened.deployment, screened.batch, fig["tok_s_per_user"], fig["output_tok_s"],
                 fig["tok_s_per_mw"], fig["cost_per_mtok_usd"], screened.body, ttft_s=fig["ttft_s"],
                 evaluation=EVALUATION, analytical=screened, replay={k: fig[k] for k in keep})


def _confirm(results: list[FamilyResult], plans: _Plans, tw: TraceWorkload, store, most, basis: str,
             jobs: int) -> dict:
    """Replay every family's analytical frontier (at most `most` points each), write each replay's
    row, and put the fronts of the confirmed points in place of the analytical ones. Returns the
    stage's counts."""
    from infersim.sweep.spec import config_id
    from infersim.sweep.store import config_columns
    chosen = []
    for f in results:
        picked = pick(f.frontier, most)
        f.not_simulated = len(f.frontier) - len(picked)
        for p in picked:
            # the screened twin's cost on the confirmed points' basis (all hardware charged to output)
            e = plans.all_output(p.body, p.output_tok_s, 1.0)
            chosen.append((f, replace(p, cost_per_mtok_usd=None if e is None else e.cost_per_mtok_output_usd)))
    figures = replay_all([task_of(p, tw, basis) for _, p in chosen], jobs)
    rows = []
    for (f, p), fig in zip(chosen, figures):
        if not fig["ok"]:
            f.no_tpot += 1
            continue
        cp = _confirmed_point(p, fig)
        body = store_body(p, tw, fig)
        cp.config_id = config_id(body)
        f.confirmed.append(cp)
        rows.append({**config_columns(cp.config_id, CONFIRM_SWEEP_NAME, p.deployment, body),
                     "tok_s_per_user": cp.tok_s_per_user, "output_tok_s": cp.output_tok_s, "ttft_s": cp.ttft_s,
                     "tpot_s": fig["tpot_s"], "racks": plans.of(p.body).total_racks, "power_w": fig["power_w"],
                     "tok_s_per_mw": fig["rated_tok_s_per_mw"], "cost_per_mtok_output_usd": cp.cost_per_mtok_usd,
                     "cost_per_mtok_input_usd": None, "output_tok_per_usd": fig["output_tok_per_usd"],
                     "batch": p.batch, "status": "ok", "error": None})
    if store is not None:
        store.write(rows)
    for f in results:
        f.mw_front, f.cost_front = fronts(f.confirmed)
    return {"simulated": len(figures), "simulated_requests": sum(fig["requests"] for fig in figures),
            "simulated_cpu_s": sum(fig["cpu_s"] for fig in figures), "jobs": jobs}


def _rows(point: Point, metric: str, input_len: int, output_len: int, catalog, calibration):
    """deployments.sensitivity of one point: (baseline, {input: (low, high, metric_low, metric_high)})."""
    from infersim.deployments.sensitivity import sensitivity
    from infersim.deployments.spec import DeploymentSpec
    spec = DeploymentSpec.model_validate({"name": point.deployment, **point.body["deployment"]})
    rep = sensitivity(spec, point.body["model"], metric=metric, batch=point.batch, input_len=input_len,
                      output_len=output_len, catalog=catalog, calibration=calibration)
    return rep.baseline, {r.name: (r.low, r.high, r.metric_low, r.metric_high) for r in rep.rows}


def _sensitivity(v: Verdict, arch, input_len: int, output_len: int, catalog, calibration) -> None:
    """The inputs that move the margin between the band's two leading families most (each swept
    to the ends of its range with deployments.sensitivity, both deployments at once where they
    share it); the top SENSITIVE_TOP go to `v.sensitive_to`, `v.flips` says if one hands the band
    to the runner-up. The sweeps are analytical: for confirmed (simulated) points each input's
    effect on the analytical margin is applied to the confirmed margin as a ratio (an
    assumption: the simulation moves as the steady state does), and the lines say so."""
    if v.runner_up is None:
        return
    metric = {"tok_s_per_mw": "tok_s_per_mw", "cost_per_mtok_usd": "cost_per_mtok_output_usd"}[v.objective]
    try:
        wb, wr = _rows(v.winner_point, metric, input_len, output_len, catalog, calibration)
        rb, rr = _rows(v.runner_up_point, metric, input_len, output_len, catalog, calibration)
    except InputError as e:
        v.sensitive_to = [f"sensitivity not computed: {e}"]
        return
    swings = margin_swings(wr, rr, wb, rb, v.objective)
    base = v.margin
    suffix = ""
    if v.winner_point.evaluation != "analytical" and wb and rb:
        scale = base / margin(wb, rb, v.objective)
        for sw in swings:
            sw.margin_low = None if sw.margin_low is None else sw.margin_low * scale
            sw.margin_high = None if sw.margin_high is None else sw.margin_high * scale
        swings.sort(key=lambda sw: -sw.effect(base))
        suffix = " [analytical effect on the simulated margin]"
    v.sensitive_to = [sw.line(base) + suffix for sw in swings[:SENSITIVE_TOP]]
    v.flips = any(sw.flips for sw in swings)


KEYS = ("deployment", "tok_s_per_user", "tok_s_per_mw", "cost_per_mtok_usd", "output_tok_s", "batch", "ttft_s",
        "config_id", "evaluation")


def _point_json(p: Point) -> dict:
    d = {k: getattr(p, k) for k in KEYS}
    if p.analytical is not None:
        d.update(p.replay)
        d["analytical"] = {k: getattr(p.analytical, k) for k in KEYS if k not in ("deployment", "batch", "evaluation")}
    return d


def to_json(res: FrontierResult) -> dict:
    """The issue's schema: families with their frontier points, and one verdict per band and
    objective (the band label names the objective: '50-150 tok/s/user, tok/s per MW'); plus the
    power basis, the workload and the stages (counts and seconds). With a trace the points are the
    confirmed ones (simulated figures; `ttft_p99_s`, the replay's `concurrency`, `requests`,
    `underloaded`, `utilisation`), each with its screened twin under `analytical`."""
    t = res.trace
    workload = {"input_len": res.input_len, "output_len": res.output_len,
                "trace": None if t is None else t.name, "trace_requests": None if t is None else t.requests}
    return {"power_basis": res.power_basis, "power_basis_description": res.power_basis_text,
            "workload": workload, "stages": {**res.stages, "total_s": res.seconds},
            "families": [{"family": f.name, "points": [_point_json(p) for p in f.frontier]} for f in res.families],
            "verdicts": [{"band": band_label(v), "winner": v.winner, "margin": v.margin,
                          "sensitive_to": v.sensitive_to, "runner_up": v.runner_up, "flips": v.flips,
                          "winner_deployment": getattr(v.winner_point, "deployment", None),
                          "winner_batch": getattr(v.winner_point, "batch", None)} for v in res.verdicts]}


def band_label(v: Verdict) -> str:
    return f"{v.band} tok/s/user, {OBJECTIVES[v.objective][2]}"
