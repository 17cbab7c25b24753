"""Speculative acceptance as an uncertain input of `deployments.sensitivity`.

A deployment with a `spec:` section and no `spec.acceptance` of its own runs on a default
acceptance vector (modes/_speculative.resolve): the published entry of its head method and model
(catalog/data/speculative.yaml), that method's generic entry (an assumption: another model's
figures), or a separate draft model's assumed 0.7 per token. The swept quantity is one multiplier
on every drafted position's conditional acceptance, capped at 1 (`scaled`); 1 is the default in
use, and the row is named ``spec.ENTRY.acceptance_scale`` (``draft-default`` for a draft model).
Its range, by where the default comes from:
- an entry measured on its own model with a published spread (``mean_tokens_range_by_k``, e.g.
  DeepSeek-V3's 85-90% second-token acceptance at k=1, relaxed acceptance lifting MTP3 to 3.10):
  the multipliers at which the entry's vector gives the spread's ends at each published k; basis
  measurement. A measured entry without a published spread is not swept;
- an assumption entry (mtp-generic, eagle3-generic): the multipliers at which its vector, at the
  plan's k, gives the mean tokens per verification of the weakest and of the strongest measured
  drafter in the catalog at that k (each at its own spread's end: gpt-oss-120b EAGLE-3 as published,
  DeepSeek MTP with relaxed acceptance); basis assumption;
- a draft model's default 0.7 per token: Leviathan et al.'s 0.6-0.8 (costmodel.specdec); basis
  assumption.
A `spec.acceptance` the user gave is their number and is not swept (run sensitivity at two values
to see its effect). A point rebuilds the plan from a copy of the spec whose `spec.acceptance` is
the scaled vector (and `spec.k` the plan's k).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from infersim.catalog.models import ModelArch
from infersim.catalog.speculative import AcceptanceEntry, default_acceptance, measured_entries
from infersim.costmodel.specdec import DRAFT_ACCEPTANCE_RANGE, DRAFT_DEFAULT_ACCEPTANCE, expected_tokens
from infersim.deployments.spec import DeploymentSpec

NOTE = ("multiplier on each drafted position's conditional acceptance (capped at 1; 1 = the default in use): "
        "fewer accepted drafts, fewer tokens per verification")
_BISECT_STEPS = 60


@dataclass(frozen=True)
class AcceptanceRange:
    """The acceptance a plan uses and the multiplier range to sweep it over."""
    name: str
    basis: str
    source: str
    low: float
    high: float
    vector: tuple[float, ...]  # the conditional per-position acceptance in use (k entries)


def scaled(vector, factor: float) -> tuple[float, ...]:
    """Every conditional acceptance times `factor`, capped at 1 (a probability)."""
    return tuple(min(1.0, a * factor) for a in vector)


def scale_for_mean_tokens(vector, target: float) -> float:
    """The multiplier at which `vector` yields `target` mean tokens per verification
    (costmodel.specdec.expected_tokens, which rises with the multiplier until every position is 1)."""
    hi = 1.0 / min((a for a in vector if a > 0), default=1.0)  # every position capped at 1 from here on
    if target >= expected_tokens(scaled(vector, hi)):
        return hi
    lo = 0.0
    for _ in range(_BISECT_STEPS):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if expected_tokens(scaled(vector, mid)) < target else (lo, mid)
    return 0.5 * (lo + hi)


def own_range(entry: AcceptanceEntry) -> tuple[float, float]:
    """(low, high) multipliers on `entry`'s vector spanning its published spread (1, 1 without one)."""
    vec = entry.conditional()
    ends = [scale_for_mean_tokens(vec[:k], m) for k, span in entry.mean_tokens_range_by_k.items() for m in span]
    return min([1.0, *ends]), max([1.0, *ends])


def measured_span(k: int) -> Optional[tuple[float, str, float, str]]:
    """(low, who, high, who): the fewest and the most mean tokens per verification at draft length k
    among the catalog's measured drafters, each at its own spread's end (None: none covers k)."""
    ends = []
    for e in measured_entries():
        vec = e.conditional()
        if len(vec) < k:
            continue
        lo, hi = own_range(e)
        ends.append((expected_tokens(scaled(vec[:k], lo)), expected_tokens(scaled(vec[:k], hi)), e.name))
    if not ends:
        return None
    weakest, strongest = min(ends), max(ends, key=lambda t: t[1])
    return weakest[0], weakest[2], strongest[1], strongest[2]


def _tokens(vector, factor: float) -> str:
    return f"{expected_tokens(scaled(vector, factor)):.2f}"


def acceptance_input(spec: DeploymentSpec, model: ModelArch) -> Optional[AcceptanceRange]:
    """The acceptance row for `spec` (the target `model`), or None: no `spec:` section, the user's
    own `spec.acceptance`, or a measured entry without a published spread. See the module docstring."""
    from infersim.modes._speculative import resolve
    part = spec.spec
    if part is None or part.acceptance is not None:
        return None
    sp = resolve(part, model)
    k, vec = sp.k, sp.acceptance
    if part.method == "draft":
        low, high = (a / DRAFT_DEFAULT_ACCEPTANCE for a in DRAFT_ACCEPTANCE_RANGE)
        return AcceptanceRange("spec.draft-default.acceptance_scale", "assumption",
                               f"{sp.source}; swept over {DRAFT_ACCEPTANCE_RANGE[0]:g}-{DRAFT_ACCEPTANCE_RANGE[1]:g} "
                               f"per token: {_tokens(vec, low)}-{_tokens(vec, high)} tokens per verification at k={k} "
                               f"(default {_tokens(vec, 1.0)})", low, high, vec)
    entry = default_acceptance(part.method, model.name)
    if entry.measured:
        if not entry.mean_tokens_range_by_k:
            return None
        low, high = own_range(entry)
        why = f"published spread: {entry.range_source}"
    else:
        span = measured_span(k)
        if span is None:
            return None
        e_low, weakest, e_high, strongest = span
        low, high = scale_for_mean_tokens(vec, e_low), scale_for_mean_tokens(vec, e_high)
        why = (f"an assumption for {model.name}: swept from the weakest measured drafter in the catalog at k={k} "
               f"({weakest}) to the strongest ({strongest}, at its spread's top)")
    return AcceptanceRange(f"spec.{entry.name}.acceptance_scale", entry.basis if entry.measured else "assumption",
                           f"{entry.name} ({entry.basis}): {_tokens(vec, low)}-{_tokens(vec, high)} tokens per "
                           f"verification at k={k} (default {_tokens(vec, 1.0)}); {why}", low, high, vec)


def with_acceptance(spec: DeploymentSpec, item: AcceptanceRange, factor: float) -> DeploymentSpec:
    """A copy of `spec` whose `spec.acceptance` is the vector in use scaled by `factor`."""
    part = spec.spec.model_copy(update={"acceptance": list(scaled(item.vector, factor)), "k": len(item.vector)})
    return spec.model_copy(update={"spec": part})
