"""Sensitivity of a deployment's headline result to the numbers nobody has measured.

`sensitivity(spec, ...)` builds the deployment's plan once, estimates one metric (tok/s per user,
output tok/s, per rack, per MW, TTFT or TPOT) and then sweeps, one at a time, every uncertain
input the plan actually uses to the low and to the high end of its range, keeping all the others
at their values. Each swept input gives a row: the metric at its low and at its high end, and the
swing |metric(high) - metric(low)| / baseline. Rows come sorted by swing, largest first, so the
first rows name the unknowns that matter (a tornado chart).

What is swept:
- catalog numbers whose basis is ``estimate`` or ``assumption`` and that carry a ``low``/``high``
  range (low < high) on the entries the plan uses: its chips (every Quantity field, and every
  ``peak_flops`` precision that has a range), the GPU<->LPU link the file names, the deployments'
  scale-up and scale-out links, and the named systems (``power_w``) with their own links. Cost
  fields (``capex_usd``, ``cloud_usd_per_hour``) are left out, except for the cost metrics
  (``cost_per_mtok_output_usd``, ``cost_per_mtok_input_usd``), which also sweep every price and
  economics assumption the plan's cost used (`infersim.economics`: capex or rent, lifetime, PUE,
  electricity price, idle draw) that is an estimate or assumption with a range. A point is applied
  with `HardwareCatalog.with_overrides` (``NAME.FIELD=VALUE``) or `Prices.with_overrides`
  (``economics.FIELD=VALUE``).
- the calibration's fitted values (the calibration data is not edited; the plan is rebuilt with a
  calibration whose `for_chip` returns a copy of the efficiency with one field replaced): when the
  fit file records their uncertainty (`infersim calibrate`: each value's range over the
  leave-one-group-out fits), every fitted ``calibration.<family>.<param>`` (compute_eff, mem_eff,
  host_scale; layer_s) is swept over that range (basis ``fit``). A value derived from chip facts in
  calibration/defaults.json (LP30's layer_s) is swept over its stated range (basis ``derived``). A
  value with neither range falls back to a prior ASSUMPTION range:
  * ``calibration.<gpu family>.host_scale``, the multiplier on the serving engine's host work
    (catalog/data/engines.yaml: per step and per sequence), swept over
    the engine's own stated range for its per-step host time (low/value to high/value times the
    value in use). Whether that host work costs anything depends on the engine: an overlap
    scheduler hides it behind the GPU step until it is the longer of the two.
  * ``calibration.<lpu/wafer family>.layer_s``, the per-layer pipeline latency of a dataflow chip
    (C2C hop plus synchronisation), from half to double the value in use: it is an assumption, or
    a fit to very few published LPU/wafer results.
- speculative acceptance (a plan with a `spec:` section and no `spec.acceptance` of its own): one
  multiplier on the default per-position acceptance, ``spec.ENTRY.acceptance_scale``, over the
  published spread or, for an assumed one, the span of the measured drafters (spec_acceptance.py).

A sweep point that makes the deployment impossible (an InputError: the model no longer fits,
the batch's KV cache no longer fits, ...) is kept in its row as "does not fit" with the reason;
such rows sort first, since that unknown decides whether the deployment works at all. Only a
failing baseline is an error.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Optional

from pydantic import BaseModel

from infersim.catalog.engines import load_engines
from infersim.catalog.hardware import HardwareCatalog, Quantity, load_catalog
from infersim.catalog.models import ModelArch, load_model
from infersim.calibration.efficiency import Calibration, Efficiency, load_calibration
from infersim.deployments.plan import Plan
from infersim.estimate import estimate_plan
from infersim.modes import build_plan
from infersim.deployments.spec import DeploymentSpec
from infersim.deployments.spec_acceptance import NOTE as ACCEPTANCE_NOTE, AcceptanceRange, acceptance_input, \
    with_acceptance
from infersim.economics import Prices, load_prices, plan_economics, throughput_of_plan_estimate
from infersim.errors import InputError

COST_METRICS = ("cost_per_mtok_output_usd", "cost_per_mtok_input_usd")  # USD per million tokens (economics)
METRICS = ("tok_s_per_user", "output_tok_s", "tok_s_per_rack", "tok_s_per_mw", "ttft_s", "tpot_s") + COST_METRICS
UNCERTAIN = ("estimate", "assumption")
SKIPPED_FIELDS = ("capex_usd", "cloud_usd_per_hour")  # cost: no metric here depends on it
LAYER_S_FACTOR = 2.0  # layer_s is swept from value / 2 to value * 2
DOES_NOT_FIT = "does not fit"
# what each fitted calibration value stands for (the notes of its sensitivity row)
FITTED_NOTES = {
    "compute_eff": "achieved fraction of peak FLOP/s in large matrix products",
    "mem_eff": "achieved fraction of peak memory bandwidth",
    "host_scale": "engine CPU time per step and per sequence; hidden by an overlap scheduler while the GPU step "
                  "is longer",
    "layer_s": "C2C / fabric hop plus synchronisation per layer; no kernel-level measurement",
    "hop_scale": "latency of a pipeline hop between systems (wafer to wafer) as a multiple of the link's catalog "
                 "latency; not published",
}


@dataclass
class _Range:
    """An input and its range: name, basis and source, with low / base / high values."""

    name: str
    basis: str
    source: str
    low: float
    base: float
    high: float


@dataclass
class SensitivityRow(_Range):
    """One swept input. ``low``/``base``/``high`` are the input's values (in the unit its name
    implies: s, W, bytes, bytes/s, FLOP/s); ``metric_low``/``metric_high`` the metric with the input
    at its low / high end (None when that point does not fit, with ``low_error``/``high_error``
    saying why); ``swing`` = |metric_high - metric_low| / baseline (None if a point does not fit)."""

    metric_low: Optional[float] = None
    metric_high: Optional[float] = None
    swing: Optional[float] = None
    low_error: Optional[str] = None
    high_error: Optional[str] = None
    note: str = ""

    @property
    def fits(self) -> bool:
        return self.low_error is None and self.high_error is None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SensitivityReport:
    deployment: str
    mode: str
    model: str
    metric: str
    batch: int
    input_len: int
    output_len: int
    baseline: float
    calibration: str
    rows: list[SensitivityRow] = field(default_factory=list)

    @property
    def most_sensitive(self) -> Optional[SensitivityRow]:
        """The row with the largest swing among rows whose both points fit (None if there is none)."""
        fitting = [r for r in self.rows if r.fits]
        return max(fitting, key=lambda r: r.swing) if fitting else None

    @property
    def breaking(self) -> list[SensitivityRow]:
        """Rows where one end of the input's range makes the deployment impossible."""
        return [r for r in self.rows if not r.fits]

    def to_dict(self, top: Optional[int] = None) -> dict:
        best = self.most_sensitive
        rows = self.rows if top is None else self.rows[:top]
        return {"deployment": self.deployment, "mode": self.mode, "model": self.model, "metric": self.metric,
                "batch": self.batch, "input_len": self.input_len, "output_len": self.output_len,
                "baseline": self.baseline, "calibration": self.calibration, "swept": len(self.rows),
                "most_sensitive": None if best is None else {"name": best.name, "swing": best.swing},
                "does_not_fit": [r.name for r in self.breaking], "rows": [r.to_dict() for r in rows]}


