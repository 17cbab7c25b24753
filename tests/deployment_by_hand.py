"""Racks and power of a deployment file, counted by hand from the file and the catalog's system YAML.

Tests compare per-rack and per-MW outputs with these figures, never with the racks and power the
output reports about itself (imported by the test modules; pytest puts tests/ on sys.path)."""
from __future__ import annotations

from pathlib import Path

import yaml

SYSTEMS = Path(__file__).resolve().parents[1] / "src" / "infersim" / "catalog" / "data" / "systems"


def system_power(name: str) -> dict:
    """A rack's `power_w` entry straight from systems/<name>.yaml (value, and low/high when given), in W."""
    return yaml.safe_load((SYSTEMS / f"{name}.yaml").read_text())["power_w"]


def system_power_w(name: str) -> float:
    return float(system_power(name)["value"])


def racks_and_power(d: dict) -> tuple[float, float]:
    """(racks, watts) of a deployment file's dict: GPU racks (`gpu.racks`, default 1) for the gpu, afd
    and spec modes, plus `lpu.racks_per_gpu_rack` LPU racks per GPU rack for afd and spec, or
    `lpu.racks` for an LPU-only file; each rack at its system's catalog power."""
    racks, power = 0.0, 0.0
    gpu_racks = d["gpu"].get("racks", 1) if d["mode"] in ("gpu", "afd", "spec") else 0
    if gpu_racks:
        racks += gpu_racks
        power += gpu_racks * system_power_w(d["gpu"]["system"])
    if d["mode"] in ("afd", "spec"):
        n = d["lpu"].get("racks_per_gpu_rack", 1) * gpu_racks
        racks += n
        power += n * system_power_w(d["lpu"]["system"])
    if d["mode"] == "lpu":
        racks += d["lpu"]["racks"]
        power += d["lpu"]["racks"] * system_power_w(d["lpu"]["system"])
    return racks, power
