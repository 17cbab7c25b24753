"""Economics inputs that are not hardware: lifetime, PUE, electricity price, idle draw and token
price tiers, each a sourced :class:`Quantity` (data: catalog/data/economics.yaml).

Hardware prices stay on the hardware catalog's chips and systems (`capex_usd`, USD;
`cloud_usd_per_hour`, USD per hour), so `--set NAME.capex_usd=...` overrides them as any other
catalog number. These ones are overridden as ``economics.FIELD=VALUE`` (``economics.pue=1.2``) and
``economics.TIER.FIELD=VALUE`` (``economics.premium.usd_per_mtok_output=30``); the override
becomes an assumption with no range, like a catalog override.
"""
from __future__ import annotations

import functools
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from infersim.catalog.hardware import DATA_DIR, Quantity, _Loader, _num, _override_quantity
from infersim.errors import InputError, shown, unknown_name
from infersim.inputs import read_user_text

import yaml

PREFIX = "economics"  # --set economics.FIELD=VALUE
PRICES_FILE = DATA_DIR / "economics.yaml"
SECONDS_PER_YEAR = 365.25 * 24 * 3600.0  # a Julian year: lifetimes are stated in years
# field -> (smallest allowed value, whether the smallest is allowed, largest, unit, example)
_BOUNDS: dict[str, tuple[float, bool, float, str, str]] = {
    "lifetime_years": (0.0, False, 50.0, "years", "5"),
    "pue": (1.0, True, 5.0, "facility W per IT W", "1.3"),
    "usd_per_kwh": (0.0, False, 10.0, "USD/kWh", "0.0875 for 8.75 cents"),
    "idle_power_fraction": (0.0, True, 1.0, "fraction of rated power", "0.3"),
    "usd_per_mtok_input": (0.0, False, 1e4, "USD per million tokens", "0.15"),
    "usd_per_mtok_output": (0.0, False, 1e4, "USD per million tokens", "0.60"),
}


def _checked(q: Quantity, field: str) -> Quantity:
    lo, lo_ok, hi, unit, example = _BOUNDS[field]
    if q.value is None:
        raise ValueError(f"value is null; give a number in {unit}, e.g. {example}")
    for part in ("value", "low", "high"):
        x = getattr(q, part)
        if x is not None and (x < lo or (x == lo and not lo_ok) or x > hi):
            rel = ">=" if lo_ok else ">"
            raise ValueError(f"{part} {x:g} is out of range: {field} must be {rel} {lo:g} and <= {hi:g} ({unit}), "
                             f"e.g. {example}")
    return q


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Assumptions(_Strict):
    """Operating assumptions. lifetime_years: years over which capex is amortised (straight line);
    pue: facility power / IT power; usd_per_kwh: electricity price, USD per kWh; idle_power_fraction:
    draw of idle hardware as a fraction of its rated power."""

    lifetime_years: Quantity
    pue: Quantity
    usd_per_kwh: Quantity
    idle_power_fraction: Quantity

    @field_validator("lifetime_years", "pue", "usd_per_kwh", "idle_power_fraction")
    @classmethod
    def _ok(cls, q: Quantity, info) -> Quantity:
        return _checked(q, info.field_name)


class TokenTier(_Strict):
    """A token price tier: USD per million input and per million output tokens."""

    description: str = ""
    usd_per_mtok_input: Quantity
    usd_per_mtok_output: Quantity

    @field_validator("usd_per_mtok_input", "usd_per_mtok_output")
    @classmethod
    def _ok(cls, q: Quantity, info) -> Quantity:
        return _checked(q, info.field_name)


class Prices(_Strict):
    """Everything in economics.yaml: the assumptions and the token price tiers (by name)."""

    assumptions: Assumptions
    tiers: dict[str, TokenTier]

    @field_validator("tiers")
    @classmethod
    def _some(cls, tiers: dict[str, TokenTier]) -> dict[str, TokenTier]:
        if not tiers:
            raise ValueError("give at least one token price tier")
        for name in tiers:
            if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name) or name in Assumptions.model_fields:
                raise ValueError(f"tier name '{name}' must be lower-case letters, digits, '-' or '_' and not an "
                                 "assumption's name")
        return tiers

    def quantity(self, key: str) -> Quantity:
        """The Quantity named ``economics.FIELD`` or ``economics.TIER.FIELD``."""
        path = key.split(".")[1:]
        if len(path) == 1:
            return getattr(self.assumptions, path[0])
        return getattr(self.tiers[path[0]], path[1])

    def keys(self) -> list[str]:
        """Every overridable name, e.g. economics.pue, economics.standard.usd_per_mtok_output."""
        out = [f"{PREFIX}.{f}" for f in Assumptions.model_fields]
        for t in self.tiers:
            out += [f"{PREFIX}.{t}.{f}" for f in ("usd_per_mtok_input", "usd_per_mtok_output")]
        return out

    def with_overrides(self, assignments: list[str]) -> Prices:
        """A copy with ``economics.FIELD=VALUE`` / ``economics.TIER.FIELD=VALUE`` applied (the value
        becomes an assumption, source 'user override'); InputError names an unknown key or a bad value."""
        data = self.model_dump()
        for text in assignments:
            m = re.fullmatch(r"\s*economics\.([\w.-]+?)\s*=\s*(\S.*?)\s*", text)
            if not m:
                raise InputError(f"bad override '{shown(text)}': write economics.FIELD=VALUE or "
                                 f"economics.TIER.FIELD=VALUE, e.g. economics.pue=1.2")
            key = f"{PREFIX}.{m.group(1)}"
            if key not in self.keys():
                raise unknown_name("economics price", key, self.keys(), hint=f" in override '{shown(text)}'; known: {', '.join(self.keys())}")
            path = m.group(1).split(".")
            slot = data["assumptions"] if len(path) == 1 else data["tiers"][path[0]]
            slot[path[-1]] = _override_quantity(_num(m.group(2), text), slot[path[-1]])
        return _validated(data, "overrides")


def is_price_override(text: str) -> bool:
    """Whether a --set assignment names an economics input (economics.FIELD=...) rather than a
    hardware catalog entry."""
    return text.strip().lower().startswith(PREFIX + ".")


def split_overrides(assignments: list[str] | None) -> tuple[list[str], list[str]]:
    """(hardware catalog assignments, economics assignments) from --set values, order kept."""
    items = list(assignments or ())
    return [a for a in items if not is_price_override(a)], [a for a in items if is_price_override(a)]


def _validated(raw, where: str) -> Prices:
    try:
        return Prices.model_validate(raw)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        raise InputError(f"{where}: economics field {loc}: {msg}") from None


@functools.lru_cache(maxsize=1)
def _packaged() -> Prices:
    text = read_user_text(PRICES_FILE, "economics file", "reinstall infersim")
    return _validated(yaml.load(text, Loader=_Loader), str(PRICES_FILE))


def load_prices(path: Path | None = None, overrides: list[str] | None = None) -> Prices:
    """The shipped economics inputs (or those in `path`), with ``economics.*`` overrides applied."""
    prices = _packaged() if path is None else _validated(
        yaml.load(read_user_text(path, "economics file", "give a YAML file like catalog/data/economics.yaml"),
                  Loader=_Loader), shown(path))
    return prices.with_overrides(overrides) if overrides else prices
