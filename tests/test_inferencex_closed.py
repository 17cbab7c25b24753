"""The closed forms of disaggregated (P/D) and MTP InferenceX points (validation/inferencex_closed.py):
agreement with simulating the benchmark client, and the bounds a closed loop cannot beat."""
from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest

from infersim.calibration.efficiency import load_calibration
from infersim.catalog.hardware import load_catalog
from infersim.costmodel.kvtransfer import kv_transfer_seconds
from infersim.datasets import inferencex_points
from infersim.estimate import prefill_times
from infersim.validation.inferencex import read_points
from infersim.validation.inferencex_closed import closed_loop_values, decode_step_seconds
from infersim.validation.inferencex_fit import MEAN_LENGTH_FACTOR
from infersim.validation.inferencex_plan import map_point
from infersim.validation.inferencex_report import validate_inferencex

POINTS = {p.id: p for p in read_points(inferencex_points())}
# small runs of each kind: P/D 1k/1k at 3 clients, P/D + MTP 1k/1k at 4, aggregated MTP 1k/1k at 32
CHECKED = ("ix00879", "ix01628", "ix01467")
TOLERANCE = 0.05  # closed form vs simulated client (observed within 2.5% on these; see the report)


def _closed(pid, cal, eff=None):
    p = POINTS[pid]
    s = map_point(p, load_catalog(), cal)
    dep = s.plan.decode_pool.deployment
    eff = eff or cal.for_chip(dep.chip.kind, dep.chip.family)
    inp, out = round(MEAN_LENGTH_FACTOR * p.isl), round(MEAN_LENGTH_FACTOR * p.osl)
    return p, s, closed_loop_values(s.plan, p.concurrency, inp, out, s.engine.max_batch, eff), inp, out


def test_closed_forms_agree_with_the_simulated_client(tmp_path):
    assert {("mtp" if POINTS[i].spec_decode == "mtp" else "-", POINTS[i].disagg) for i in CHECKED} == {
        ("-", True), ("mtp", True), ("mtp", False)}
    src = inferencex_points()
    with open(src, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        rows = [r for r in reader if r["point_id"] in CHECKED]
        cols = reader.fieldnames
    path = tmp_path / "few.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    cal = load_calibration()
    rep = validate_inferencex(path, calibration=cal)
    seen = set()
    for r in rep.rows:
        if r.metric == "ttft_ms":
            continue
        p, _, v, _, _ = _closed(r.id, cal)
        closed = float(v["output_tok_s"]) / p.decode_gpus if r.metric == "output_tok_s_per_chip" \
            else float(v["tok_s_per_user"])
        assert closed == pytest.approx(r.predicted, rel=TOLERANCE), (r.id, r.metric)
        seen.add(r.id)
    assert seen == set(CHECKED)


@pytest.mark.parametrize("pid", [i for i, p in POINTS.items() if p.disagg][:40:7])
def test_disaggregated_rate_never_beats_its_pools(pid):
    """A P/D closed loop moves no more requests than its prefill workers, its KV transfers or its
    decode workers at their largest batch can, and no user decodes faster than a batch of one."""
    cal = load_calibration()
    p, s, v, inp, out = _closed(pid, cal)
    if isinstance(s, str):
        pytest.skip(s)
    pre, dec = s.plan.serving_pools()
    _, t_pre = prefill_times(pre.deployment, inp)
    t_kv = kv_transfer_seconds(pre.deployment, dec.deployment, s.plan.kv_link, inp)
    requests_s = float(v["output_tok_s"]) / out
    assert requests_s <= pre.replicas / float(t_pre) * (1 + 1e-9)
    assert requests_s <= dec.replicas / float(t_kv) * (1 + 1e-9)
    timer = dec.timer if dec.timer.decode_width > 1 else None
    t1, per_step = decode_step_seconds(timer, dec.deployment, 1.0, inp, out - 1)
    assert float(v["tok_s_per_user"]) <= per_step / float(t1) * (1 + 1e-9)
    assert requests_s <= p.concurrency / (out - 1) * float(v["tok_s_per_user"]) * (1 + 1e-9)  # Little's law
