"""InferenceX points as rows of `infersim calibrate`: each point's closed-loop figures predicted in
closed form at the harness's mean lengths ((LENGTH_LOW + 1) / 2 x nominal) on the point's deployment
(inferencex_plan.map_point, the same one `validate` simulates), so that they broadcast over the fit's
parameter grid like the measurement rows. One row per metric the fit targets (output tok/s per GPU,
per decode GPU when disaggregated; tok/s per user). TTFT is reported by `validate` but not fitted:
the closed forms have no queueing of arrivals behind a running prefill.

Which closed form:
- aggregated points without speculative decoding: scenarios.py's `concurrency` scenario (batch =
  concurrency per replica, throughput by fixed point; the engine's batch capped at
  scenarios.ENGINE_MAX_BATCH);
- MTP points and disaggregated (P/D) points: validation/inferencex_closed.py, from the plan's own
  step timers (verify steps of k + 1 tokens yielding E; prefill pool, KV transfer and decode pool
  bounding the rate), with the simulator's engine max batch (inferencex_plan: SGLang 256).
Every point that maps and fits memory enters the fit; `validate` still simulates them all.

Cross-validation groups a point by its configuration (`configuration`): hardware, framework, model,
precision, lengths, layout (tp / ep / DP attention, pools) and speculative decoding, across
concurrencies and run dates, so a curve is never split between a fit and its held-out test.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from infersim.calibration.efficiency import Calibration
from infersim.catalog.hardware import HardwareCatalog
from infersim.costmodel.memory import max_sequences
from infersim.validation.harness import LENGTH_LOW
from infersim.validation.inferencex import InferenceXPoint, read_points
from infersim.validation.inferencex_closed import closed_loop_values
from infersim.validation.inferencex_plan import FRAMEWORKS, features, map_point
from infersim.validation.measurements import Measurement
from infersim.validation.scenarios import RowPlan, Skip

SET = "inferencex"
# the metrics fitted (issue 9's targets); the point's column for each
FIT_METRICS = {"output_tok_s_per_chip": "output_tok_s_per_gpu", "tok_s_per_user": "tok_s_per_user"}
MEAN_LENGTH_FACTOR = (LENGTH_LOW + 1.0) / 2  # lengths uniform in [LENGTH_LOW, 1] x nominal


def row_id(point_id: str, metric: str) -> str:
    """The fit's row id of one metric of one point (`validate` looks held-out predictions up by it)."""
    return f"{point_id}:{metric}"


def configuration(p: InferenceXPoint) -> str:
    """The fold group of a point: everything but concurrency and run date (so a curve stays whole)."""
    def pool(x):
        return "-" if x is None else f"{x.workers}x(tp{x.tp},ep{x.ep},dp{x.dp_attention},gpus{x.gpus})"
    layout = (f"prefill {pool(p.prefill)} decode {pool(p.decode)}" if p.disagg
              else f"tp{p.tp} ep{p.ep} dp{p.dp_attention} gpus{p.n_gpus}")
    return f"{SET}: {p.hardware} {p.framework} {p.model} {p.precision} {p.isl}/{p.osl} {layout} spec={p.spec_decode}"


def inferencex_plans(path: str | Path, catalog: HardwareCatalog, calibration: Calibration
                     ) -> tuple[list[RowPlan], list[Skip], dict[str, str]]:
    """(row plans, points left out with the reason, {row id: configuration group})."""
    plans, skipped, groups = [], [], {}
    for p in read_points(path):
        setup = map_point(p, catalog, calibration)
        if isinstance(setup, Skip):
            skipped.append(setup)
            continue
        dep = setup.plan.decode_pool.deployment
        short = [d for d in {id(x.deployment): x.deployment for x in setup.plan.serving_pools()}.values()
                 if max_sequences(d, p.isl + p.osl, p.isl) < 1]  # the longest request must fit, as in plan_row
        if short:
            skipped.append(Skip(p.id, f"{p.model} with a {p.isl + p.osl}-token context does not fit on "
                                      f"{short[0].chips_per_replica} x {short[0].chip.name} at {p.precision} "
                                      "(uncalibrated memory reserve)"))
            continue
        inp, out = round(MEAN_LENGTH_FACTOR * p.isl), round(MEAN_LENGTH_FACTOR * p.osl)
        closed = None
        if p.disagg or p.spec_decode != "none":
            closed = partial(_closed_form, setup.plan, p.concurrency, inp, out, setup.engine.max_batch, p.decode_gpus)
        tags = (*features(p), f"hardware {p.hardware}")
        for metric, column in FIT_METRICS.items():
            value = getattr(p, column)
            if value is None:
                continue
            row = Measurement(id=row_id(p.id, metric), model=p.model, chip=dep.chip.name, n_chips=p.decode_gpus,
                              precision=p.precision, scenario="concurrency", input_len=inp, output_len=out,
                              batch=None, concurrency=p.concurrency, request_rate=None, spec_decode="no",
                              metric=metric, stat="mean", value=value, unit="", software=FRAMEWORKS.get(
                                  p.framework, (p.framework,))[0], source=configuration(p), line=p.line)
            plans.append(RowPlan(row, dep.model, [dep], inp, out, p.decode_gpus, dep.chip.kind, dep.chip.family,
                                 list(setup.assumptions), closed_form=closed, tags=tags))
            groups[row.id] = configuration(p)
    return plans, skipped, groups


def _closed_form(plan, concurrency, inp, out, max_batch, decode_gpus, eff) -> dict[str, np.ndarray]:
    """The fitted metrics of a P/D or MTP point (inferencex_closed.py), per decode GPU."""
    v = closed_loop_values(plan, concurrency, inp, out, max_batch, eff)
    return {"output_tok_s_per_chip": v["output_tok_s"] / decode_gpus, "tok_s_per_user": v["tok_s_per_user"]}
