"""Cost of a plan: capex amortised over a lifetime plus power, or a cloud hourly price; cost per
million input and output tokens, tokens per MW and per USD, revenue, ROI and payback per token tier.

The model (every input a catalog price with its source, or an assumption with a range):
- what is priced: the plan's racks of named systems (`Plan.racks`, fractional for a share of a
  rack, priced pro rata); a pool on bare chips (no racks) is priced by the chip. A system without a
  price of its own is priced as its chips' price x its chip count (GPUs only: say so in the notes).
- capex mode: cost/h = capex_usd / (lifetime_years x 8766 h) + energy; energy/h = rated power W x
  (idle + (1 - idle) x utilisation) x PUE / 1000 x usd_per_kwh. Rated power is the system's
  `power_w` (the chip's `tdp_w` x chips where there is none).
- cloud mode: cost/h = the systems' (or chips') `cloud_usd_per_hour`; power is in the rent.
- the hour's cost is split between input and output tokens by `prefill_share` (the share of the
  deployment's time spent prefilling when prefill and decode share the hardware, its prefill chips'
  share when disaggregated): cost per million output tokens = cost/h x (1 - prefill_share) /
  (output tokens per hour / 1e6), and likewise for input tokens with prefill_share.
- revenue/h at a tier = input and output tokens per hour x the tier's prices; the margin is revenue
  minus running cost (energy; the rent in cloud mode). Payback = capex / yearly margin; ROI over the
  lifetime = (margin x lifetime - capex) / capex (cloud mode: margin / rent). Opex counts only
  power: no staff, network, floor space or financing, so cost is a lower bound.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Literal, Optional

from infersim.catalog.hardware import HardwareCatalog, Quantity
from infersim.deployments.plan import Plan
from infersim.economics.prices import SECONDS_PER_YEAR, Prices
from infersim.errors import InputError

Pricing = Literal["capex", "cloud"]
PRICINGS = ("capex", "cloud")
UNCERTAIN = ("estimate", "assumption")
HOURS_PER_YEAR = SECONDS_PER_YEAR / 3600.0
TOKENS_PER_MTOK = 1e6


@dataclass(frozen=True)
class Throughput:
    """What the deployment serves. output_tok_s, input_tok_s: tokens/s (whole deployment);
    utilisation: the share of time the hardware is busy, in [0, 1] (sets power draw);
    prefill_share: the share of the hourly cost charged to input tokens, in [0, 1]."""

    output_tok_s: float
    input_tok_s: float
    utilisation: float = 1.0
    prefill_share: float = 0.0

    def __post_init__(self):
        for name in ("output_tok_s", "input_tok_s", "utilisation", "prefill_share"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise InputError(f"{name} must be a finite number >= 0, got {v}")
        if self.output_tok_s == 0:
            raise InputError("output_tok_s is 0: a deployment that serves no tokens has no cost per token")
        for name in ("utilisation", "prefill_share"):
            if getattr(self, name) > 1:
                raise InputError(f"{name} must lie in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class PriceUse:
    """One price or assumption a result used: `name` is its --set key (NAME.FIELD or
    economics.FIELD), `value` in the unit its field names, with basis, source and range."""

    name: str
    value: float
    basis: str
    source: str
    low: Optional[float] = None
    high: Optional[float] = None
    note: str = ""

    @classmethod
    def of(cls, name: str, q: Quantity, note: str = "") -> "PriceUse":
        return cls(name, float(q.value), q.basis, q.source, q.low, q.high, "; ".join(x for x in (q.note, note) if x))

    @property
    def uncertain(self) -> bool:
        return self.basis in UNCERTAIN


@dataclass(frozen=True)
class Unit:
    """`count` of one priced thing (a system, or a chip when a pool has no rack): unit prices."""

    name: str
    kind: str  # "system" or "chip"
    count: float
    capex_usd: Optional[float]
    cloud_usd_per_hour: Optional[float]
    power_w: float


@dataclass
class TierResult:
    tier: str
    usd_per_mtok_input: float
    usd_per_mtok_output: float
    revenue_usd_per_hour: float
    margin_usd_per_hour: float  # revenue - running cost (energy; the rent in cloud mode)
    payback_years: Optional[float]  # None: never (margin <= 0) or no capex (cloud)
    roi: float  # over the lifetime (capex mode) or per hour of rent (cloud mode)
    prices: list[PriceUse]


@dataclass
class Economics:
    """Cost figures of one plan at one throughput (units in the field names; see the module docstring)."""

    pricing: str
    units: list[Unit]
    capex_usd: Optional[float]
    capex_usd_per_hour: float
    rated_power_w: float
    draw_power_w: float
    facility_power_w: float
    energy_usd_per_hour: float
    cloud_usd_per_hour: Optional[float]
    cost_usd_per_hour: float
    throughput: Throughput
    cost_per_mtok_output_usd: float
    cost_per_mtok_input_usd: Optional[float]
    output_tok_s_per_facility_mw: Optional[float]
    output_tok_per_usd: float
    tiers: list[TierResult]
    prices: list[PriceUse]
    notes: list[str] = field(default_factory=list)

    @property
    def uncertain_prices(self) -> list[PriceUse]:
        """The prices and assumptions used that are estimates or assumptions (not list prices or specs)."""
        return [p for p in self.prices if p.uncertain]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["uncertain_prices"] = [p.name for p in self.uncertain_prices]
        return d


def _system_names(plan: Plan) -> dict[str, str]:
    s = plan.spec
    return {k: part.system for k, part in (("gpu", s.gpu), ("lpu", s.lpu)) if part is not None}


def _plans(plan: Plan) -> list[Plan]:
    return [plan] + ([] if plan.premium is None else _plans(plan.premium))


def _price(catalog: HardwareCatalog, owner, field_name: str, uses: list[PriceUse]) -> Optional[float]:
    """`owner`'s price `field_name` (a system falls back to its chip's x n_chips), recorded in `uses`."""
    q = getattr(owner, field_name, None)
    if q is not None and q.value is not None:
        uses.append(PriceUse.of(f"{owner.name}.{field_name}", q))
        return float(q.value)
    if hasattr(owner, "n_chips"):  # a system without a price of its own
        chip = catalog.chip(owner.chip)
        per = _price(catalog, chip, field_name, uses)
        if per is None:
            return None
        uses[-1] = PriceUse(**{**asdict(uses[-1]), "note": (uses[-1].note + "; " if uses[-1].note else "")
                               + f"x {owner.n_chips} per {owner.name}: the chips only (no system price)"})
        return per * owner.n_chips
    return None


def footprint(plan: Plan, catalog: HardwareCatalog, pricing: Pricing) -> tuple[list[Unit], list[PriceUse]]:
    """What `plan` costs, as priced units, and the prices used. InputError when one has no price."""
    uses: list[PriceUse] = []
    units: list[Unit] = []
    field_name = "capex_usd" if pricing == "capex" else "cloud_usd_per_hour"
    names = _system_names(plan)
    covered = {"gpu": ("gpu",), "lpu": ("lpu", "wafer")}
    kinds = [k for k in plan.racks if plan.racks[k] > 0]
    bare: dict[str, float] = {}
    for p in _plans(plan):
        for pool in p.pools:
            chip = pool.deployment.chip
            if not any(chip.kind in covered.get(k, ()) for k in kinds):
                bare[chip.name] = bare.get(chip.name, 0) + pool.deployment.n_chips
    things = [(catalog.resolve_system(names[k]), plan.racks[k]) for k in kinds if k in names]
    things += [(catalog.chip(name), n) for name, n in bare.items()]
    for owner, count in things:
        price = _price(catalog, owner, field_name, uses)
        if price is None:
            how = (f"--set {owner.name}.capex_usd=USD, or --pricing cloud" if pricing == "capex"
                   else f"--set {owner.name}.cloud_usd_per_hour=USD, or --pricing capex")
            raise InputError(f"no {field_name} for {owner.name} (nor its chip) in the catalog: give one with {how}")
        power_q = getattr(owner, "power_w", None)
        if power_q is not None and power_q.value is not None:
            power, pq_name = float(power_q.value), f"{owner.name}.power_w"
        else:
            chip = owner if not hasattr(owner, "n_chips") else catalog.chip(owner.chip)
            power_q, pq_name = chip.tdp_w, f"{chip.name}.tdp_w"
            power = float(power_q.value or 0.0) * getattr(owner, "n_chips", 1)
        uses.append(PriceUse.of(pq_name, power_q, "rated power, drawn at full load"))
        units.append(Unit(owner.name, "system" if hasattr(owner, "n_chips") else "chip", float(count),
                          price if pricing == "capex" else None, price if pricing == "cloud" else None, power))
    return units, uses


def plan_economics(plan: Plan, throughput: Throughput, catalog: HardwareCatalog, prices: Prices,
                   pricing: Pricing = "capex") -> Economics:
    """Cost per million tokens, power, tokens per MW and per USD, and revenue / ROI per token tier
    of `plan` serving `throughput` (see the module docstring). InputError on a missing price."""
    if pricing not in PRICINGS:
        raise InputError(f"unknown pricing '{pricing}'; choose capex (buy: amortised capex + power) or cloud (rent)")
    units, uses = footprint(plan, catalog, pricing)
    a = prices.assumptions
    util = throughput.utilisation
    rated = sum(u.count * u.power_w for u in units)
    idle = float(a.idle_power_fraction.value)
    draw = rated * (idle + (1.0 - idle) * util)
    facility = draw * float(a.pue.value)
    notes = []
    if pricing == "capex":
        lifetime_h = float(a.lifetime_years.value) * HOURS_PER_YEAR
        capex = sum(u.count * u.capex_usd for u in units)
        capex_h = capex / lifetime_h
        energy_h = facility / 1e3 * float(a.usd_per_kwh.value)
        cloud_h = None
        running_h = energy_h
        uses += [PriceUse.of("economics.lifetime_years", a.lifetime_years),
                 PriceUse.of("economics.pue", a.pue), PriceUse.of("economics.usd_per_kwh", a.usd_per_kwh)]
    else:
        capex, capex_h, energy_h, lifetime_h = None, 0.0, 0.0, None
        cloud_h = running_h = sum(u.count * u.cloud_usd_per_hour for u in units)
        uses.append(PriceUse.of("economics.pue", a.pue, "facility power only; the rent includes electricity"))
        notes.append("cloud pricing: the hourly rent includes power; no capex, so no payback")
    if util < 1:
        uses.append(PriceUse.of("economics.idle_power_fraction", a.idle_power_fraction))
    cost_h = capex_h + running_h
    out_mtok_h = throughput.output_tok_s * 3600.0 / TOKENS_PER_MTOK
    in_mtok_h = throughput.input_tok_s * 3600.0 / TOKENS_PER_MTOK
    share = throughput.prefill_share
    tiers = []
    for name, t in prices.tiers.items():
        p_in, p_out = float(t.usd_per_mtok_input.value), float(t.usd_per_mtok_output.value)
        revenue = in_mtok_h * p_in + out_mtok_h * p_out
        margin = revenue - running_h
        if capex is not None:
            payback = capex / (margin * HOURS_PER_YEAR) if margin > 0 and capex > 0 else None
            roi = (margin * lifetime_h - capex) / capex
        else:
            payback, roi = None, margin / running_h
        tiers.append(TierResult(name, p_in, p_out, revenue, margin, payback, roi,
                                [PriceUse.of(f"economics.{name}.usd_per_mtok_input", t.usd_per_mtok_input),
                                 PriceUse.of(f"economics.{name}.usd_per_mtok_output", t.usd_per_mtok_output)]))
    return Economics(
        pricing=pricing, units=units, capex_usd=capex, capex_usd_per_hour=capex_h, rated_power_w=rated,
        draw_power_w=draw, facility_power_w=facility, energy_usd_per_hour=energy_h, cloud_usd_per_hour=cloud_h,
        cost_usd_per_hour=cost_h, throughput=throughput,
        cost_per_mtok_output_usd=cost_h * (1.0 - share) / out_mtok_h,
        cost_per_mtok_input_usd=cost_h * share / in_mtok_h if in_mtok_h > 0 else None,
        output_tok_s_per_facility_mw=throughput.output_tok_s / (facility / 1e6) if facility > 0 else None,
        output_tok_per_usd=out_mtok_h * TOKENS_PER_MTOK / cost_h,
        tiers=tiers, prices=_unique(uses), notes=notes)


def _unique(uses: list[PriceUse]) -> list[PriceUse]:
    seen: dict[str, PriceUse] = {}
    for u in uses:
        seen.setdefault(u.name, u)
    return list(seen.values())


# ------------------------------------------------------------------ throughput from estimate results

def throughput_of_plan_estimate(d: dict) -> Throughput:
    """The throughput of `estimate_plan`'s dict: steady state, every replica busy (utilisation 1);
    input tokens at the request's input/output ratio; its `prefill_share`."""
    out = float(d["output_tok_s"])
    return Throughput(out, out * d["input_len"] / d["output_len"], 1.0, float(d["prefill_share"]))


