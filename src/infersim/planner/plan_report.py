"""`infersim plan`'s objectives, its simulated finalists (`Finalist`), their ranking, the reason
each runner-up lost, the verdict line, and the JSON object (`to_json`)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from infersim.planner.candidates import Candidate

TIE = 0.005  # objectives within 0.5% are a tie (the simulator's own figures differ by less between equal steps)

# objective -> (figure, better, label)
OBJECTIVES = {"cost_per_mtok": ("cost_per_mtok_usd", "min", "USD per million output tokens"),
              "tok_s_per_mw": ("tok_s_per_mw", "max", "output tok/s per MW of rated power"),
              "output_tok_s": ("capacity_tok_s", "max", "output tok/s of capacity"),
              "tok_s_per_user": ("tok_s_per_user", "max", "tok/s per user (p50)")}


@dataclass
class Finalist:
    """A simulated candidate. tok_s_per_user: p50 of 1 / TPOT over the simulated requests;
    output_tok_s: simulated; capacity_tok_s: analytical (OBJECTIVES); cost in USD per million
    output tokens (None: no price); slo: target key -> (value, target, unit, miss factor >= 1 when
    missed, in the target's direction)."""
    cand: Candidate
    tok_s_per_user: Optional[float] = None
    output_tok_s: Optional[float] = None
    capacity_tok_s: Optional[float] = None
    cost_per_mtok_usd: Optional[float] = None
    tok_s_per_mw: Optional[float] = None
    slo: dict = field(default_factory=dict)
    summary: dict = field(repr=False, default_factory=dict)
    error: Optional[str] = None
    reason: Optional[str] = None
    simulated: bool = True           # False: an over-budget runner-up shown with its analytical figures

    @property
    def misses(self) -> list[tuple[str, float]]:
        """(target key, factor) of every SLO missed, worst first."""
        out = [(k, v["factor"]) for k, v in self.slo.items() if not v["met"]]
        return sorted(out, key=lambda kv: -kv[1])

    @property
    def meets(self) -> bool:
        return self.simulated and self.error is None and not self.misses


def objective_value(f: Finalist, objective: str) -> Optional[float]:
    v = getattr(f, OBJECTIVES[objective][0])
    return v if v is not None and math.isfinite(v) else None


def rank_key(objective: str):
    """Sort key: best first, missing values last; ties broken by cost per million output tokens,
    then racks (the cheaper, smaller deployment first)."""
    better = OBJECTIVES[objective][1]
    def k(f):
        v = objective_value(f, objective)
        cost = f.cost_per_mtok_usd if f.cost_per_mtok_usd is not None else math.inf
        # the objective in steps of TIE (log scale, so a tie is one step at any magnitude)
        step = 0 if v is None or v <= 0 else round(math.log(v) / math.log1p(TIE))
        return (v is None, step if better == "min" else -step, cost, f.cand.fp.racks)
    return k


def ratio_worse(f: Finalist, best: Finalist, objective: str) -> Optional[float]:
    """How many times worse `f` is than `best` on the objective (>= 1 when it ranks after it)."""
    v, b = objective_value(f, objective), objective_value(best, objective)
    if v is None or b is None or v == 0:
        return None
    return v / b if OBJECTIVES[objective][1] == "min" else b / v


def fmt_value(v: Optional[float], unit: str) -> str:
    if v is None:
        return "none"
    if unit == "s":
        return f"{v * 1e3:.3g} ms" if v < 1 else f"{v:.3g} s"
    return f"{v:.4g} {unit}"


def miss_text(f: Finalist) -> str:
    """'ttft_p99 2.3 s against 2 s (1.15x)' for each missed target, worst first."""
    parts = []
    for key, factor in f.misses:
        s = f.slo[key]
        parts.append(f"{key} {fmt_value(s['value'], s['unit'])} against {fmt_value(s['target'], s['unit'])} ({factor:.3g}x)")
    return "; ".join(parts)


def _lost_by(f: Finalist, best: Finalist, objective: str) -> str:
    label = OBJECTIVES[objective][2]
    v, b = objective_value(f, objective), objective_value(best, objective)
    if v is None:
        return f"lower objective: no {label} (no catalog price or power figure for its hardware)"
    ratio = ratio_worse(f, best, objective)
    if ratio is not None and ratio < 1 + TIE:
        return (f"ties the best on {label} ({v:.4g}); ranked after it by cost per million output tokens, then racks "
                f"(${fmt_cost(f.cost_per_mtok_usd)} against ${fmt_cost(best.cost_per_mtok_usd)})")
    return f"lower objective: {label} {v:.4g} against the best's {b:.4g} ({ratio:.3g}x worse)"


def fmt_cost(v: Optional[float]) -> str:
    return "none" if v is None else f"{v:.4g}"


def decide(done: list[Finalist], objective: str, bound_prunes: list) -> tuple[Optional[Finalist], list[Finalist], str]:
    """(best, runners-up with `reason` set, verdict line). The best meets every SLO and is first by
    the objective among those that do; runners-up: the others that meet them (by the objective), then
    those that miss (closest first), then those the simulation refused."""
    meets = sorted([f for f in done if f.meets], key=rank_key(objective))
    misses = sorted([f for f in done if f.error is None and not f.meets], key=lambda f: f.misses[0][1])
    failed = [f for f in done if f.error is not None]
    best = meets[0] if meets else None
    for f in meets[1:]:
        f.reason = _lost_by(f, best, objective)
    for f in misses:
        f.reason = f"SLO miss: {miss_text(f)}"
    for f in failed:
        f.reason = f.error
    if best is not None:
        verdict = f"best: {best.cand.label} ({len(meets)} of {len(done)} simulated finalists meet every SLO)"
    elif misses:
        c = misses[0]
        verdict = (f"no deployment meets the SLOs; closest: {c.cand.label}, which misses {miss_text(c)}")
    elif bound_prunes:
        c, p = min(bound_prunes, key=lambda cp: cp[1].factor)
        verdict = (f"no deployment meets the SLOs: every one within budget misses one by more than the screen's "
                   f"margin; closest: {c.label}, {p.kind[4:]}: {p.detail}")
    else:
        verdict = "no deployment meets the SLOs: no finalist could be simulated"
    return best, meets[1:] + misses + failed, verdict


def finalist_json(f: Finalist) -> dict:
    c = f.cand
    return {"deployment": c.label, "family": c.family, "spec": c.deployment, "racks": c.fp.racks,
            "power_w": c.fp.power_w, "capex_usd": c.fp.capex_usd, "batch_sized": c.batch,
            "simulated": f.simulated, "tok_s_per_user": f.tok_s_per_user, "output_tok_s": f.output_tok_s, "capacity_tok_s": f.capacity_tok_s,
            "cost_per_mtok_usd": f.cost_per_mtok_usd, "tok_s_per_mw": f.tok_s_per_mw,
            "slo": {k: {kk: (None if kk == "factor" and v[kk] == float("inf") else v[kk]) for kk in v}
                    for k, v in f.slo.items()},
            "ttft_s": f.summary.get("ttft_s"), "tpot_s": f.summary.get("tpot_s"), "e2e_s": f.summary.get("e2e_s")}


def to_json(res) -> dict:
    """{"best": {...} or null, "runners_up": [{..., "reason"}], "screened", "simulated", "stages_s", ...}."""
    w = res.workload
    return {"model": res.model, "objective": res.objective, "slo": str(res.slo) if res.slo else None,
            "budget": str(res.budget) or None, "verdict": res.verdict,
            "workload": {"source": w.name, "simulated": w.window, "mean_input_tokens": w.mean_input,
                         "mean_output_tokens": w.mean_output, "offered_req_s": w.offered_req_s,
                         "offered_output_tok_s": w.offered_output_tok_s},
            "best": None if res.best is None else finalist_json(res.best),
            "runners_up": [{**finalist_json(f), "reason": f.reason} for f in res.runners_up],
            "screened": res.screened, "not_runnable": res.not_runnable, "pruned": res.pruned,
            "simulated": res.simulated, "stages_s": res.stages_s, "skipped_families": res.skipped_families}
