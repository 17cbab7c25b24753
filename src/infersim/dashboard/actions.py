"""What the dashboard runs on demand: one `estimate` of a deployment (sweep.evaluate.estimate_config,
the evaluation every stored row came from) and a small `frontier` (planner.frontier.run_frontier).

Neither writes the user's results file: an on-demand frontier goes into a DuckDB file of the
dashboard's own temporary folder (removed when it stops) and is drawn with the same figures as
the stored results. Requests are bounded (families, batches, token counts) so one click cannot
occupy the machine for long; deployments are chosen by key from a list the server made (stored
rows, and examples/deployments/ when run from a checkout), never by a path from the page.
"""
from __future__ import annotations

import functools
import itertools
import tempfile
import threading
from pathlib import Path
from typing import Optional

from infersim.dashboard.state import Results, Selection
from infersim.errors import InputError, shown

MAX_FRONTIER_FAMILIES = 2
MAX_FRONTIER_BATCHES = 6
MAX_BATCH = 4096            # sequences per decode replica
MAX_TOKENS = 1_000_000      # input or output tokens per request
# examples/deployments/ beside the package in a source checkout; absent from an installed wheel
EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "examples" / "deployments"


def whole(value, name: str, high: int) -> int:
    """`value` as a whole number in 1..high, else an InputError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit():
        raise InputError(f"{name} must be a whole number from 1 to {high}; got '{shown(value)}'")
    n = int(value)
    if not 1 <= n <= high:
        raise InputError(f"{name} must be from 1 to {high}; got {n}")
    return n


def deployment_choices(results: Results, model: str) -> dict[str, dict]:
    """{key: {label, source, deployment}}: the model's stored deployments (their canonical
    deployment body from the results' config column) and the example deployment files."""
    import json
    out: dict[str, dict] = {}
    for r in results.rows:
        if r["model"] == model and f"stored:{r['deployment']}" not in out:
            out[f"stored:{r['deployment']}"] = {"label": r["deployment"], "source": "results file",
                                                "deployment": json.loads(r["config"])["deployment"]}
    for name, dep in example_deployments().items():
        out[f"example:{name}"] = {"label": name, "source": "examples/deployments", "deployment": dep}
    return out


@functools.lru_cache(maxsize=1)
def example_deployments() -> dict[str, dict]:
    """{file stem: deployment body} of examples/deployments/*.yaml that load; {} without a checkout."""
    from infersim.modes import load_spec
    from infersim.sweep.spec import LABELS
    out = {}
    for p in sorted(EXAMPLES_DIR.glob("*.yaml")) if EXAMPLES_DIR.is_dir() else []:
        try:
            out[p.stem] = load_spec(p).model_dump(mode="json", exclude=set(LABELS))
        except InputError:
            continue  # an example this version cannot read is not offered
    return out


def run_estimate(results: Results, req: dict) -> dict:
    """estimate_config of the chosen deployment for `req` {model, deployment (a key of
    deployment_choices), batch, input_len, output_len}: the results columns, status and error."""
    from infersim.sweep.evaluate import estimate_config
    model = str(req.get("model", ""))
    choices = deployment_choices(results, model)
    key = req.get("deployment")
    if key not in choices:
        raise InputError(f"unknown deployment '{shown(key)}' for model '{shown(model)}'; pick one from the list")
    batch = whole(req.get("batch"), "batch", MAX_BATCH)
    inp, out = whole(req.get("input_len"), "input_len", MAX_TOKENS), whole(req.get("output_len"), "output_len", MAX_TOKENS)
    body = {"model": model, "deployment": choices[key]["deployment"],
            "workload": {"input_len": inp, "output_len": out, "trace": None}, "load": {"kind": "batch", "value": batch}}
    row = estimate_config(body)
    return {"deployment": choices[key]["label"], "source": choices[key]["source"], "model": model, "batch": batch,
            "input_len": inp, "output_len": out, **row}


@functools.lru_cache(maxsize=8)
def frontier_families(model: str) -> tuple[str, ...]:
    """The planner's families that apply to `model` (planner.families; skipped ones left out)."""
    from infersim.calibration.efficiency import load_calibration
    from infersim.catalog.hardware import load_catalog
    from infersim.catalog.models import load_model
    from infersim.planner.families import families
    return tuple(f.name for f in families(load_model(model), load_catalog(), load_calibration(None)) if not f.skipped)


class Frontiers:
    """On-demand frontiers, each in its own DuckDB file under a private temporary folder; one runs
    at a time."""

    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="infersim-dashboard-")
        self._lock = threading.Lock()
        self._count = itertools.count(1)

    def run(self, req: dict) -> dict:
        from infersim.planner.frontier import run_frontier
        model = str(req.get("model", ""))
        fams = req.get("families")
        if not isinstance(fams, list) or not 1 <= len(fams) <= MAX_FRONTIER_FAMILIES:
            raise InputError(f"choose 1 to {MAX_FRONTIER_FAMILIES} families for an on-demand frontier")
        known = frontier_families(model)
        for f in fams:
            if f not in known:
                raise InputError(f"unknown family '{shown(f)}' for {shown(model)}; choose from {', '.join(known)}")
        batches = req.get("batches")
        if not isinstance(batches, list) or not 1 <= len(batches) <= MAX_FRONTIER_BATCHES:
            raise InputError(f"give 1 to {MAX_FRONTIER_BATCHES} batches for an on-demand frontier")
        batches = sorted({whole(b, "batch", MAX_BATCH) for b in batches})
        inp, out = whole(req.get("input_len"), "input_len", MAX_TOKENS), whole(req.get("output_len"), "output_len", MAX_TOKENS)
        with self._lock:
            path = Path(self._dir.name) / f"frontier-{next(self._count)}.duckdb"
            res = run_frontier(model, inp, out, batches=batches, only=list(fams), out=path, sensitivity=False)
            figures = Results(path).figures(Selection(res.model, (inp, out, None)))
        return {"screened": res.screened, "seconds": round(res.seconds, 2), "families": list(fams),
                "batches": batches, "input_len": inp, "output_len": out, **figures}

    def close(self) -> None:
        self._dir.cleanup()


def parse_optional_float(text: Optional[str], name: str) -> Optional[float]:
    """A query parameter: empty -> None, else a finite number >= 0."""
    if text is None or not str(text).strip():
        return None
    try:
        v = float(text)
    except ValueError:
        raise InputError(f"{name} must be a number; got '{shown(text)}'") from None
    if not v >= 0 or v == float("inf"):
        raise InputError(f"{name} must be a finite number at least 0; got '{shown(text)}'")
    return v
