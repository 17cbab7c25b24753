"""Serving metrics: ITL histogram, SLO parsing, per-request summary, result files.

Expected values are worked out by hand in the comments (or, for histogram quantiles, taken from
np.percentile on the sample with each value repeated by its weight)."""
from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from infersim.errors import InputError
from infersim.serving.metrics import (
    REQUEST_COLUMNS,
    SLO,
    LatencyHistogram,
    RequestRecords,
    SLOTarget,
    parse_slo,
    summarize,
    write_results,
)

NAN = math.nan


# ----------------------------------------------------------------------------- histogram

def test_histogram_bins_are_log_spaced_with_0_1_percent_width():
    h = LatencyHistogram()
    assert h.edges_s[0] == pytest.approx(1e-7)
    assert h.edges_s[-1] == pytest.approx(1e4)
    ratios = h.edges_s[1:] / h.edges_s[:-1]
    assert ratios.max() <= 1.001 + 1e-12
    assert ratios.min() > 1.0009  # not needlessly fine either


def test_histogram_weighted_quantiles_match_repeated_sample():
    # values 0.01 x50, 0.02 x30, 0.05 x15, 0.1 x5 -> 100 samples; sorted positions:
    # 0..49 = 0.01, 50..79 = 0.02, 80..94 = 0.05, 95..99 = 0.1.
    # np.percentile (linear) at q lands at position q*99: 25% -> 24.75 (0.01), 70% -> 69.3 (0.02),
    # 90% -> 89.1 (0.05), 99% -> 98.01 (0.1): no interpolation across distinct values.
    h = LatencyHistogram()
    values = np.array([0.01, 0.02, 0.05, 0.1])
    weights = np.array([50, 30, 15, 5])
    h.add(values, weights)
    repeated = np.repeat(values, weights)
    expected = {0.25: 0.01, 0.7: 0.02, 0.9: 0.05, 0.99: 0.1}
    for q, want in expected.items():
        assert np.percentile(repeated, q * 100) == pytest.approx(want)
        assert h.quantile(q) == pytest.approx(want, rel=1e-3)
    assert h.quantile(0.0) == pytest.approx(0.01, rel=1e-3)
    assert h.quantile(1.0) == pytest.approx(0.1, rel=1e-3)
    assert h.count == 100


def test_histogram_quantiles_within_0_1_percent_on_spread_sample():
    rng = np.random.default_rng(7)
    values = rng.lognormal(mean=math.log(0.02), sigma=1.0, size=2000)
    weights = rng.integers(1, 6, size=2000)
    h = LatencyHistogram()
    # add in several chunks, mixing scalar and array calls
    h.add(values[:1000], weights[:1000])
    for v, w in zip(values[1000:1010], weights[1000:1010]):
        h.add(float(v), int(w))
    h.add(values[1010:], weights[1010:])
    repeated = np.repeat(values, weights)
    for q in (0.01, 0.1, 0.5, 0.9, 0.99, 0.999):
        # the weighted "q-th weight" quantile is the inverted-CDF quantile of the repeated sample
        want = np.percentile(repeated, q * 100, method="inverted_cdf")
        assert h.quantile(q) == pytest.approx(want, rel=1e-3)


def test_histogram_mean_is_exact_and_count_is_total_weight():
    h = LatencyHistogram()
    h.add([0.001, 0.003], [2.0, 0.5])
    h.add(0.25)
    h.add(20000.0, 1)  # above the last bin: clamped for quantiles, exact for the mean
    # weighted sum = 0.002 + 0.0015 + 0.25 + 20000 = 20000.2535; weight 2 + 0.5 + 1 + 1 = 4.5
    assert h.count == pytest.approx(4.5)
    assert h.mean() == pytest.approx(20000.2535 / 4.5, rel=1e-14)
    assert h.quantile(1.0) == pytest.approx(1e4, rel=1e-3)


def test_histogram_clamps_small_values_to_first_bin():
    h = LatencyHistogram()
    h.add([0.0, 1e-12])
    assert h.quantile(0.5) == pytest.approx(1e-7, rel=1e-3)
    assert h.mean() == pytest.approx(0.5e-12)


def test_empty_histogram_is_nan():
    h = LatencyHistogram()
    assert h.count == 0
    assert math.isnan(h.quantile(0.5))
    assert math.isnan(h.mean())
    h.add([])
    assert math.isnan(h.quantile(0.99))


def test_histogram_rejects_bad_input():
    h = LatencyHistogram()
    with pytest.raises(ValueError):
        h.add([0.1, NAN])
    with pytest.raises(ValueError):
        h.add([0.1, 0.2], [1.0])
    with pytest.raises(ValueError):
        h.add([0.1], [-1.0])
    with pytest.raises(ValueError):
        h.quantile(1.5)