# ------------------------------------------------------------------------------------------- calibration

class _TweakedCalibration:
    """A calibration that answers like `base`, except that chips of (kind, family) get `field`
    replaced by `value`. It has the interface build_plan uses (`for_chip`, `provenance`)."""

    def __init__(self, base: Calibration, kind: str, family: str, field_name: str, value: float):
        self.base, self.key, self.field, self.value = base, (kind, family), field_name, value

    def for_chip(self, kind: str, family: str) -> Efficiency:
        eff = self.base.for_chip(kind, family)
        return replace(eff, **{self.field: self.value}) if (kind, family) == self.key else eff

    def provenance(self, kind: str, family: str) -> str:
        note = self.base.provenance(kind, family)
        if (kind, family) == self.key:
            note += f"; sensitivity sweep: {self.field}={self.value:g}"
        return note


# ------------------------------------------------------------------------------------------ what to sweep

@dataclass
class _Input(_Range):
    note: str
    override: Optional[str] = None                     # NAME.FIELD  (catalog)
    calib: Optional[tuple[str, str, str]] = None       # (kind, family, field)  (calibration)
    acceptance: Optional[AcceptanceRange] = None       # the spec's acceptance, scaled (spec_acceptance)


def _deployments(plan: Plan) -> list:
    return [p.deployment for p in plan.pools]


def _used_entries(plan: Plan, catalog: HardwareCatalog, chips: dict, links: dict, systems: dict) -> None:
    """Collect (in a stable order) the catalog chips, links and systems `plan` uses."""
    def add_link(link) -> None:
        if link is not None:
            name = link if isinstance(link, str) else link.name
            if name in catalog.links:
                links.setdefault(name, catalog.links[name])

    def add_system(system) -> None:
        if system is None or system.name not in catalog.systems:  # ad-hoc "N x chip" systems have no entry
            return
        s = catalog.systems[system.name]
        systems.setdefault(s.name, s)
        add_link(s.scale_up_link)
        add_link(s.scale_out_link)

    for d in _deployments(plan):
        chips.setdefault(d.chip.name, catalog.chips[d.chip.name])
        add_link(d.scale_up)
        add_link(d.scale_out)
        add_system(d.system)
    for link in plan.links.values():
        add_link(link)
    # the racks the plan counts (and powers) are the file's named systems
    spec = plan.spec
    for part, key in ((spec.gpu, "gpu"), (spec.lpu, "lpu")):
        if part is not None and key in plan.racks:
            add_system(catalog.resolve_system(part.system))
    if plan.premium is not None:
        _used_entries(plan.premium, catalog, chips, links, systems)


