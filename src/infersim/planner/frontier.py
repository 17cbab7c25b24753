"""`infersim frontier`: every deployment family for one model and workload, across load, reduced
to each family's Pareto frontier and a verdict per interactivity band.

Screening is analytical: each (deployment, batch) configuration is one `estimate` of the plan at
that many sequences per decode replica (sweep.evaluate.estimate_config: estimate.estimate_plan and
infersim.economics at the catalog's prices, buying the hardware). tok/s per MW is output tokens/s
over the plan's *rated* power (the systems' catalog power_w, no PUE, no utilisation-dependent
draw), so it compares hardware, not facilities. Configurations that cannot run (the model or the
batch's KV cache does not fit, a precision the chip lacks, ...) are dropped and counted per
family with the first reason. No trace simulation confirms finalists yet (issue 11's `plan`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from infersim.errors import InputError
from infersim.planner.families import Family, families
from infersim.planner.pareto import pareto_front
from infersim.interactivity import BAND_NAMES
from infersim.planner.verdict import OBJECTIVES, Verdict, decide, margin_swings

DEFAULT_BATCHES = tuple(2 ** i for i in range(10))  # 1 .. 512 sequences per decode replica
POWER_BASIS = "rated power (catalog power_w of the systems; no PUE)"
SENSITIVE_TOP = 3
SWEEP_NAME = "frontier"


@dataclass
class Point:
    """One evaluated configuration that runs. Units: tok/s per user (decode), output tok/s of the
    whole deployment, output tok/s per MW of rated power, USD per million output tokens (None: a
    system without a price or power figure)."""
    family: str
    deployment: str
    batch: int
    tok_s_per_user: float
    output_tok_s: float
    tok_s_per_mw: Optional[float]
    cost_per_mtok_usd: Optional[float]
    body: dict = field(repr=False, default_factory=dict)


@dataclass
class FamilyResult:
    name: str
    description: str
    points: list[Point]               # every configuration that runs
    mw_front: list[Point]             # Pareto: max tok/s per user, max tok/s per MW
    cost_front: list[Point]           # Pareto: max tok/s per user, min cost per Mtok
    screened: int = 0
    dropped: int = 0
    first_reason: Optional[str] = None
    skipped: Optional[str] = None

    @property
    def frontier(self) -> list[Point]:
        """Points on either frontier, by tok/s per user."""
        seen, out = set(), []
        for p in self.mw_front + self.cost_front:
            if id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        return sorted(out, key=lambda p: p.tok_s_per_user)


@dataclass
class FrontierResult:
    model: str
    input_len: int
    output_len: int
    families: list[FamilyResult]
    verdicts: list[Verdict]
    screened: int
    seconds: float
    power_basis: str = POWER_BASIS


def _bodies(fam: Family, model: str, input_len: int, output_len: int, batches) -> list:
    """SweepConfigs of a family's deployments at every batch: the same canonical bodies and ids as
    `infersim sweep` (a frontier row and a sweep row of one configuration share its config_id)."""
    from infersim.deployments.spec import DeploymentSpec, check_spec
    from infersim.sweep.spec import LABELS, SweepConfig, config_id
    out = []
    for label, dep in fam.deployments:
        spec = check_spec(DeploymentSpec.model_validate({"name": label, **dep}), label)
        canon = spec.model_dump(mode="json", exclude=set(LABELS))
        for b in batches:
            body = {"model": model, "deployment": canon,
                    "workload": {"input_len": input_len, "output_len": output_len, "trace": None},
                    "load": {"kind": "batch", "value": b}}
            out.append(SweepConfig(config_id(body), label, body))
    return out


def _check(input_len: int, output_len: int, batches) -> None:
    for flag, v in (("--input-len", input_len), ("--output-len", output_len)):
        if not isinstance(v, int) or v < 1:
            raise InputError(f"{flag} must be a whole number of tokens, at least 1; got {v}")
    if not batches or any(not isinstance(b, int) or b < 1 for b in batches):
        raise InputError(f"--batches must be whole numbers, each at least 1; got {list(batches)}")


def run_frontier(model: str, input_len: int, output_len: int, *, batches=DEFAULT_BATCHES,
                 only: Optional[list[str]] = None, out: Optional[str | Path] = None,
                 sensitivity: bool = True) -> FrontierResult:
    """Screen every family (or the ones named in `only`) for `model` at `input_len` / `output_len`
    tokens and `batches` sequences per decode replica; `out` also writes every evaluated
    configuration (feasible or not) to that DuckDB file's `results` table (sweep.store)."""
    from infersim.calibration.efficiency import load_calibration
    from infersim.catalog.hardware import load_catalog
    from infersim.catalog.models import load_model
    from infersim.sweep.evaluate import estimate_config
    _check(input_len, output_len, batches)
    start = time.perf_counter()
    arch = load_model(model)
    catalog, calibration = load_catalog(), load_calibration(None)
    fams = families(arch, catalog, calibration)
    if only:
        unknown = sorted(set(only) - {f.name for f in fams})
        if unknown:
            raise InputError(f"unknown family '{unknown[0]}'; choose from {', '.join(f.name for f in fams)}")
        fams = [f for f in fams if f.name in only]
    store = _store(out)
    results, screened = [], 0
    try:
        for fam in fams:
            configs = _bodies(fam, arch.name, input_len, output_len, sorted(set(batches)))
            rows = [(c, estimate_config(c.body)) for c in configs]
            screened += len(rows)
            if store is not None:
                from infersim.sweep.store import config_columns
                store.write([{**config_columns(c.config_id, SWEEP_NAME, c.name, c.body), **r} for c, r in rows])
            results.append(_family_result(fam, rows))
    finally:
        if store is not None:
            store.close()
    points = [p for f in results for p in f.points]
    verdicts = [decide(points, band, obj) for obj in OBJECTIVES for band in BAND_NAMES]
    if sensitivity:
        for v in verdicts:
            _sensitivity(v, arch, input_len, output_len, catalog, calibration)
    return FrontierResult(arch.name, input_len, output_len, results, verdicts, screened,
                          time.perf_counter() - start)