def test_histogram_merge_adds_both():
    a, b = LatencyHistogram(), LatencyHistogram()
    a.add([0.01] * 3)
    b.add([0.05])
    a.merge(b)
    assert a.count == 4
    assert a.mean() == pytest.approx(0.08 / 4)
    assert a.quantile(1.0) == pytest.approx(0.05, rel=1e-3)


# ----------------------------------------------------------------------------- SLO parsing

def test_parse_slo_units():
    slo = parse_slo("ttft_p99=2s, tpot_p90=100ms,itl_p50=500us,e2e_mean=1.5")
    assert slo == SLO((
        SLOTarget("ttft", "p99", 2.0),
        SLOTarget("tpot", "p90", 0.1),
        SLOTarget("itl", "p50", 500e-6),
        SLOTarget("e2e", "mean", 1.5),
    ))
    assert [t.key for t in slo.targets] == ["ttft_p99", "tpot_p90", "itl_p50", "e2e_mean"]
    assert parse_slo("e2e_p999=30").targets[0].seconds == 30.0
    assert parse_slo("ttft_p95=.25s").targets[0].seconds == 0.25


def test_parse_slo_none_and_blank():
    assert parse_slo(None) is None
    assert parse_slo("") is None
    assert parse_slo("   ") is None


@pytest.mark.parametrize("text, bad", [
    ("ttft_p99=abc", "'abc' is not a duration"),
    ("ttft_p99=2h", "'2h' is not a duration"),
    ("ttft_p99=-1s", "'-1s' is not a duration"),
    ("ttft_p99=0ms", "must be > 0"),
    ("ttfb_p99=2s", "'ttfb' is not a metric"),
    ("ttft_p42=2s", "'p42' is not a percentile"),
    ("ttft=2s", "'ttft' is not metric_percentile"),
    ("ttft_p99", "expected metric_percentile=duration"),
    ("ttft_p99=2s,ttft_p99=3s", "ttft_p99 is given twice"),
    (",", "no targets"),
])
def test_parse_slo_errors_name_the_bad_part(text, bad):
    with pytest.raises(InputError) as e:
        parse_slo(text)
    msg = str(e.value)
    assert bad in msg
    assert "--slo '" in msg
    assert "ttft_p99=2s,tpot_p99=100ms" in msg  # a correct example
    assert "\n" not in msg


def test_parse_slo_error_shows_offending_item_only():
    with pytest.raises(InputError, match=r"^--slo 'tpot_p99=fast': 'fast' is not a duration"):
        parse_slo("ttft_p99=2s,tpot_p99=fast")


# ----------------------------------------------------------------------------- records and summary

def _records() -> RequestRecords:
    # id  arrival first  completion  in   out   ttft  e2e   tpot
    # 0   0.0     0.5    2.5         100  5     0.5   2.5   2.0/4  = 0.5
    # 1   1.0     1.2    1.2         200  1     0.2   0.2   NaN (1-token output)
    # 2   2.0     3.0    5.0         300  11    1.0   3.0   2.0/10 = 0.2
    # 3   3.0     4.0    NaN         400  7     (not completed)
    return RequestRecords(
        request_id=np.array([0, 1, 2, 3]),
        arrival_s=np.array([0.0, 1.0, 2.0, 3.0]),
        first_token_s=np.array([0.5, 1.2, 3.0, 4.0]),
        completion_s=np.array([2.5, 1.2, 5.0, NAN]),
        input_tokens=np.array([100, 200, 300, 400]),
        output_tokens=np.array([5, 1, 11, 7]),
        replica=np.array([0, 1, 0, 1]),
        prefill_replica=np.array([2, 2, 3, 3]),
        cached_tokens=np.array([0, 64, 128, 0]),
        preemptions=np.array([0, 0, 1, 2]),
    )


def _itl() -> LatencyHistogram:
    h = LatencyHistogram()
    h.add([0.1, 0.3], weights=[9, 1])  # p50, p90 -> 0.1; p99 -> 0.3; mean = (0.9 + 0.3) / 10 = 0.12
    return h


def test_records_derived_metrics():
    r = _records()
    assert r.completed.tolist() == [True, True, True, False]
    np.testing.assert_allclose(r.ttft_s(), [0.5, 0.2, 1.0, 1.0])
    np.testing.assert_allclose(r.e2e_s(), [2.5, 0.2, 3.0, NAN])
    np.testing.assert_allclose(r.tpot_s(), [0.5, NAN, 0.2, NAN])
    assert r.request_id.dtype == np.int64 and r.arrival_s.dtype == np.float64