def splits_prefill(plan: Plan) -> bool:
    """Whether a simulation of `plan` can charge prefill to input tokens honestly: only when prefill
    runs on chips of its own (disaggregated); an aggregated replica's steps mix prefill chunks and
    decodes, and the simulator does not split its time between them."""
    return plan.prefill_pool.role == "prefill"


def throughput_of_simulation(summary: dict, plan: Plan) -> Throughput:
    """The throughput of a simulation summary (deployments.run.simulate_plan): its output and input
    tokens/s over the run; utilisation = the serving replicas' mean busy share (a plan's FFN / draft
    pools are not tracked apart: they count as busy as the replicas; 1, full draw, where a summary
    of SLO classes has none); prefill_share = the prefill pool's share of the serving chips when
    disaggregated (`splits_prefill`), else 0: all the hardware is charged to output tokens."""
    share = 0.0
    if splits_prefill(plan):
        chips = {p.role: p.deployment.n_chips for p in plan.serving_pools()}
        share = chips["prefill"] / sum(chips.values())
    return Throughput(float(summary["output_tok_s"]), float(summary["input_tok_s"]),
                      min(1.0, float(summary.get("utilisation", 1.0))), share)


def throughput_of_static(e) -> Throughput:
    """The throughput of an `estimate_static` Estimate: one batch's lifecycle, prefill (TTFT) then
    output_len - 1 decode steps; prefill_share = TTFT / the whole lifecycle."""
    e2e = e.ttft_s + max(e.output_len - 1, 0) * e.tpot_s
    return Throughput(e.output_tok_s, e.output_tok_s * e.input_len / e.output_len, 1.0,
                      e.ttft_s / e2e if e2e > 0 else 0.0)
