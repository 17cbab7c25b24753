"""The evaluation a sweep worker runs on one configuration: for now `estimate` of the deployment at
the load (estimate.estimate_plan: steady state, every decode replica running `batch` sequences),
through the typed API with the shipped catalog and calibration.

An evaluation function takes a configuration's `body` (sweep/spec.py) and returns a dict of the
`results` table's metric columns (store.METRICS) plus `batch`, `status` and `error`; it never
raises for a configuration that cannot run: an impossible deployment or load (an InputError: does
not fit, unknown name, ...) is status `infeasible` with the reason; any other exception is status
`error` with its type and message, so one bad point never stops a sweep.
"""
from __future__ import annotations

import functools

from infersim.errors import InputError

EMPTY = {"tok_s_per_user": None, "output_tok_s": None, "ttft_s": None, "tpot_s": None, "racks": None,
         "power_w": None, "tok_s_per_mw": None, "cost_per_mtok_output_usd": None, "cost_per_mtok_input_usd": None,
         "output_tok_per_usd": None}


@functools.lru_cache(maxsize=1)
def _inputs():
    """Catalog and calibration, loaded once per worker process."""
    from infersim.calibration.efficiency import load_calibration
    from infersim.catalog.hardware import load_catalog
    return load_catalog(), load_calibration(None)


@functools.lru_cache(maxsize=64)
def _model(name: str):
    from infersim.catalog.models import load_model
    return load_model(name)


def _batch(plan, load: dict) -> int:
    """Sequences per decode replica: the batch itself, or the concurrency spread evenly over the
    decode replicas (floor; fewer sequences than replicas is refused: the rest would idle)."""
    if load["kind"] == "batch":
        return int(load["value"])
    replicas = plan.decode_pool.replicas
    if load["value"] < replicas:
        raise InputError(f"concurrency {load['value']} is below the deployment's {replicas} decode replicas; "
                         "raise it or use fewer racks")
    return int(load["value"]) // replicas


def estimate_config(body: dict) -> dict:
    """`estimate` of one configuration: metric columns, `batch`, `status` and `error`."""
    from infersim.deployments.spec import DeploymentSpec
    from infersim.estimate import estimate_plan
    from infersim.modes import build_plan
    row = {**EMPTY, "batch": None, "status": "ok", "error": None}
    try:
        catalog, calibration = _inputs()
        spec = DeploymentSpec.model_validate({"name": "sweep", **body["deployment"]})
        plan = build_plan(spec, _model(body["model"]), catalog, calibration)
        batch = row["batch"] = _batch(plan, body["load"])
        w = body["workload"]
        d = estimate_plan(plan, batch=batch, input_len=w["input_len"], output_len=w["output_len"])
    except InputError as e:
        return {**row, "status": "infeasible", "error": str(e)}
    except Exception as e:  # noqa: BLE001 - a bug on one point is recorded, not fatal to the sweep
        return {**row, "status": "error", "error": f"{type(e).__name__}: {e}"}
    row.update({k: d[k] for k in ("tok_s_per_user", "output_tok_s", "ttft_s", "tpot_s", "power_w", "tok_s_per_mw")})
    row["racks"] = plan.total_racks
    row.update(_costs(plan, d, catalog))
    return row


def _costs(plan, d: dict, catalog) -> dict:
    """Cost columns at the catalog's prices, buying the hardware (economics.plan_economics, capex
    pricing); NULL where a system has no price (the row stays `ok`: its speed still stands)."""
    from infersim.economics import load_prices, plan_economics, throughput_of_plan_estimate
    try:
        e = plan_economics(plan, throughput_of_plan_estimate(d), catalog, load_prices(), "capex")
    except InputError:
        return {}
    return {"cost_per_mtok_output_usd": e.cost_per_mtok_output_usd, "cost_per_mtok_input_usd": e.cost_per_mtok_input_usd,
            "output_tok_per_usd": e.output_tok_per_usd}


def evaluate_chunk(evaluate, chunk: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
    """[(config_id, evaluate(body))] of a chunk: the unit of work a pool worker or Ray task runs."""
    return [(cid, evaluate(body)) for cid, body in chunk]
