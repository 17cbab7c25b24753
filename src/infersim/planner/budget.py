"""`infersim plan`'s budget: what a deployment may use, and what one uses.

`--budget racks=8,usd_per_hour=2000,mw=1.5,capex_usd=6e7` (any subset, at least one):
- `racks`: racks of every kind the plan uses (Plan.total_racks: NVL72, LPX, CS-3 systems, nodes);
- `usd_per_hour`: the hourly cost buying the hardware (infersim.economics, capex mode: capex amortised
  over the lifetime + power x PUE x electricity price), drawn at full utilisation, the most the
  hardware can cost per hour;
- `mw`: the systems' *rated* IT power (catalog power_w, no PUE), in MW, the basis of tok/s per MW;
- `capex_usd`: the hardware's purchase price at the catalog's prices.
A deployment whose hardware has no price in the catalog cannot be checked against a USD budget and
is refused by it (it stays eligible under a racks or MW budget).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from infersim.errors import InputError, shown

BUDGET_EXAMPLE = "write e.g. --budget racks=8 or --budget usd_per_hour=2000,mw=1.5"
# key -> (what it bounds, unit shown)
BUDGET_KEYS = {"racks": ("racks of every kind", "racks"), "usd_per_hour": ("hourly cost (capex amortised + power)", "$/h"),
               "mw": ("rated IT power (catalog power_w, no PUE)", "MW"), "capex_usd": ("hardware purchase price", "$")}


@dataclass(frozen=True)
class Budget:
    """Upper limits; None = no limit on that quantity."""
    racks: Optional[float] = None
    usd_per_hour: Optional[float] = None
    mw: Optional[float] = None
    capex_usd: Optional[float] = None

    def __str__(self) -> str:
        return ",".join(f"{k}={getattr(self, k):g}" for k in BUDGET_KEYS if getattr(self, k) is not None)


@dataclass(frozen=True)
class Footprint:
    """What one deployment uses: racks of every kind, rated power (W), purchase price and hourly
    cost at full utilisation (USD; None where the catalog has no price for its hardware)."""
    racks: float
    power_w: float
    capex_usd: Optional[float]
    usd_per_hour: Optional[float]

    def value(self, key: str) -> Optional[float]:
        return {"racks": self.racks, "mw": self.power_w / 1e6, "capex_usd": self.capex_usd,
                "usd_per_hour": self.usd_per_hour}[key]


def parse_budget(text: Optional[str]) -> Budget:
    """`key=value,...` (keys of BUDGET_KEYS, positive finite numbers) into a Budget; None or blank
    is no budget. InputError naming the bad part."""
    if text is None or not text.strip():
        return Budget()
    values: dict[str, float] = {}
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        key, eq, value = (s.strip() for s in part.partition("="))
        where = f"--budget '{shown(part)}'"
        if not eq:
            raise InputError(f"{where}: expected key=value; {BUDGET_EXAMPLE}")
        if key not in BUDGET_KEYS:
            raise InputError(f"{where}: '{shown(key)}' is not a budget (one of {', '.join(BUDGET_KEYS)}); {BUDGET_EXAMPLE}")
        try:
            v = float(value)
        except ValueError:
            raise InputError(f"{where}: '{shown(value)}' is not a number; {BUDGET_EXAMPLE}") from None
        if not math.isfinite(v) or v <= 0:
            raise InputError(f"{where}: the limit must be a positive finite number; {BUDGET_EXAMPLE}")
        if key in values:
            raise InputError(f"{where}: {key} is given twice; give each limit once")
        values[key] = v
    if not values:
        raise InputError(f"--budget '{shown(text)}': no limits; {BUDGET_EXAMPLE}")
    return Budget(**values)


def footprint(plan, catalog, prices) -> Footprint:
    """A plan's racks, rated power and, at the catalog's prices, its purchase price and hourly cost
    at full utilisation (economics.plan_economics, capex mode)."""
    from infersim.economics import Throughput, plan_economics
    try:
        e = plan_economics(plan, Throughput(1.0, 0.0, 1.0, 0.0), catalog, prices, "capex")
        capex, per_hour = e.capex_usd, e.cost_usd_per_hour
    except InputError:  # no price for this hardware in the catalog
        capex = per_hour = None
    return Footprint(float(plan.total_racks), float(plan.power_w), capex, per_hour)


def over_budget(budget: Budget, fp: Footprint) -> Optional[tuple[str, str]]:
    """(budget key, why) for the first limit `fp` exceeds (or cannot be checked against: no price),
    None when it fits."""
    for key, (what, unit) in BUDGET_KEYS.items():
        limit = getattr(budget, key)
        if limit is None:
            continue
        used = fp.value(key)
        if used is None:
            return key, f"no catalog price for its hardware, so its {what} cannot be checked against {key}={limit:g}"
        if used > limit * (1 + 1e-9):
            return key, f"{what} {used:.4g} {unit} over the budget's {limit:g}"
    return None
