"""Published acceptance of speculative-decoding drafters (data/speculative.yaml), as per-position
conditional acceptance vectors: a_i = P(drafted token i is accepted | tokens 1..i-1 were).

Sources publish either the mean tokens per verification at several draft lengths k or the
unconditional share of verifications accepting position i; both become the conditional vector here
(the file's header says how). Entries are looked up by method and model, then the method's `"*"`
entry, which is an assumption and says so.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from infersim.errors import InputError

SPEC_FILE = Path(__file__).parent / "data" / "speculative.yaml"
HEAD_METHODS = ("mtp", "eagle")  # drafters that are heads on the target model, run on its own GPUs


class AcceptanceEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str
    method: Literal["mtp", "eagle"]
    models: list[str] = Field(min_length=1)
    mean_tokens_by_k: Optional[list[float]] = None
    accepted_share_by_position: Optional[list[float]] = None
    default_k: int = Field(ge=1)
    basis: Literal["measurement", "paper", "estimate", "assumption"]
    source: str = Field(min_length=1)
    note: str = ""
    # the published spread of mean tokens per verification at draft length k: {k: (low, high)}
    mean_tokens_range_by_k: dict[int, tuple[float, float]] = Field(default_factory=dict)
    range_source: str = ""

    @model_validator(mode="after")
    def _one_form(self) -> "AcceptanceEntry":
        if (self.mean_tokens_by_k is None) == (self.accepted_share_by_position is None):
            raise ValueError("give exactly one of mean_tokens_by_k and accepted_share_by_position")
        shares = self.shares()
        if any(not 0.0 <= s <= 1.0 for s in shares) or any(b > a for a, b in zip(shares, shares[1:])):
            raise ValueError(f"per-position accepted shares {shares} must lie in [0, 1] and not rise with position "
                             "(position i is accepted only if i-1 was)")
        if self.default_k > len(shares):
            raise ValueError(f"default_k {self.default_k} exceeds the {len(shares)} published positions")
        for k, (low, high) in self.mean_tokens_range_by_k.items():
            if not 1 <= k <= len(shares) or not 1.0 <= low <= high <= k + 1:
                raise ValueError(f"mean_tokens_range_by_k {k}: [{low}, {high}] needs 1 <= k <= {len(shares)} and "
                                 f"1 <= low <= high <= k + 1 (tokens per verification)")
        if self.mean_tokens_range_by_k and not self.range_source:
            raise ValueError("mean_tokens_range_by_k needs a range_source")
        return self

    @property
    def measured(self) -> bool:
        """Published figures for the entry's own models (not a stand-in for any model)."""
        return self.basis == "measurement" and "*" not in self.models

    def shares(self) -> list[float]:
        """Unconditional share of verifications accepting each drafted position."""
        if self.accepted_share_by_position is not None:
            return list(self.accepted_share_by_position)
        means = [1.0, *self.mean_tokens_by_k]
        return [round(b - a, 12) for a, b in zip(means, means[1:])]

    def conditional(self) -> tuple[float, ...]:
        """a_i = share_i / share_(i-1) (share_0 = 1): acceptance of position i given 1..i-1 accepted."""
        out, prev = [], 1.0
        for s in self.shares():
            out.append(s / prev if prev > 0 else 0.0)
            prev = s
        return tuple(out)


@functools.lru_cache(maxsize=1)
def acceptance_entries() -> tuple[AcceptanceEntry, ...]:
    raw = yaml.safe_load(SPEC_FILE.read_text())
    try:
        return tuple(AcceptanceEntry.model_validate(e) for e in raw["entries"])
    except ValidationError as e:  # a packaged-data bug, not user input
        raise ValueError(f"{SPEC_FILE.name}: {e}") from None


def measured_entries() -> tuple[AcceptanceEntry, ...]:
    """The entries measured on their own model: what a generic entry's range spans (spec_acceptance)."""
    return tuple(e for e in acceptance_entries() if e.measured)


def default_acceptance(method: str, model_name: str) -> AcceptanceEntry:
    """The entry for `method` and the model (catalog name), else the method's generic one."""
    entries = [e for e in acceptance_entries() if e.method == method]
    for wanted in (model_name.lower(), "*"):
        for e in entries:
            if wanted in (m.lower() for m in e.models):
                return e
    raise InputError(f"no published acceptance for method '{method}'; give spec.acceptance (--spec-acceptance)")