def test_records_optional_columns_default_and_length_check():
    r = RequestRecords(np.array([0]), np.array([0.0]), np.array([NAN]), np.array([NAN]),
                       np.array([10]), np.array([3]), np.array([-1]))
    assert r.prefill_replica.tolist() == [-1]
    assert r.cached_tokens.tolist() == [0]
    assert r.preemptions.tolist() == [0]
    with pytest.raises(ValueError):
        RequestRecords(np.array([0, 1]), np.array([0.0]), np.array([NAN]), np.array([NAN]),
                       np.array([10]), np.array([3]), np.array([-1]))


def test_summarize_without_slo():
    s = summarize(_records(), duration_s=10.0, itl=_itl(), slo=None)
    assert s["requests_injected"] == 4
    assert s["requests_completed"] == 3
    assert s["duration_s"] == 10.0
    assert s["request_s"] == pytest.approx(0.3)  # 3 completed / 10 s
    assert s["input_tok_s"] == pytest.approx(60.0)  # (100 + 200 + 300) / 10
    assert s["output_tok_s"] == pytest.approx(1.7)  # (5 + 1 + 11) / 10
    # ttft sorted [0.2, 0.5, 1.0]: p50 = 0.5; p90 at position 1.8 -> 0.5 + 0.8 * 0.5; p99 at 1.98
    assert s["ttft_s"] == pytest.approx({"p50": 0.5, "p90": 0.9, "p99": 0.99, "mean": 1.7 / 3})
    # tpot sorted [0.2, 0.5] (1-token output left out): p50 at 0.5 -> 0.35; p90 -> 0.2 + 0.9 * 0.3
    assert s["tpot_s"] == pytest.approx({"p50": 0.35, "p90": 0.47, "p99": 0.497, "mean": 0.35})
    # e2e sorted [0.2, 2.5, 3.0]: p50 = 2.5; p90 at 1.8 -> 2.5 + 0.8 * 0.5 = 2.9; p99 -> 2.99
    assert s["e2e_s"] == pytest.approx({"p50": 2.5, "p90": 2.9, "p99": 2.99, "mean": 5.7 / 3})
    assert s["itl_s"] == pytest.approx({"p50": 0.1, "p90": 0.1, "p99": 0.3, "mean": 0.12}, rel=1e-3)
    assert s["goodput"] == pytest.approx(0.75)  # completed share: 3 of 4 injected
    assert s["goodput_req_s"] == pytest.approx(0.3)
    assert s["slo"] == {}


def test_summarize_goodput_with_slo_targets_missed():
    # per request: ttft <= 0.8 fails for #2 (1.0); tpot <= 0.4 fails for #0 (0.5);
    # #1 has no tpot (1-token output) and passes; #3 did not complete -> only #1 is good: 1/4.
    s = summarize(_records(), duration_s=10.0, itl=_itl(), slo=parse_slo("ttft_p99=0.8s,tpot_p90=400ms"))
    assert s["goodput"] == pytest.approx(0.25)
    assert s["goodput_req_s"] == pytest.approx(0.1)
    assert s["slo"]["ttft_p99"]["target_s"] == pytest.approx(0.8)
    assert s["slo"]["ttft_p99"]["value_s"] == pytest.approx(0.99)
    assert s["slo"]["ttft_p99"]["met"] is False
    assert s["slo"]["tpot_p90"]["value_s"] == pytest.approx(0.47)
    assert s["slo"]["tpot_p90"]["met"] is False


def test_summarize_goodput_with_slo_targets_met():
    # e2e <= 2.5 fails for #2 (3.0); ttft <= 0.6 fails for #2 (1.0); itl uses tpot as proxy:
    # <= 0.6 holds for #0 (0.5) and #1 (none) -> #0 and #1 good: 2/4.
    slo = parse_slo("e2e_p50=2.5s,ttft_mean=600ms,itl_p90=600ms")
    s = summarize(_records(), duration_s=10.0, itl=_itl(), slo=slo)
    assert s["goodput"] == pytest.approx(0.5)
    assert s["goodput_req_s"] == pytest.approx(0.2)
    assert s["slo"]["e2e_p50"] == pytest.approx({"target_s": 2.5, "value_s": 2.5, "met": True})
    assert s["slo"]["ttft_mean"]["value_s"] == pytest.approx(1.7 / 3)
    assert s["slo"]["ttft_mean"]["met"] is True
    assert s["slo"]["itl_p90"]["value_s"] == pytest.approx(0.1, rel=1e-3)  # from the histogram
    assert s["slo"]["itl_p90"]["met"] is True


