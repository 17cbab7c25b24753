"""Execution modes: each module in this package registers one builder that turns a validated
`DeploymentSpec` into a `Plan` (deployments/plan.py): pools with their step timers, the links
between them, racks and power.

Adding a mode means adding one module here that calls `register(...)`; it is found by name, the
deployment file's `mode:` and `build_plan` use it, and nothing else changes (modules whose name
starts with '_' are helpers, not modes).
"""
from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path
from dataclasses import dataclass
from typing import Callable

from infersim.calibration.efficiency import Calibration, load_calibration
from infersim.catalog.hardware import HardwareCatalog, load_catalog
from infersim.catalog.models import ModelArch, load_model
from infersim.deployments.plan import Plan
from infersim.deployments.spec import DeploymentSpec, read_spec
from infersim.errors import InputError
from infersim.modes._shared import BuildContext, Sizing, add_footprint


@dataclass(frozen=True)
class Mode:
    name: str
    build: Callable[[BuildContext], Plan]
    needs: tuple[str, ...]  # spec sections the mode cannot do without
    description: str
    takes: tuple[str, ...] = ()  # optional sections the mode reads (a file giving one it does not read is refused)


_MODES: dict[str, Mode] = {}
OPTIONAL_SECTIONS = ("spec",)  # sections a mode must declare it reads (`takes`) to be given one


def register(name: str, *, needs: tuple[str, ...], description: str, takes: tuple[str, ...] = ()):
    """Decorator: register `build(ctx) -> Plan` as mode `name`; `takes`: the optional sections it
    reads of those only some modes read (`spec`)."""
    def wrap(build: Callable[[BuildContext], Plan]):
        if name in _MODES:
            raise ValueError(f"mode '{name}' registered twice")
        _MODES[name] = Mode(name, build, needs, description, takes)
        return build
    return wrap


def modes() -> dict[str, Mode]:
    """Every registered mode (importing this package's mode modules on first use)."""
    if not _MODES:
        for info in pkgutil.iter_modules(__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{__name__}.{info.name}")
    return dict(_MODES)


def mode_of(spec: DeploymentSpec, where: str | None = None) -> Mode:
    """The spec's mode, after checking it is registered and its sections are there."""
    where = where or f"deployment '{spec.name}'"
    known = modes()
    mode = known.get(spec.mode)
    if mode is None:
        raise InputError(f"{where}: unknown mode '{spec.mode}'; choose one of {', '.join(sorted(known))}")
    for part in mode.needs:
        if getattr(spec, part) is None:
            raise InputError(f"{where}: mode '{spec.mode}' needs a '{part}' section; add it (see examples/deployments/)")
    for part in OPTIONAL_SECTIONS:
        if getattr(spec, part) is not None and part not in mode.needs + mode.takes:
            users = sorted(m.name for m in known.values() if part in m.needs + m.takes)
            raise InputError(f"{where}: mode '{spec.mode}' cannot use a '{part}' section; drop it or pick a mode that "
                             f"does ({', '.join(users)})")
    return mode


def build_plan(spec: DeploymentSpec, model: ModelArch | None = None, catalog: HardwareCatalog | None = None,
               calibration: Calibration | None = None, sizing: Sizing | None = None) -> Plan:
    """Compile a deployment spec into a plan: the mode's builder, then SLO routing (a premium
    plan built from the same spec with the premium path's mode)."""
    catalog = catalog or load_catalog()
    calibration = calibration or load_calibration()
    if model is None:
        if spec.model is None:
            raise InputError(f"deployment '{spec.name}' names no model; pass --model")
        model = load_model(spec.model)
    mode = mode_of(spec)
    plan = mode.build(BuildContext(spec, model, catalog, calibration, sizing))
    if spec.routing is not None:
        # the premium path serves without the main path's speculative decoding (its section is
        # written for the main path's chips)
        premium_spec = spec.model_copy(update={"mode": spec.routing.premium_path, "routing": None, "spec": None,
                                               "gpu": spec.gpu if spec.routing.premium_path == "afd" else None})
        plan.premium = build_plan(premium_spec, model, catalog, calibration)
        add_footprint(plan, plan.premium.racks, plan.premium.power_w)
        plan.notes.append(f"SLO routing: {spec.routing.premium_fraction:.0%} of requests (premium) go to the "
                          f"{spec.routing.premium_path} path, the rest to the {spec.mode} path")
    return plan


def load_spec(path) -> DeploymentSpec:
    """Read a deployment file and check it: its fields, and that its mode is registered with the
    sections that mode needs. Every problem is one InputError line."""
    spec = read_spec(path)
    mode_of(spec, Path(path).name)
    return spec
