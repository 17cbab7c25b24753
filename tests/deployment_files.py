"""Shipped example deployment files and variants of them written to a temporary directory
(imported by the test modules; pytest puts tests/ on sys.path)."""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "deployments"


def example(name: str) -> dict:
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())


def write(tmp_path: Path, d: dict, name: str = "dep") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def variant(tmp_path: Path, base: str, name: str = "dep", **changes) -> Path:
    """A copy of an example file with top-level fields replaced (dicts merged one level deep; a
    None inside a merged dict drops that field, a None top-level value drops the section)."""
    d = copy.deepcopy(example(base))
    for k, v in changes.items():
        if isinstance(v, dict) and isinstance(d.get(k), dict):
            d[k] = {kk: vv for kk, vv in {**d[k], **v}.items() if vv is not None}
        elif v is None:
            d.pop(k, None)
        else:
            d[k] = v
    return write(tmp_path, d, name)
