"""Verdicts per interactivity band: which family serves a band best, by how much, and which
uncertain inputs move that margin most.

A band is a range of tokens/s per user. A family's best point in a band is its best evaluated
point there on the objective (highest tok/s per MW, or lowest cost per million output tokens).
The winner is the family with the best such point; the margin is winner / runner-up for tok/s
per MW and runner-up / winner for cost, so it is >= 1 and reads "x times better".
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

from infersim.interactivity import band_of

# objective -> (point attribute, True when higher is better, label)
OBJECTIVES = {"tok_s_per_mw": ("tok_s_per_mw", True, "tok/s per MW"),
              "cost_per_mtok_usd": ("cost_per_mtok_usd", False, "cost per Mtok")}


@dataclass
class Verdict:
    """`band` (label), `objective` (a key of OBJECTIVES); winner / runner-up families and their best
    points (None when the band has none); `margin` >= 1 (None without a runner-up);
    `sensitive_to`: the inputs that move the margin most, one line each; `flips`: whether one of
    them, at an end of its range, hands the band to the runner-up."""
    band: str
    objective: str
    winner: Optional[str] = None
    runner_up: Optional[str] = None
    winner_point: object = None
    runner_up_point: object = None
    margin: Optional[float] = None
    sensitive_to: list[str] = field(default_factory=list)
    flips: bool = False


def in_band(tok_s_per_user: float, band: str) -> bool:
    return band_of(tok_s_per_user) == band


def best_per_family(points: list, band: str, objective: str) -> dict[str, object]:
    """{family: its best point in `band` on `objective`}, families with no such point left out.
    Points carry `family`, `tok_s_per_user` and the objective's attribute (None: not comparable)."""
    attr, higher, _ = OBJECTIVES[objective]
    best: dict[str, object] = {}
    for p in points:
        v = getattr(p, attr)
        if v is None or not in_band(p.tok_s_per_user, band):
            continue
        cur = best.get(p.family)
        if cur is None or (v > getattr(cur, attr) if higher else v < getattr(cur, attr)):
            best[p.family] = p
    return best


def margin(winner_value: float, runner_value: float, objective: str) -> float:
    """How many times better the winner is (>= 1 for the true winner; < 1 means it lost)."""
    higher = OBJECTIVES[objective][1]
    return winner_value / runner_value if higher else runner_value / winner_value


def decide(points: list, band: str, objective: str) -> Verdict:
    """The band's verdict on `objective` (without sensitivity: see `sensitivity_of`)."""
    attr, higher, _ = OBJECTIVES[objective]
    best = best_per_family(points, band, objective)
    ranked = sorted(best.items(), key=lambda kv: getattr(kv[1], attr), reverse=higher)
    v = Verdict(band, objective)
    if ranked:
        v.winner, v.winner_point = ranked[0]
    if len(ranked) > 1:
        v.runner_up, v.runner_up_point = ranked[1]
        v.margin = margin(getattr(v.winner_point, attr), getattr(v.runner_up_point, attr), objective)
    return v


@dataclass
class Swing:
    """One input's effect on the margin: the margin with the input at its low and high ends (None
    where that end makes one deployment impossible)."""
    name: str
    low: float
    high: float
    margin_low: Optional[float]
    margin_high: Optional[float]
    breaks: str = ""

    def effect(self, base: float) -> float:
        ends = [m for m in (self.margin_low, self.margin_high) if m is not None]
        return math.inf if self.breaks else max((abs(m - base) for m in ends), default=0.0)

    def line(self, base: float) -> str:
        if self.breaks:
            return f"{self.name} [{self.low:.3g}..{self.high:.3g}]: {self.breaks}"
        lo, hi = (f"{m:.2f}" if m is not None else "n/a" for m in (self.margin_low, self.margin_high))
        flip = " (winner flips)" if self.flips else ""
        return f"{self.name} [{self.low:.3g}..{self.high:.3g}]: margin {lo} .. {hi} (base {base:.2f}){flip}"

    @property
    def flips(self) -> bool:
        return any(m is not None and m < 1.0 for m in (self.margin_low, self.margin_high))


def margin_swings(winner_rows: dict, runner_rows: dict, winner_base: float, runner_base: float,
                  objective: str) -> list[Swing]:
    """Each input swept for either deployment (rows by name: (low, high, metric_low, metric_high,
    error_low, error_high), deployments.sensitivity's rows), the margin at its ends: an input both
    use moves both at once; one only one uses leaves the other at its baseline."""
    out = []
    for name in sorted(set(winner_rows) | set(runner_rows)):
        w = winner_rows.get(name)
        r = runner_rows.get(name)
        lo, hi = (w or r)[0], (w or r)[1]
        ends = []
        breaks = ""
        for i, end in ((2, "low"), (3, "high")):
            wv = w[i] if w else winner_base
            rv = r[i] if r else runner_base
            if wv is None or rv is None:
                who = "the winner" if wv is None else "the runner-up"
                breaks = breaks or f"at its {end} end {who} does not fit"
                ends.append(None)
            else:
                ends.append(margin(wv, rv, objective))
        out.append(Swing(name, lo, hi, ends[0], ends[1], breaks))
    base = margin(winner_base, runner_base, objective)
    out.sort(key=lambda s: -s.effect(base))
    return out