def _quantity_input(name: str, override: str, q: Quantity) -> Optional[_Input]:
    if q.basis not in UNCERTAIN or q.value is None or q.low is None or q.high is None or not q.low < q.high:
        return None
    return _Input(name, q.basis, q.source, float(q.low), float(q.value), float(q.high), q.note, override=override)


def _catalog_inputs(entries: list[BaseModel]) -> list[_Input]:
    out: list[_Input] = []
    for entry in entries:
        for fname in type(entry).model_fields:
            if fname in SKIPPED_FIELDS:
                continue
            v = getattr(entry, fname)
            if isinstance(v, Quantity):
                item = _quantity_input(f"{entry.name}.{fname}", f"{entry.name}.{fname}", v)
                if item is not None:
                    out.append(item)
            elif fname == "peak_flops":
                for prec, q in v.items():
                    key = f"{entry.name}.peak_flops.{prec}"
                    item = _quantity_input(key, key, q)
                    if item is not None:
                        out.append(item)
    return out


def _calibration_inputs(plan: Plan, calibration: Calibration) -> list[_Input]:
    out: list[_Input] = []
    seen: set[tuple[str, str]] = set()
    pending = [plan]
    while pending:
        p = pending.pop(0)
        if p.premium is not None:
            pending.append(p.premium)
        for d in _deployments(p):
            key = (d.chip.kind, d.chip.family)
            if key in seen:
                continue
            seen.add(key)
            kind, family = key
            used = calibration.for_chip(kind, family)
            how = calibration.provenance(kind, family)
            fitted = getattr(calibration, "uncertainty", lambda *_: {})(kind, family)
            for fname, (low, high, basis) in fitted.items():  # the fit's own range for every value it fitted
                if fname not in FITTED_NOTES or not low < high:
                    continue
                out.append(_Input(
                    f"calibration.{family}.{fname}", "derived" if basis.startswith("derived") else "fit", f"{fname} {getattr(used, fname):g} in use ({how}); "
                    f"range {low:g}-{high:g}: {basis}", low, getattr(used, fname), high, FITTED_NOTES[fname],
                    calib=(kind, family, fname)))
            if kind == "gpu" and d.engine is not None and "host_scale" not in fitted:
                q = load_engines().quantity(d.engine.name, "host_step_s")
                if q.low is not None and q.high is not None and q.value and q.low < q.high:
                    v = used.host_scale
                    out.append(_Input(
                        f"calibration.{family}.host_scale", "assumption",
                        f"{d.engine.name} host work per step {q.value:g} s, range {q.low:g}-{q.high:g} s "
                        f"(catalog/data/engines.yaml), times host_scale {v:g} in use ({how})",
                        v * q.low / q.value, v, v * q.high / q.value,
                        FITTED_NOTES["host_scale"], calib=(kind, family, "host_scale")))
            elif kind in ("lpu", "wafer") and used.layer_s > 0 and "layer_s" not in fitted:
                v = used.layer_s
                out.append(_Input(
                    f"calibration.{family}.layer_s", "assumption",
                    f"{kind} per-layer pipeline latency in use ({how}), swept from half to double",
                    v / LAYER_S_FACTOR, v, v * LAYER_S_FACTOR, FITTED_NOTES["layer_s"],
                    calib=(kind, family, "layer_s")))
    return out


def sweep_inputs(plan: Plan, catalog: HardwareCatalog, calibration: Calibration, economics=None) -> list[_Input]:
    """Every uncertain input `plan` uses, with its range (see the module docstring); with the plan's
    `economics` (a cost metric), also every uncertain price it used."""
    chips: dict = {}
    links: dict = {}
    systems: dict = {}
    _used_entries(plan, catalog, chips, links, systems)
    out = (_catalog_inputs([*chips.values(), *links.values(), *systems.values()])
           + _calibration_inputs(plan, calibration))
    acc = acceptance_input(plan.spec, plan.model)
    if acc is not None:
        out.append(_Input(acc.name, acc.basis, acc.source, acc.low, 1.0, acc.high, ACCEPTANCE_NOTE, acceptance=acc))
    if economics is not None:
        have = {i.override for i in out}
        out += [_Input(u.name, u.basis, u.source, float(u.low), u.value, float(u.high), u.note, override=u.name)
                for u in economics.prices if u.uncertain and u.name not in have and u.low is not None
                and u.high is not None and u.low < u.high]
    return out