def _store(out):
    if out is None:
        return None
    from infersim.sweep.store import ResultStore
    return ResultStore(out)


def _family_result(fam: Family, rows) -> FamilyResult:
    points, dropped, reason = [], 0, None
    for c, r in rows:
        if r["status"] != "ok":
            dropped += 1
            reason = reason or f"{c.name} at batch {r['batch'] or c.body['load']['value']}: {r['error']}"
            continue
        points.append(Point(fam.name, c.name, r["batch"], r["tok_s_per_user"], r["output_tok_s"], r["tok_s_per_mw"],
                            r["cost_per_mtok_output_usd"], c.body))
    per_user = (lambda p: p.tok_s_per_user, "max")
    return FamilyResult(fam.name, fam.description, points,
                        pareto_front(points, [per_user, (lambda p: p.tok_s_per_mw, "max")]),
                        pareto_front(points, [per_user, (lambda p: p.cost_per_mtok_usd, "min")]),
                        screened=len(rows), dropped=dropped, first_reason=reason, skipped=fam.skipped)


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
    to the runner-up."""
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
    v.sensitive_to = [s.line(base) for s in swings[:SENSITIVE_TOP]]
    v.flips = any(s.flips for s in swings)


def to_json(res: FrontierResult) -> dict:
    """The issue's schema: families with their frontier points, and one verdict per band and
    objective (the band label names the objective: '50-150 tok/s/user, tok/s per MW')."""
    keys = ("deployment", "tok_s_per_user", "tok_s_per_mw", "cost_per_mtok_usd", "output_tok_s")
    return {"families": [{"family": f.name, "points": [{k: getattr(p, k) for k in keys} for p in f.frontier]}
                         for f in res.families],
            "verdicts": [{"band": band_label(v), "winner": v.winner, "margin": v.margin,
                          "sensitive_to": v.sensitive_to} for v in res.verdicts]}


def band_label(v: Verdict) -> str:
    return f"{v.band} tok/s/user, {OBJECTIVES[v.objective][2]}"