def test_summarize_is_json_ready_and_merges_extra():
    extra = {"requests_queued": np.int64(1), "kv_occupancy_mean": np.float64(0.5),
             "preemptions": np.array([1, 2]), "note": NAN}
    s = summarize(_records(), duration_s=10.0, itl=LatencyHistogram(), slo=None, extra=extra)
    assert s["requests_queued"] == 1 and type(s["requests_queued"]) is int
    assert type(s["kv_occupancy_mean"]) is float
    assert s["preemptions"] == [1, 2]
    assert s["note"] is None
    assert s["itl_s"] == {"p50": None, "p90": None, "p99": None, "mean": None}  # empty histogram
    json.dumps(s, allow_nan=False)  # plain JSON: no numpy types, no NaN

    def walk(x):
        if isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)
        else:
            assert x is None or type(x) in (int, float, bool, str), type(x)
    walk(s)


def test_summarize_rejects_extra_key_clash_and_bad_duration():
    with pytest.raises(ValueError, match="goodput"):
        summarize(_records(), duration_s=10.0, itl=_itl(), slo=None, extra={"goodput": 1.0})
    with pytest.raises(ValueError):
        summarize(_records(), duration_s=0.0, itl=_itl(), slo=None)


def test_summarize_nothing_completed():
    r = RequestRecords(np.array([0, 1]), np.array([0.0, 1.0]), np.array([NAN, NAN]), np.array([NAN, NAN]),
                       np.array([10, 10]), np.array([3, 3]), np.array([-1, -1]))
    s = summarize(r, duration_s=5.0, itl=LatencyHistogram(), slo=parse_slo("ttft_p99=1s"))
    assert s["requests_completed"] == 0
    assert s["request_s"] == 0.0 and s["output_tok_s"] == 0.0
    assert s["ttft_s"]["p99"] is None
    assert s["goodput"] == 0.0
    assert s["slo"]["ttft_p99"] == {"target_s": 1.0, "value_s": None, "met": False}


# ----------------------------------------------------------------------------- result files

def test_write_results_round_trip(tmp_path):
    records = _records()
    summary = summarize(records, duration_s=10.0, itl=_itl(), slo=parse_slo("ttft_p99=2s"))
    pq_path, json_path = write_results(tmp_path / "run" / "a", records, summary)
    assert pq_path == tmp_path / "run" / "a" / "requests.parquet"
    assert json_path == tmp_path / "run" / "a" / "summary.json"
    assert sorted(p.name for p in pq_path.parent.iterdir()) == ["requests.parquet", "summary.json"]

    table = pq.read_table(pq_path)
    assert table.column_names == [
        "request_id", "arrival_s", "first_token_s", "completion_s", "input_tokens", "output_tokens",
        "replica", "prefill_replica", "cached_tokens", "preemptions",
    ]
    assert list(REQUEST_COLUMNS) == table.column_names
    assert table.schema.field("request_id").type == pa.int64()
    assert table.schema.field("completion_s").type == pa.float64()
    assert table.column("request_id").to_pylist() == [0, 1, 2, 3]
    assert table.column("first_token_s").to_pylist() == [0.5, 1.2, 3.0, 4.0]
    completion = table.column("completion_s").to_numpy(zero_copy_only=False)
    assert completion[:3].tolist() == [2.5, 1.2, 5.0] and math.isnan(completion[3])
    assert table.column("output_tokens").to_pylist() == [5, 1, 11, 7]
    assert table.column("replica").to_pylist() == [0, 1, 0, 1]
    assert table.column("prefill_replica").to_pylist() == [2, 2, 3, 3]
    assert table.column("cached_tokens").to_pylist() == [0, 64, 128, 0]
    assert table.column("preemptions").to_pylist() == [0, 0, 1, 2]

    text = json_path.read_text()
    assert text.endswith("}\n")
    assert json.loads(text) == summary
    assert list(json.loads(text)) == sorted(summary)  # keys sorted


def test_write_results_is_byte_identical(tmp_path):
    records = _records()
    summary = summarize(records, duration_s=10.0, itl=_itl(), slo=None)
    a = write_results(tmp_path / "a", records, summary)
    b = write_results(tmp_path / "b", _records(), summarize(_records(), duration_s=10.0, itl=_itl(), slo=None))
    first = [p.read_bytes() for p in a]
    assert first == [p.read_bytes() for p in b]
    again = write_results(tmp_path / "a", records, summary)  # overwrite in place
    assert [p.read_bytes() for p in again] == first
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["requests.parquet", "summary.json"]


def test_write_results_rejects_nan_summary_without_leaving_files(tmp_path):
    with pytest.raises(ValueError):
        write_results(tmp_path / "c", _records(), {"x": NAN})
    assert not (tmp_path / "c").exists() and list(tmp_path.iterdir()) == []