# ------------------------------------------------------------------------------------------------- sweep

def _economics(plan: Plan, d: dict, catalog, prices: Prices, pricing: str):
    return plan_economics(plan, throughput_of_plan_estimate(d), catalog, prices, pricing)


def _metric(spec: DeploymentSpec, model: ModelArch, catalog, calibration, metric: str, batch: int, input_len: int,
            output_len: int, prices: Prices, pricing: str) -> float:
    plan = build_plan(spec, model, catalog, calibration)
    d = estimate_plan(plan, batch, input_len, output_len)
    v = getattr(_economics(plan, d, catalog, prices, pricing), metric) if metric in COST_METRICS else d.get(metric)
    if v is None:
        raise InputError(f"{metric} is not defined for deployment '{spec.name}' (no rack count or power figure); "
                         f"pick another --metric")
    return float(v)


def _point(spec, model, catalog, calibration, item: _Input, value: float, args) -> tuple[Optional[float], Optional[str]]:
    try:
        if item.acceptance is not None:
            cat, cal, spec = catalog, calibration, with_acceptance(spec, item.acceptance, value)
        elif item.override is not None and item.override.startswith("economics."):
            cat, cal = catalog, calibration
            args = (*args[:4], args[4].with_overrides([f"{item.override}={value!r}"]), args[5])
        elif item.override is not None:
            cat = catalog.with_overrides([f"{item.override}={value!r}"])
            cal = calibration
        else:
            kind, family, fname = item.calib
            cat, cal = catalog, _TweakedCalibration(calibration, kind, family, fname, value)
        return _metric(spec, model, cat, cal, *args), None
    except InputError as e:
        return None, f"{DOES_NOT_FIT}: {e}"


def _sort_key(r: SensitivityRow):
    return (r.fits, -(r.swing or 0.0), r.name)


def sensitivity(spec: DeploymentSpec, model: ModelArch | str | None = None, *, metric: str = "tok_s_per_user",
                batch: int = 1, input_len: int = 1024, output_len: int = 256,
                catalog: HardwareCatalog | None = None, calibration: Calibration | None = None,
                prices: Prices | None = None, pricing: str = "capex") -> SensitivityReport:
    """Sweep each uncertain input of `spec`'s plan over its range; see the module docstring.
    `prices` (default the shipped economics inputs) and `pricing` (capex or cloud) serve the cost metrics.

    Raises InputError when the baseline itself cannot be built or estimated."""
    if metric not in METRICS:
        raise InputError(f"unknown metric '{metric}'; choose one of {', '.join(METRICS)}")
    for label, v in (("batch", batch), ("input", input_len), ("output", output_len)):
        if v < 1:
            raise InputError(f"--{label} must be at least 1, got {v}")
    catalog = catalog or load_catalog()
    calibration = calibration or load_calibration()
    if model is None:
        if spec.model is None:
            raise InputError(f"deployment '{spec.name}' names no model; pass --model")
        model = spec.model
    if isinstance(model, str):
        model = load_model(model)
    prices = prices or load_prices()
    args = (metric, batch, input_len, output_len, prices, pricing)

    plan = build_plan(spec, model, catalog, calibration)
    d = estimate_plan(plan, batch, input_len, output_len)
    econ = _economics(plan, d, catalog, prices, pricing) if metric in COST_METRICS else None
    base = getattr(econ, metric) if econ is not None else d.get(metric)
    if base is None:
        raise InputError(f"{metric} is not defined for deployment '{spec.name}' (no rack count or power figure); "
                         f"pick another --metric")
    base = float(base)
    if not math.isfinite(base) or base == 0:
        raise InputError(f"{metric} of deployment '{spec.name}' is {base:g}; a relative swing is undefined, "
                         f"pick another --metric")

    rows = []
    for item in sweep_inputs(plan, catalog, calibration, econ):
        lo, lo_err = _point(spec, model, catalog, calibration, item, item.low, args)
        hi, hi_err = _point(spec, model, catalog, calibration, item, item.high, args)
        swing = abs(hi - lo) / abs(base) if lo is not None and hi is not None else None
        rows.append(SensitivityRow(item.name, item.basis, item.source, item.low, item.base, item.high,
                                   lo, hi, swing, lo_err, hi_err, item.note))
    rows.sort(key=_sort_key)
    notes = getattr(calibration, "source", None)
    return SensitivityReport(deployment=spec.name, mode=spec.mode, model=model.name, metric=metric, batch=batch,
                             input_len=input_len, output_len=output_len, baseline=base,
                             calibration=str(notes) if notes is not None else "custom", rows=rows)

