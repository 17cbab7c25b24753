"""Workload readers: every shared public trace reads with the README's counts; golden tiny files per
format with hand-checked values; error paths name file and line; synthetic arrivals are seeded and
have the requested rate and burstiness."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from infersim.datasets import TRACES_DIR
from infersim.errors import InputError
from infersim.workload import (ClosedLoop, Requests, closed_loop, gamma_arrivals, poisson, read_trace,
                               sampled_lengths)

TRACES = TRACES_DIR  # the public traces shipped in the package (copies of the shared folder's)

# rows usable after documented drops (README counts, minus failed/error rows it describes)
EXPECTED = {
    "AzureLLMInferenceTrace_code.csv": 8819,
    "AzureLLMInferenceTrace_conv.csv": 19366,
    "mooncake_conversation_trace.jsonl": 12031,
    "mooncake_synthetic_trace.jsonl": 3993,
    "semianalysis_cc_traces_claude_code_sample5000.jsonl": 5000 - 1,  # one row has 0 output tokens
    "exgentic_swebench_claude_code_shard12.jsonl": 2294 - 148,  # 148 is_error rows
    "tracelab_example_round_trace.jsonl": 19,
    "burstgpt_1_head54.csv": 54 - 3,  # 3 failures with Response tokens = 0
}


def _shared(name: str) -> Path:
    return TRACES / name


def _check_invariants(r: Requests) -> None:
    assert len(r) > 0
    assert r.arrival_s.dtype == np.float64 and r.input_tokens.dtype == np.int64
    assert r.arrival_s[0] == 0.0
    assert np.all(np.diff(r.arrival_s) >= 0)
    assert np.all(r.input_tokens > 0) and np.all(r.output_tokens > 0)
    assert len(r.input_tokens) == len(r.output_tokens) == len(r)
    if r.session_id is not None:
        assert len(r.session_id) == len(r)
    if r.prefix_hash_ids is not None:
        assert len(r.prefix_hash_ids) == len(r)
    assert r.assumptions


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_shared_trace_reads(name):
    r = read_trace(_shared(name))
    _check_invariants(r)
    assert len(r) == EXPECTED[name]
    assert r.source == name


def test_shared_stats_match_readme():
    code = read_trace(_shared("AzureLLMInferenceTrace_code.csv"))
    assert code.arrival_s[-1] == pytest.approx(3436, abs=1)
    assert code.input_tokens.mean() == pytest.approx(2048, abs=1)
    assert code.session_id is None and code.prefix_hash_ids is None
    mc = read_trace(_shared("mooncake_conversation_trace.jsonl"))
    assert mc.arrival_s[-1] == pytest.approx(3537, abs=1)  # ms -> s
    assert sum(len(h) for h in mc.prefix_hash_ids) == 288_500
    ex = read_trace(_shared("exgentic_swebench_claude_code_shard12.jsonl"))
    assert len(set(ex.session_id.tolist())) == 46
    assert ex.input_tokens.mean() == pytest.approx(29_441, abs=1)


def test_rate_scale_and_max_requests():
    p = _shared("AzureLLMInferenceTrace_code.csv")
    base = read_trace(p)
    fast = read_trace(p, rate_scale=2.0)
    assert fast.arrival_s[-1] == pytest.approx(base.arrival_s[-1] / 2)
    np.testing.assert_array_equal(fast.input_tokens, base.input_tokens)
    few = read_trace(p, max_requests=100)
    assert len(few) == 100
    np.testing.assert_array_equal(few.arrival_s, base.arrival_s[:100])
    with pytest.raises(InputError):
        read_trace(p, rate_scale=0)
    with pytest.raises(InputError):
        read_trace(p, max_requests=0)


# ----------------------------------------------------------------------------- golden files

def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _jsonl(tmp_path: Path, name: str, rows: list[dict]) -> Path:
    return _write(tmp_path, name, "".join(json.dumps(r) + "\n" for r in rows))


def test_golden_azure(tmp_path):
    p = _write(tmp_path, "az.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n"
               "2023-11-16 23:59:59.5000000,100,10\n"
               "2023-11-17 00:00:00.2500000,200,20\n"
               "2023-11-17 00:00:01.0000000,300,30\n")
    r = read_trace(p)
    np.testing.assert_allclose(r.arrival_s, [0.0, 0.75, 1.5], atol=1e-6)  # crosses midnight
    assert r.input_tokens.tolist() == [100, 200, 300]
    assert r.output_tokens.tolist() == [10, 20, 30]
    assert r.session_id is None and r.prefix_hash_ids is None


def test_golden_burstgpt(tmp_path):
    p = _write(tmp_path, "b.csv", "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n"
               "5,ChatGPT,472,18,490,Conversation log\n"
               "45,ChatGPT,1087,0,1087,Conversation log\n"
               "118,GPT-4,417,276,693,API log\n")
    r = read_trace(p)
    assert r.arrival_s.tolist() == [0.0, 113.0]
    assert r.input_tokens.tolist() == [472, 417]
    assert r.output_tokens.tolist() == [18, 276]
    assert any("dropped 1 failed" in a for a in r.assumptions)


def test_golden_mooncake(tmp_path):
    p = _jsonl(tmp_path, "m.jsonl", [
        {"timestamp": 1000, "input_length": 600, "output_length": 5, "hash_ids": [0, 1]},
        {"timestamp": 1000, "input_length": 700, "output_length": 6, "hash_ids": [0, 2]},
        {"timestamp": 3500, "input_length": 100, "output_length": 7, "hash_ids": [3]},
    ])
    r = read_trace(p)
    assert r.arrival_s.tolist() == [0.0, 0.0, 2.5]
    assert r.prefix_hash_ids == [(0, 1), (0, 2), (3,)]
    assert r.output_tokens.tolist() == [5, 6, 7]


def test_golden_semianalysis_sessions_start_at_zero(tmp_path):
    p = _jsonl(tmp_path, "s.jsonl", [
        {"session_id": "a", "turn_index": 0, "request_arrival_delta_s": 0.5, "input_tokens": 100, "output_tokens": 10},
        {"session_id": "a", "turn_index": 1, "request_arrival_delta_s": 10.5, "input_tokens": 150, "output_tokens": 11},
        {"session_id": "b", "turn_index": 0, "request_arrival_delta_s": 2.0, "input_tokens": 50, "output_tokens": 0},
        {"session_id": "b", "turn_index": 1, "request_arrival_delta_s": 6.0, "input_tokens": 70, "output_tokens": 12},
    ])
    r = read_trace(p)
    # a: 0, 10 ; b: first row (t=2) dropped for 0 output, but session still starts at its first row -> 4
    assert r.arrival_s.tolist() == [0.0, 4.0, 10.0]
    assert r.session_id.tolist() == [0, 1, 0]
    assert r.input_tokens.tolist() == [100, 70, 150]


def test_golden_exgentic(tmp_path):
    p = _jsonl(tmp_path, "e.jsonl", [
        {"session_id": "x", "span_index": 0, "start_time_s": 1000.0, "input_tokens": 10, "output_tokens": 1, "is_error": False},
        {"session_id": "x", "span_index": 1, "start_time_s": 1003.0, "input_tokens": 0, "output_tokens": 0, "is_error": True},
        {"session_id": "x", "span_index": 2, "start_time_s": 1007.0, "input_tokens": 20, "output_tokens": 2, "is_error": False},
        {"session_id": "y", "span_index": 0, "start_time_s": 50.0, "input_tokens": 30, "output_tokens": 3, "is_error": False},
    ])
    r = read_trace(p)
    assert r.arrival_s.tolist() == [0.0, 0.0, 7.0]
    assert r.input_tokens.tolist() == [10, 30, 20]
    assert r.session_id.tolist() == [0, 1, 0]
    assert any("dropped 1 row(s) with is_error" in a for a in r.assumptions)


def test_golden_tracelab(tmp_path):
    ev = lambda *ts: [{"event_type": "x", "timestamp": t} for t in ts]  # noqa: E731
    p = _jsonl(tmp_path, "t.jsonl", [
        {"session_id": "c", "round_index": 0, "input_tokens_total": 1000, "output_tokens": 9,
         "timing_events": ev("2026-06-01T05:40:21.000Z", "2026-06-01T05:40:20.000Z")},
        {"session_id": "c", "round_index": 1, "input_tokens_total": 1200, "output_tokens": 8,
         "timing_events": ev("2026-06-01T05:40:31.500Z")},
    ])
    r = read_trace(p)
    assert r.arrival_s.tolist() == [0.0, 11.5]
    assert r.input_tokens.tolist() == [1000, 1200]


# ----------------------------------------------------------------------------- errors

AZ_HEAD = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
ROW = "2023-11-16 18:17:0{},{},{}\n"


@pytest.mark.parametrize("body, needles", [
    (ROW.format(1, 10, 5) + ROW.format(2, "abc", 5), ["a.csv:3", "ContextTokens", "not a whole number"]),
    (ROW.format(1, 10, 5) + ROW.format(2, 10, -4), ["a.csv:3", "GeneratedTokens", "negative"]),
    (ROW.format(1, 10, 0), ["a.csv:2", "GeneratedTokens", "0"]),
    (ROW.format(5, 10, 5) + ROW.format(3, 10, 5), ["a.csv:3", "backwards"]),
    ("", ["empty"]),
])
def test_csv_errors(tmp_path, body, needles):
    p = _write(tmp_path, "a.csv", AZ_HEAD + body)
    with pytest.raises(InputError) as e:
        read_trace(p)
    msg = str(e.value)
    assert "\n" not in msg
    for n in needles:
        assert n in msg


def test_missing_column_named(tmp_path):
    p = _write(tmp_path, "a.csv", "TIMESTAMP,ContextTokens\n2023-11-16 18:17:01,10\n")
    with pytest.raises(InputError, match="GeneratedTokens"):
        read_trace(p)


def test_empty_files(tmp_path):
    for name in ("e.csv", "e.jsonl"):
        with pytest.raises(InputError, match="empty"):
            read_trace(_write(tmp_path, name, ""))


def test_jsonl_errors(tmp_path):
    good = {"timestamp": 0, "input_length": 5, "output_length": 5, "hash_ids": [1]}
    cases = [
        ([good, {"timestamp": 5, "input_length": 5, "hash_ids": []}], ["m.jsonl:2", "output_length"]),
        ([good, dict(good, input_length="x")], ["m.jsonl:2", "input_length"]),
        ([dict(good, timestamp=10), good], ["m.jsonl:2", "backwards"]),
        ([{"foo": 1}], ["unknown"]),
    ]
    for rows, needles in cases:
        with pytest.raises(InputError) as e:
            read_trace(_jsonl(tmp_path, "m.jsonl", rows))
        for n in needles:
            assert n in str(e.value)
    s = [{"session_id": "a", "request_arrival_delta_s": 5, "input_tokens": 1, "output_tokens": 1},
         {"session_id": "a", "request_arrival_delta_s": 3, "input_tokens": 1, "output_tokens": 1}]
    with pytest.raises(InputError, match=r"s.jsonl:2.*backwards"):
        read_trace(_jsonl(tmp_path, "s.jsonl", s))
    with pytest.raises(InputError, match="unknown trace format"):
        read_trace(_write(tmp_path, "x.parquet", "junk"))


# ----------------------------------------------------------------------------- synthetic

def test_poisson_seeded_and_rate():
    a = poisson(4.0, 20000, 512, 128, seed=7)
    b = poisson(4.0, 20000, 512, 128, seed=7)
    np.testing.assert_array_equal(a.arrival_s, b.arrival_s)
    assert not np.array_equal(a.arrival_s, poisson(4.0, 20000, 512, 128, seed=8).arrival_s)
    _check_invariants(a)
    gaps = np.diff(a.arrival_s)
    assert gaps.mean() == pytest.approx(0.25, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.05)
    assert a.input_tokens.tolist()[:2] == [512, 512]


def test_gamma_rate_and_cv():
    g = gamma_arrivals(10.0, 3.0, 20000, 100, np.arange(1, 20001), seed=1)
    _check_invariants(g)
    gaps = np.diff(g.arrival_s)
    assert gaps.mean() == pytest.approx(0.1, rel=0.03)
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.15)
    assert g.output_tokens[-1] == 20000
    g2 = gamma_arrivals(10.0, 3.0, 20000, 100, np.arange(1, 20001), seed=1)
    np.testing.assert_array_equal(g.arrival_s, g2.arrival_s)
    one = gamma_arrivals(10.0, 1.0, 20000, 1, 1, seed=2)
    gaps1 = np.diff(one.arrival_s)
    assert gaps1.std() / gaps1.mean() == pytest.approx(1.0, rel=0.05)


def test_synthetic_errors():
    for bad in (lambda: poisson(0, 10, 1, 1, 0), lambda: poisson(1, 10, 0, 1, 0),
                lambda: poisson(1, 10, 1, np.ones(3), 0), lambda: gamma_arrivals(1, 0, 10, 1, 1, 0)):
        with pytest.raises(InputError):
            bad()


# ----------------------------------------------------------------------------- prefix-block ids

def _session_rows(fmt: str) -> list[dict]:
    """Two sessions, prompts growing turn by turn; session b interleaved with a and arriving earlier."""
    turns = [("a", 0.0, 1100), ("b", 0.0, 600), ("a", 5.0, 1600), ("b", 1.0, 1030), ("a", 9.0, 2100)]
    rows = []
    for i, (sess, t, n) in enumerate(turns):
        if fmt == "semianalysis":
            rows.append({"session_id": sess, "turn_index": i, "request_arrival_delta_s": t,
                         "input_tokens": n, "output_tokens": 7})
        elif fmt == "exgentic":
            rows.append({"session_id": sess, "span_index": i, "start_time_s": 1000.0 + t,
                         "input_tokens": n, "output_tokens": 7, "is_error": False})
        else:
            rows.append({"session_id": sess, "round_index": i, "input_tokens_total": n, "output_tokens": 7,
                         "timing_events": [{"event_type": "x", "timestamp": f"2026-06-01T05:40:{10 + t:06.3f}Z"}]})
    return rows


def _ids_by_request(r: Requests) -> dict[tuple[int, int], tuple[int, ...]]:
    """(session, input tokens) -> prefix ids, so checks do not depend on the order after sorting."""
    return {(int(s), int(n)): h for s, n, h in zip(r.session_id, r.input_tokens, r.prefix_hash_ids)}


@pytest.mark.parametrize("fmt", ["semianalysis", "exgentic", "tracelab"])
def test_session_prefix_ids_shared_within_session(tmp_path, fmt):
    r = read_trace(_jsonl(tmp_path, f"{fmt}.jsonl", _session_rows(fmt)))
    _check_invariants(r)
    assert r.prefix_block_tokens == 512
    assert [len(h) for h in r.prefix_hash_ids] == (r.input_tokens // 512).tolist()
    ids = _ids_by_request(r)
    a1, a2, a3 = ids[(0, 1100)], ids[(0, 1600)], ids[(0, 2100)]
    b1, b2 = ids[(1, 600)], ids[(1, 1030)]
    assert (len(a1), len(a2), len(a3), len(b1), len(b2)) == (2, 3, 4, 1, 2)
    # each turn starts with every full block of the previous turn of its session
    assert a2[:2] == a1 and a3[:3] == a2 and b2[:1] == b1
    # blocks beyond the previous turn are new, and nothing is shared across sessions
    assert a2[2] not in a1 and a3[3] not in a2
    assert not set(a3) & set(b2)
    assert any("turn k shares every full 512-token block of turn k-1's prompt" in a for a in r.assumptions)


@pytest.mark.parametrize("fmt", ["semianalysis", "exgentic", "tracelab"])
def test_session_prefix_ids_follow_sort_and_max_requests(tmp_path, fmt):
    p = _jsonl(tmp_path, f"{fmt}.jsonl", _session_rows(fmt))
    full = read_trace(p)
    few = read_trace(p, max_requests=3)
    assert len(few.prefix_hash_ids) == len(few) == 3
    assert few.prefix_hash_ids == full.prefix_hash_ids[:3]
    # sorted by arrival: a@0 (1100), b@0 (600), b@1 (1030) -- ids still match each row's own session and length
    assert few.input_tokens.tolist() == [1100, 600, 1030]
    assert [len(h) for h in few.prefix_hash_ids] == [2, 1, 2]
    assert few.prefix_hash_ids[2][:1] == few.prefix_hash_ids[1]
    assert not set(few.prefix_hash_ids[0]) & set(few.prefix_hash_ids[2])


def test_shared_session_traces_prefix_ids():
    r = read_trace(_shared("exgentic_swebench_claude_code_shard12.jsonl"))
    assert [len(h) for h in r.prefix_hash_ids] == (r.input_tokens // 512).tolist()
    owner: dict[int, int] = {}
    for s, h in zip(r.session_id.tolist(), r.prefix_hash_ids):
        for x in h:
            assert owner.setdefault(x, s) == s  # an id never appears in two sessions


def test_session_prefix_ids_overflow_is_error(tmp_path):
    rows = [{"session_id": "a", "request_arrival_delta_s": 0, "input_tokens": 2 ** 20 * 512 + 512, "output_tokens": 1}]
    with pytest.raises(InputError, match=r"s.jsonl:1.*input_tokens.*more than"):
        read_trace(_jsonl(tmp_path, "s.jsonl", rows))
    rows[0]["input_tokens"] = 2 ** 20 * 512  # exactly 2**20 blocks is allowed
    assert len(read_trace(_jsonl(tmp_path, "s.jsonl", rows)).prefix_hash_ids[0]) == 2 ** 20


def test_mooncake_ids_unchanged_and_no_ids_elsewhere(tmp_path):
    mc = read_trace(_jsonl(tmp_path, "m.jsonl", [
        {"timestamp": 0, "input_length": 100, "output_length": 5, "hash_ids": [46, 7, 5]},  # ids kept even if n < 512*len
        {"timestamp": 1, "input_length": 2000, "output_length": 5, "hash_ids": [46]},
    ]))
    assert mc.prefix_hash_ids == [(46, 7, 5), (46,)]
    assert mc.prefix_block_tokens == 512 and mc.session_id is None
    az = read_trace(_write(tmp_path, "az.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:17:01,1024,5\n"))
    assert az.prefix_hash_ids is None
    assert poisson(1.0, 5, 2048, 5, seed=0).prefix_hash_ids is None


# ----------------------------------------------------------------------------- lengths, closed loop

@pytest.mark.parametrize("dist", ["exponential", "uniform"])
@pytest.mark.parametrize("mean", [1, 7, 300])
def test_sampled_lengths_mean_and_seed(dist, mean):
    x = sampled_lengths(mean, 20000, seed=3, dist=dist)
    assert x.dtype == np.int64 and x.shape == (20000,)
    assert x.min() >= 1
    assert x.mean() == pytest.approx(mean, rel=0.03)
    np.testing.assert_array_equal(x, sampled_lengths(mean, 20000, seed=3, dist=dist))
    if mean > 1:
        assert not np.array_equal(x, sampled_lengths(mean, 20000, seed=4, dist=dist))
    if dist == "uniform":
        assert x.max() <= 2 * mean - 1
    r = poisson(1.0, 20000, x, 1, seed=0)  # usable as a generator length
    np.testing.assert_array_equal(r.input_tokens, x)


def test_sampled_lengths_fixed_and_errors():
    assert sampled_lengths(128, 10, seed=0) == 128
    assert poisson(1.0, 3, sampled_lengths(64, 3, seed=0), 1, seed=0).input_tokens.tolist() == [64, 64, 64]
    for bad in (lambda: sampled_lengths(0, 10, 0), lambda: sampled_lengths(5, 0, 0),
                lambda: sampled_lengths(5, 10, 0, dist="normal"), lambda: sampled_lengths(2.5, 10, 0)):
        with pytest.raises(InputError):
            bad()


def test_closed_loop():
    cl = closed_loop(4, 10, 256, np.arange(1, 11))
    assert isinstance(cl, ClosedLoop) and cl.concurrency == 4
    _check_invariants(cl.requests)
    assert len(cl.requests) == 10 and np.all(cl.requests.arrival_s == 0.0)
    assert cl.requests.output_tokens.tolist() == list(range(1, 11))
    for bad in (0, -1, True, 2.0):
        with pytest.raises(InputError, match="concurrency") as e:
            closed_loop(bad, 10, 256, 16)
        assert "\n" not in str(e.value)
    with pytest.raises(InputError, match="concurrency"):
        ClosedLoop(0, cl.requests)
    with pytest.raises(InputError):
        closed_loop(2, 10, 0, 16)
