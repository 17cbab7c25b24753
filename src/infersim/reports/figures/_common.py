"""What several figures share: the headline band and points, plans rebuilt from stored
configurations (catalog and calibration loaded once per report)."""
from __future__ import annotations

from typing import Optional

from infersim.planner.verdict import best_per_family, decide
from infersim.reports.data import ReportData

HEADLINE_BAND = "50-150"  # tok/s per user: a reader's default; `infersim report --band` changes it
HEADLINE_OBJECTIVE = "tok_s_per_mw"
# what confirmed points are, in captions and assumptions (planner/confirm.py's method)
REPLAY_ASSUMPTION = ("simulated points: each family's analytical Pareto points replayed through the serving "
                     "simulator (planner/confirm.py: closed loop at batch x decode replicas users, the trace's first "
                     "requests; tok/s per user = 1 / median TPOT, output tok/s while every user still sends, TTFT "
                     "p50; all hardware charged to output tokens)")
ANALYTICAL_FIGURE = "Analytical: steady-state estimates (estimate_plan), not simulated."


def basis_of(data: ReportData) -> str:
    """Which evaluation the report's fronts, verdicts and costs come from (a caption sentence)."""
    if data.simulated:
        return ("Simulated: the points are the trace replays of each family's analytical frontier (`frontier "
                "--trace`); the analytical screen is drawn faintly where shown.")
    return ANALYTICAL_FIGURE


def band_of_report(data: ReportData) -> str:
    return data.options.get("band", HEADLINE_BAND)


def headline_point(data: ReportData):
    """The headline: the winning point of the headline band on tok/s per MW (None: no point there)."""
    return decide(data.points(), band_of_report(data), HEADLINE_OBJECTIVE).winner_point


def family_bests(data: ReportData, objective: str = HEADLINE_OBJECTIVE) -> dict[str, object]:
    """{family: its best point in the headline band on `objective`}, in the file's family order."""
    best = best_per_family(data.points(), band_of_report(data), objective)
    return {f: best[f] for f in data.families if f in best}


def inputs(data: ReportData):
    """(catalog, calibration, model architecture), loaded once per report."""
    if "inputs" not in data._cache:
        from infersim.calibration.efficiency import load_calibration
        from infersim.catalog.hardware import load_catalog
        from infersim.catalog.models import load_model
        data._cache["inputs"] = (load_catalog(), load_calibration(None), load_model(data.model))
    return data._cache["inputs"]


def spec_of(point):
    from infersim.deployments.spec import DeploymentSpec
    return DeploymentSpec.model_validate({"name": point.deployment, **point.body["deployment"]})


def plan_of(data: ReportData, point):
    """The point's plan (modes.build_plan of its stored deployment), cached per deployment."""
    key = ("plan", point.deployment)
    if key not in data._cache:
        from infersim.modes import build_plan
        catalog, calibration, arch = inputs(data)
        data._cache[key] = build_plan(spec_of(point), arch, catalog, calibration)
    return data._cache[key]


def estimate_of(data: ReportData, point) -> dict:
    """estimate_plan of the point at its batch and the report's lengths, cached."""
    key = ("estimate", point.deployment, point.batch)
    if key not in data._cache:
        from infersim.estimate import estimate_plan
        data._cache[key] = estimate_plan(plan_of(data, point), point.batch, data.input_len, data.output_len)
    return data._cache[key]


def no_band_point(data: ReportData, what: str) -> str:
    return (f"no configuration of {data.path.name} runs in the {band_of_report(data)} tok/s/user band, so there "
            f"is no {what}; choose another band with --band")


def fmt(v: Optional[float], unit: str = "") -> str:
    return "n/a" if v is None else f"{v:,.3g}{unit}"


def throughput_of_point(data: ReportData, point):
    """economics.Throughput of a point: estimate_plan's steady state for an analytical one; for a
    simulated one its replayed output tok/s, input tokens at the workload's mean input/output ratio
    (an approximation: the replay's prefix of the trace), utilisation 1 and all hardware charged
    to output tokens, as the confirmed point's cost (planner/confirm.py)."""
    from infersim.economics import Throughput, throughput_of_plan_estimate
    if point.evaluation == "analytical":
        return throughput_of_plan_estimate(estimate_of(data, point))
    return Throughput(point.output_tok_s, point.output_tok_s * data.input_len / data.output_len, 1.0, 0.0)
