"""TTFT and TPOT distributions from simulation: the deployments of the best configurations in the
headline band (tok/s per MW, at most SIM_FAMILIES families) replayed through the discrete-event
simulator (deployments.run.simulate_plan) on the report's workload: the first SIM_REQUESTS
requests of its trace, or, without a trace, a closed loop at the stored lengths. Capped so the
whole report stays a few seconds; the caption says what was simulated."""
from __future__ import annotations

import numpy as np

from infersim.reports.data import ReportData
from infersim.reports.figures._common import band_of_report, family_bests, no_band_point, plan_of
from infersim.reports.spec import Axis, FigureSpec, Series

SIM_FAMILIES = 6     # families simulated (the headline band's best by tok/s per MW)
SIM_REQUESTS = 300   # requests per simulation (the trace's first, in arrival order)
CLOSED_LOOP_USERS = 64  # closed-loop users without a trace (capped by the point's batch x replicas)


def _workload(data: ReportData, plan, point):
    """(workload, one-line description) for one simulation."""
    from infersim.workload.synthetic import closed_loop
    if data.trace:
        from infersim.workload.traces import read_trace
        if "trace_reqs" not in data._cache:
            # the stored name is the file's; the report run from a trace file knows its path
            data._cache["trace_reqs"] = read_trace(data.options.get("trace_path", data.trace),
                                                   max_requests=SIM_REQUESTS)
        reqs = data._cache["trace_reqs"]
        return reqs, f"the first {len(reqs.arrival_s)} requests of trace {data.trace} (its arrival times and sessions)"
    users = max(1, min(CLOSED_LOOP_USERS, point.batch * plan.decode_pool.replicas))
    return (closed_loop(users, SIM_REQUESTS, data.input_len, data.output_len),
            f"a closed loop of {SIM_REQUESTS} requests, {data.input_len} in / {data.output_len} out, "
            f"up to {CLOSED_LOOP_USERS} users at once (fewer where the point's batch x replicas is smaller)")


def simulations(data: ReportData) -> dict[str, tuple[object, object, str]]:
    """{family: (point, RequestRecords, workload description)}, computed once per report."""
    if "sims" not in data._cache:
        from infersim.deployments.run import simulate_plan
        bests = sorted(family_bests(data).items(), key=lambda kv: -(kv[1].tok_s_per_mw or 0.0))[:SIM_FAMILIES]
        sims = {}
        for fam, p in bests:
            plan = plan_of(data, p)
            wl, desc = _workload(data, plan, p)
            sims[fam] = (p, simulate_plan(plan, wl).records, desc)
        data._cache["sims"] = sims
    return data._cache["sims"]


def _cdf(values: np.ndarray) -> tuple[list[float], list[float]]:
    v = np.sort(values[np.isfinite(values)])
    if v.size == 0:
        return [], []
    return v.tolist(), (np.arange(1, v.size + 1) / v.size).tolist()


def _figure(data: ReportData, key: str, what: str, unit_label: str, values_of) -> FigureSpec:
    band = band_of_report(data)
    fig = FigureSpec(
        key, f"{what} distribution from simulation ({band} tok/s/user band's best deployments)", caption="",
        x=Axis(what, unit_label, log=True), y=Axis("share of requests at or below", ""),
        inputs=["deployments.run.simulate_plan: the serving engine's batching, KV cache and scheduling over the "
                "deployment's replicas", "the step costs of estimate_plan (catalog specs, calibration fit)"],
        assumptions=["the engine's own scheduling limits (engines.yaml) set the batch, not the point's batch",
                     "a capped workload (see the caption): the tail of a long trace is not simulated"])
    sims = simulations(data)
    if not sims:
        fig.empty_reason = no_band_point(data, "deployment to simulate")
        return fig
    desc = next(iter(sims.values()))[2]
    fig.caption = (f"Per-request {what} of each of the {len(sims)} best families in the {band} tok/s/user band (its "
                   f"best configuration's deployment by tok/s per MW), simulated on {desc}. {data.model}.")
    for fam, (p, rec, _) in sims.items():
        xs, ys = _cdf(values_of(rec))
        if not xs:
            fig.notes.append(f"{fam}: no request finished in the simulation")
            continue
        med = float(np.median(xs))
        fig.series.append(Series(fam, xs, ys, "step", [f"{fam} ({p.deployment}): {x:.3g} s, {y:.0%} of requests"
                                                       for x, y in zip(xs, ys)], group=fam))
        fig.notes.append(f"{fam}: median {med:.3g} s, p99 {float(np.quantile(xs, 0.99)):.3g} s")
    return fig


def _tpot(rec) -> np.ndarray:
    out = rec.output_tokens.astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(out > 1, (rec.completion_s - rec.first_token_s) / (out - 1), np.nan)


def ttft_cdf(data: ReportData) -> FigureSpec:
    return _figure(data, "ttft-cdf", "TTFT", "s", lambda rec: rec.first_token_s - rec.arrival_s)


def tpot_cdf(data: ReportData) -> FigureSpec:
    return _figure(data, "tpot-cdf", "TPOT", "s per output token", _tpot)
