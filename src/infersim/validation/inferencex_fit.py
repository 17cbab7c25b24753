"""InferenceX points as rows of `infersim calibrate`: each point's closed-loop figures predicted in
closed form (scenarios.py's `concurrency` scenario: batch = concurrency per replica, throughput by
fixed point), so that they broadcast over the fit's parameter grid like the measurement rows.

What enters the fit, and why the rest does not:
- aggregated points without speculative decoding: the point's deployment (inferencex_plan.map_point,
  the same one `validate` simulates) at the harness's mean lengths ((LENGTH_LOW + 1) / 2 x nominal);
  one row per metric the fit targets (output tok/s per GPU, tok/s per user). TTFT is reported by
  `validate` but not fitted: the closed form has no queueing of arrivals behind a running prefill.
- disaggregated points: left out. The closed form's fixed point charges prefill to the decoding
  engine (aggregated serving); a disaggregated decode pool never prefills, and its TTFT is a
  second pool's queue. `validate` still simulates them with the fitted parameters.
- MTP points: left out. scenarios.py's speculative path covers fixed-batch and single-stream rows
  only, not the closed-loop scenario.

Cross-validation groups a point by its configuration (`configuration`): hardware, framework, model,
precision, lengths, layout (tp / ep / DP attention, pools) and speculative decoding, across
concurrencies and run dates, so a curve is never split between a fit and its held-out test.
"""
from __future__ import annotations

from pathlib import Path

from infersim.calibration.efficiency import Calibration
from infersim.catalog.hardware import HardwareCatalog
from infersim.costmodel.memory import max_sequences
from infersim.validation.harness import LENGTH_LOW
from infersim.validation.inferencex import InferenceXPoint, read_points
from infersim.validation.inferencex_plan import FRAMEWORKS, map_point
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
        if p.disagg:
            skipped.append(Skip(p.id, "disaggregated: the closed form charges prefill to the decoding engine; "
                                      "kept out of the fit (validate simulates it)"))
            continue
        if p.spec_decode != "none":
            skipped.append(Skip(p.id, "MTP: the closed form has no speculative closed-loop path; kept out of the "
                                      "fit (validate simulates it)"))
            continue
        setup = map_point(p, catalog, calibration)
        if isinstance(setup, Skip):
            skipped.append(setup)
            continue
        dep = setup.plan.decode_pool.deployment
        if max_sequences(dep, p.isl + p.osl, p.isl) < 1:  # the longest request must fit, as in plan_row
            skipped.append(Skip(p.id, f"{p.model} with a {p.isl + p.osl}-token context does not fit on {p.n_gpus} x "
                                      f"{dep.chip.name} at {p.precision} (uncalibrated memory reserve)"))
            continue
        inp, out = round(MEAN_LENGTH_FACTOR * p.isl), round(MEAN_LENGTH_FACTOR * p.osl)
        for metric, column in FIT_METRICS.items():
            value = getattr(p, column)
            if value is None:
                continue
            row = Measurement(id=row_id(p.id, metric), model=p.model, chip=dep.chip.name, n_chips=p.n_gpus,
                              precision=p.precision, scenario="concurrency", input_len=inp, output_len=out,
                              batch=None, concurrency=p.concurrency, request_rate=None, spec_decode="no",
                              metric=metric, stat="mean", value=value, unit="", software=FRAMEWORKS.get(
                                  p.framework, (p.framework,))[0], source=configuration(p), line=p.line)
            plans.append(RowPlan(row, dep.model, [dep], inp, out, p.n_gpus, dep.chip.kind, dep.chip.family,
                                 list(setup.assumptions)))
            groups[row.id] = configuration(p)
    return plans, skipped, groups
