"""infersim plan's inputs: per-user speed SLO targets (serving.metrics.parse_slo), their check in
the simulator's summary, and the budget parser."""
from __future__ import annotations

import math

import numpy as np
import pytest

from infersim.errors import InputError
from infersim.planner.budget import Budget, Footprint, over_budget, parse_budget
from infersim.serving.metrics import LatencyHistogram, RequestRecords, SLOTarget, parse_slo, summarize


def test_tok_s_per_user_is_a_floor_with_its_tpot_ceiling():
    slo = parse_slo("ttft_p99=2s,tok_s_per_user_p50=500,tok_s_per_user_p10=250tok/s,tpot_p90=20ms")
    rate = slo.targets[1]
    assert rate == SLOTarget("tok_s_per_user", "p50", 1 / 500, 500.0)
    assert rate.is_rate and not slo.targets[0].is_rate
    assert slo.targets[2].seconds == pytest.approx(1 / 250) and slo.targets[2].tok_s == 250.0
    assert str(slo) == "ttft_p99=2s,tok_s_per_user_p50=500tok/s,tok_s_per_user_p10=250tok/s,tpot_p90=0.02s"


@pytest.mark.parametrize("text, bad", [
    ("tok_s_per_user_p90=500", "'p90' is not a percentile of tok_s_per_user"),
    ("tok_s_per_user_mean=500", "'mean' is not a percentile of tok_s_per_user"),
    ("tok_s_per_user_p50=2s", "'2s' is not a speed"),
    ("tok_s_per_user_p50=0", "must be > 0 tok/s"),
    ("tok_s_per_user_p50=nan", "is not a speed"),
    ("ttft_p99=500tok/s", "'500tok/s' is not a duration"),
    ("tok_s_per_user_p50=5,tok_s_per_user_p50=6", "given twice"),
    ("goodput_p50=3", "'goodput' is not a metric"),
])
def test_bad_targets_name_the_part(text, bad):
    with pytest.raises(InputError) as e:
        parse_slo(text)
    assert bad in str(e.value) and "\n" not in str(e.value)


def test_summary_checks_the_speed_floor_on_simulated_tpot():
    # 4 requests, TPOTs 1, 2, 4, 10 ms (by hand: completion - first token over 10 - 1 tokens)
    tpot = np.array([1e-3, 2e-3, 4e-3, 10e-3])
    n = len(tpot)
    rec = RequestRecords(request_id=np.arange(n), arrival_s=np.zeros(n), first_token_s=np.full(n, 0.1),
                         completion_s=0.1 + 9 * tpot, input_tokens=np.full(n, 10), output_tokens=np.full(n, 10),
                         replica=np.zeros(n, dtype=np.int64))
    s = summarize(rec, duration_s=1.0, itl=LatencyHistogram(), slo=parse_slo("tok_s_per_user_p50=300,tok_s_per_user_p10=150"))
    speeds = 1 / tpot  # 1000, 500, 250, 100 tok/s
    assert s["slo"]["tok_s_per_user_p50"]["value_tok_s"] == pytest.approx(np.percentile(speeds, 50))  # 375
    assert s["slo"]["tok_s_per_user_p50"]["met"]
    assert s["slo"]["tok_s_per_user_p10"]["value_tok_s"] == pytest.approx(np.percentile(speeds, 10))  # 145
    assert not s["slo"]["tok_s_per_user_p10"]["met"]
    assert s["slo"]["tok_s_per_user_p10"]["target_s"] == pytest.approx(1 / 150)  # the TPOT equivalents
    assert s["slo"]["tok_s_per_user_p10"]["value_s"] == pytest.approx(1 / np.percentile(speeds, 10))
    assert s["goodput"] == pytest.approx(2 / 4)  # 1000 and 500 tok/s meet both floors; 250 misses 300


def test_budget_parsing():
    assert parse_budget("racks=8") == Budget(racks=8.0)
    assert parse_budget(" usd_per_hour=2000, mw=1.5,capex_usd=6e7") == Budget(None, 2000.0, 1.5, 6e7)
    assert parse_budget(None) == Budget()
    assert str(Budget(racks=8, mw=1.5)) == "racks=8,mw=1.5"


@pytest.mark.parametrize("text, bad", [
    ("racks", "expected key=value"), ("rooms=3", "'rooms' is not a budget"), ("racks=many", "not a number"),
    ("racks=0", "positive finite"), ("racks=-2", "positive finite"), ("mw=nan", "positive finite"),
    ("mw=inf", "positive finite"), ("racks=1,racks=2", "given twice"), (",", "no limits"),
])
def test_bad_budgets(text, bad):
    with pytest.raises(InputError, match=bad):
        parse_budget(text)


def test_over_budget_names_the_limit_and_refuses_unpriced_hardware():
    fp = Footprint(racks=2.0, power_w=300e3, capex_usd=10e6, usd_per_hour=300.0)
    assert over_budget(Budget(racks=2), fp) is None
    assert over_budget(Budget(racks=1), fp)[0] == "racks"
    assert over_budget(Budget(mw=0.2), fp)[0] == "mw"          # 0.3 MW rated
    assert over_budget(Budget(mw=0.3, usd_per_hour=299), fp)[0] == "usd_per_hour"
    unpriced = Footprint(1.0, 1e5, None, None)
    assert over_budget(Budget(racks=1), unpriced) is None
    key, why = over_budget(Budget(capex_usd=1e9), unpriced)
    assert key == "capex_usd" and "no catalog price" in why and math.isfinite(1e9)
