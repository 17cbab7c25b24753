"""Request-trace readers: turn a public LLM-serving trace file into columnar `Requests`.

`read_trace(path)` detects the format from the extension plus the CSV header or the keys of the
first JSON line. Every format yields arrival times in seconds from the first request (first = 0.0),
input and output token counts (> 0), and, where the trace has them, session ids and prefix-block
hash ids. Whatever is assumed for a field the trace lacks, and every row dropped, is recorded in
`Requests.assumptions`.

Prefix-block ids (`prefix_hash_ids`, one id per full `prefix_block_tokens` = 512-token block of the
prompt, equal ids = a reusable prefix KV block) are kept from Mooncake's `hash_ids` and **synthesized**
for the session formats (semianalysis, exgentic, tracelab), whose traces carry no per-block hashes:
a session's prompt extends its previous turn's prompt (append-only context, as agent loops do), so
turn k shares every full 512-token block of turn k-1's prompt. A request of session s (numbered
0, 1, ...) with input n gets the ids of its floor(n/512) full blocks, block j having id
s * 2**20 + j (`SESSION_BLOCK_STRIDE`): unique per (s, j), shared by every turn of session s that
reaches block j, never shared across sessions (no common system prompt is assumed). A session
with more than 2**20 blocks (5.4e8 tokens) is an `InputError`; the shared traces peak at 1,655.
Where a turn's prompt is shorter than the previous one (context compaction: 149 of 4,978 turn pairs
in the semianalysis sample, 80 of 2,100 in exgentic) the scheme still calls its leading blocks
shared, which overstates reuse there. Azure, BurstGPT (and synthetic workloads) have no prefix ids.

A bare file name that is not a file in the working directory (e.g. `AzureLLMInferenceTrace_conv.csv`)
names one of the traces shipped in `infersim/datasets/traces/` (`resolve_trace_path`).

Formats (see infersim/datasets/traces/README.md for provenance):

* **azure** (Azure LLM inference trace 2023, `.csv`, columns `TIMESTAMP,ContextTokens,GeneratedTokens`):
  `TIMESTAMP` is a wall clock `YYYY-MM-DD HH:MM:SS[.fffffff]` without timezone (read as one consistent
  clock; any fractional digits accepted); input = `ContextTokens`, output = `GeneratedTokens`.
  No sessions, no prefix ids: assumed independent requests with no prefix sharing. A length of 0 is an error.
* **burstgpt** (`.csv`, columns `Timestamp,Request tokens,Response tokens`; `Model`, `Total tokens`,
  `Log Type` ignored): `Timestamp` in seconds. Rows with `Response tokens` = 0 are failed requests and
  rows with `Request tokens` = 0 carry no prompt; both are **dropped** (not clamped) and counted in
  `assumptions`. No sessions or prefix ids in the head sample.
* **mooncake** (FAST'25 `.jsonl`, keys `timestamp,input_length,output_length,hash_ids`): `timestamp` is in
  **milliseconds** from trace start and is converted to seconds; `hash_ids` (512-token prefix blocks) is
  kept as `prefix_hash_ids`. The conversation trace's timestamps are bucketed (~3 s); they are replayed
  as-is (bursts), no jitter is added. A length of 0 is an error.
* **semianalysis** (cc-traces `.jsonl`, keys `session_id,request_arrival_delta_s,input_tokens,output_tokens`):
  times are seconds since the start of each session; there is no global clock, so **every session is
  assumed to start at t = 0** (all sessions replayed concurrently, open loop). Session ids are numbered
  0, 1, ... in order of first appearance. Rows with 0 input or output tokens are dropped and counted.
  Per-block hashes (64-token blocks) were dropped upstream; prefix ids are synthesized as above.
* **exgentic** (agent-llm-traces `.jsonl`, keys `session_id,start_time_s,input_tokens,output_tokens,is_error`):
  `start_time_s` is Unix epoch seconds, but the shard's sessions are spread over 4.9 days with long idle
  gaps, so **every session is assumed to start at t = 0** (times relative to the session's first call).
  Rows with `is_error` true or a 0 token count are dropped and counted. Prefix ids synthesized as above.
* **tracelab** (round_trace `.jsonl`, keys `session_id,input_tokens_total,output_tokens,timing_events`):
  the arrival of a round is its earliest `timing_events` ISO timestamp (the user message or tool result
  that triggered it); **every session is assumed to start at t = 0** (the example sessions are months
  apart). Output = `output_tokens`, assumed to already include `reasoning_output_tokens` (OpenAI usage
  convention). `prefix_tokens` is not used (prefix ids are synthesized as above). Rows with 0 tokens
  are dropped and counted.

Order: azure, burstgpt and mooncake must be sorted by time in file order; the session formats must be
sorted within each session. A timestamp that goes backwards is an `InputError`. The result is then
stably sorted by arrival (session ids and prefix ids move with their request). `rate_scale` > 1
compresses time (arrivals / rate_scale); `max_requests` keeps the first N requests by arrival.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infersim.datasets import trace as shipped_trace, trace_names
from infersim.errors import InputError


PREFIX_BLOCK_TOKENS = 512  # Mooncake's hash_ids block size, reused for synthesized session ids
SESSION_BLOCK_STRIDE = 2 ** 20  # synthesized id of block j of session s = s * stride + j (j < stride)
_SESSION_ASSUMPTION = ("a session's prompt extends its previous turn's prompt (append-only context, as agent "
                       "loops do), so turn k shares every full 512-token block of turn k-1's prompt")


@dataclass(frozen=True)
class Requests:
    """Columnar request workload, sorted by arrival.

    `prefix_hash_ids[i]` lists the prefix-block ids of request i's prompt, one per full block of
    `prefix_block_tokens` tokens, in prompt order; two requests with equal leading ids share that
    prefix (a prefix cache can reuse those KV blocks). It is None when the workload has no prefix
    information (Azure, BurstGPT, synthetic). `prefix_block_tokens` is the number of prompt tokens
    each id stands for (512 for Mooncake's `hash_ids` and the ids synthesized for session traces).
    `priority[i]` is request i's scheduling class, lower = more urgent (vLLM's convention; used by
    the `priority` queue order, the `lowest-priority` preemption victim and the `slo-class` router);
    None means every request has the same priority.
    """

    arrival_s: np.ndarray  # float64 seconds from the first request (first = 0.0)
    input_tokens: np.ndarray  # int64 > 0
    output_tokens: np.ndarray  # int64 > 0
    session_id: np.ndarray | None  # int64, or None when the trace has no sessions
    prefix_hash_ids: list[tuple[int, ...]] | None  # prefix-block ids per request (Mooncake or synthesized); None otherwise
    source: str  # file name or generator description
    assumptions: tuple[str, ...]  # what was assumed for fields the trace lacks
    prefix_block_tokens: int = PREFIX_BLOCK_TOKENS  # prompt tokens per prefix-block id
    priority: np.ndarray | None = None  # int64 per request, lower = more urgent; None = all equal

    def __post_init__(self):
        if self.priority is not None:
            p = np.asarray(self.priority)
            if p.shape != self.arrival_s.shape or not np.issubdtype(p.dtype, np.integer):
                raise InputError(f"{self.source}: priority must be one integer per request ({len(self)}), "
                                 f"got {p.dtype} of shape {p.shape}")

    def __len__(self) -> int:
        return int(self.arrival_s.shape[0])


# ----------------------------------------------------------------------------- helpers

def _err(path: Path, line: int | None, column: str | None, what: str, fix: str) -> InputError:
    where = path.name if line is None else f"{path.name}:{line}"
    col = f": column '{column}'" if column else ""
    return InputError(f"{where}{col}: {what}; {fix}")


def _int_field(path: Path, line: int, column: str, raw: object) -> int:
    """Parse a token count; non-integers and negatives are errors (0 is left to the caller)."""
    value: int | None = None
    if isinstance(raw, bool):
        value = None
    elif isinstance(raw, int):
        value = raw
    elif isinstance(raw, float) and math.isfinite(raw) and raw.is_integer():
        value = int(raw)
    elif isinstance(raw, str):
        s = raw.strip()
        try:
            value = int(s)
        except ValueError:
            try:
                f = float(s)
                value = int(f) if math.isfinite(f) and f.is_integer() else None
            except ValueError:
                value = None
    if value is None:
        raise _err(path, line, column, f"token count {raw!r} is not a whole number",
                   "write a non-negative integer")
    if value < 0:
        raise _err(path, line, column, f"token count {value} is negative",
                   "token counts must be positive integers")
    return value


def _float_field(path: Path, line: int, column: str, raw: object) -> float:
    try:
        if isinstance(raw, bool):
            raise ValueError
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise _err(path, line, column, f"timestamp {raw!r} is not a number",
                   "write the time as a number") from None
    if not math.isfinite(value):
        raise _err(path, line, column, f"timestamp {raw!r} is not finite", "write a finite number")
    return value


_EPOCH = _dt.date(1970, 1, 1).toordinal()


def _wallclock_s(path: Path, line: int, column: str, raw: str) -> float:
    """'YYYY-MM-DD HH:MM:SS[.f...]' (any number of fractional digits, optional trailing Z or +HH:MM) -> seconds."""
    s = raw.strip()
    try:
        date, _, clock = s.replace("T", " ").partition(" ")
        if clock.endswith("Z"):
            clock = clock[:-1]
        offset = 0.0
        for sign in ("+", "-"):
            if sign in clock:
                clock, _, tz = clock.partition(sign)
                hh, _, mm = tz.partition(":")
                offset = (int(hh) * 3600 + int(mm or 0) * 60) * (1 if sign == "+" else -1)
        y, mo, d = (int(x) for x in date.split("-"))
        hh, mm, ss = clock.split(":")
        days = _dt.date(y, mo, d).toordinal() - _EPOCH
        return days * 86400.0 + int(hh) * 3600 + int(mm) * 60 + float(ss) - offset
    except (ValueError, TypeError):
        raise _err(path, line, column, f"timestamp {raw!r} is not a date-time",
                   "write it as 'YYYY-MM-DD HH:MM:SS.fff'") from None


def _check_order(path: Path, line: int, column: str, prev: float | None, t: float, ctx: str = "") -> None:
    if prev is not None and t < prev:
        raise _err(path, line, column, f"timestamp goes backwards ({t} < {prev}{ctx})",
                   "sort the rows by time")


# ----------------------------------------------------------------------------- CSV formats

_AZURE = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_BURST = ("Timestamp", "Request tokens", "Response tokens")


def _read_csv(path: Path):
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or not any(h.strip() for h in header):
            raise _err(path, None, None, "empty trace (no header, no rows)", "give a non-empty trace file")
        header = [h.strip() for h in header]
        if any(h in header for h in ("TIMESTAMP", "ContextTokens", "GeneratedTokens")):
            fmt, cols = "azure", _AZURE
        elif any(h in header for h in ("Request tokens", "Response tokens")) or "Timestamp" in header:
            fmt, cols = "burstgpt", _BURST
        else:
            raise _err(path, 1, None, f"unknown CSV trace format (header {','.join(header)})",
                       f"use Azure columns {','.join(_AZURE)} or BurstGPT columns {','.join(_BURST)}")
        missing = [c for c in cols if c not in header]
        if missing:
            raise _err(path, 1, None, f"{fmt} trace is missing column(s) {', '.join(repr(m) for m in missing)}",
                       f"the header needs {','.join(cols)}")
        it, ii, io = (header.index(c) for c in cols)
        need = max(it, ii, io)
        ts: list[float] = []
        inp: list[int] = []
        out: list[int] = []
        dropped_resp = dropped_req = 0
        prev: float | None = None
        for lineno, row in enumerate(reader, start=2):
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) <= need:
                raise _err(path, lineno, None, f"row has {len(row)} fields, header has {len(header)}",
                           "fill in every column")
            if fmt == "azure":
                t = _wallclock_s(path, lineno, cols[0], row[it])
            else:
                t = _float_field(path, lineno, cols[0], row[it])
            _check_order(path, lineno, cols[0], prev, t)
            prev = t
            a = _int_field(path, lineno, cols[1], row[ii])
            b = _int_field(path, lineno, cols[2], row[io])
            if fmt == "azure":
                for c, v in ((cols[1], a), (cols[2], b)):
                    if v == 0:
                        raise _err(path, lineno, c, "token count is 0", "token counts must be positive integers")
            else:
                if b == 0:
                    dropped_resp += 1
                    continue
                if a == 0:
                    dropped_req += 1
                    continue
            ts.append(t)
            inp.append(a)
            out.append(b)
    if fmt == "azure":
        assumptions = [
            "azure: TIMESTAMP read as one wall clock (no timezone); arrival = TIMESTAMP - first TIMESTAMP",
            "azure: no session or prefix ids; requests assumed independent, no prefix sharing",
        ]
    else:
        assumptions = [
            "burstgpt: Timestamp in seconds; Model, Total tokens and Log Type ignored",
            f"burstgpt: dropped {dropped_resp} failed row(s) with Response tokens = 0",
            f"burstgpt: dropped {dropped_req} row(s) with Request tokens = 0",
            "burstgpt: no session or prefix ids; requests assumed independent, no prefix sharing",
        ]
    return ts, inp, out, None, None, assumptions


# ----------------------------------------------------------------------------- JSONL formats

_JSON_KEYS = {
    "mooncake": ("timestamp", "input_length", "output_length", "hash_ids"),
    "semianalysis": ("session_id", "request_arrival_delta_s", "input_tokens", "output_tokens"),
    "exgentic": ("session_id", "start_time_s", "input_tokens", "output_tokens", "is_error"),
    "tracelab": ("session_id", "input_tokens_total", "output_tokens", "timing_events"),
}


def _detect_json(path: Path, line: int, obj: dict) -> str:
    if "hash_ids" in obj or "input_length" in obj:
        return "mooncake"
    if "request_arrival_delta_s" in obj:
        return "semianalysis"
    if "start_time_s" in obj:
        return "exgentic"
    if "timing_events" in obj or "input_tokens_total" in obj:
        return "tracelab"
    raise _err(path, line, None, f"unknown JSONL trace format (keys {', '.join(sorted(obj)[:8])})",
               "use Mooncake (timestamp, input_length, output_length, hash_ids), semianalysis, exgentic or tracelab keys")


def _read_jsonl(path: Path):
    fmt: str | None = None
    ts: list[float] = []
    inp: list[int] = []
    out: list[int] = []
    sess: list[int] = []
    hashes: list[tuple[int, ...]] = []
    sess_index: dict[str, int] = {}
    sess_first: list[float] = []
    sess_prev: list[float] = []
    sess_blocks: list[list[int]] = []  # per session: synthesized block ids 0.. so far (int objects shared by its turns)
    dropped_zero = dropped_err = 0
    prev: float | None = None
    with path.open(encoding="utf-8") as fh:
        for lineno, text in enumerate(fh, start=1):
            if not text.strip():
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                raise _err(path, lineno, None, f"invalid JSON at column {e.colno}: {e.msg}",
                           "write one JSON object per line") from None
            if not isinstance(obj, dict):
                raise _err(path, lineno, None, "line is not a JSON object", "write one JSON object per line")
            if fmt is None:
                fmt = _detect_json(path, lineno, obj)
            missing = [k for k in _JSON_KEYS[fmt] if k not in obj]
            if missing:
                raise _err(path, lineno, None, f"{fmt} trace line is missing key(s) {', '.join(repr(m) for m in missing)}",
                           f"every line needs {', '.join(_JSON_KEYS[fmt])}")
            if fmt == "mooncake":
                t = _float_field(path, lineno, "timestamp", obj["timestamp"]) / 1000.0
                _check_order(path, lineno, "timestamp", prev, t)
                prev = t
                a = _int_field(path, lineno, "input_length", obj["input_length"])
                b = _int_field(path, lineno, "output_length", obj["output_length"])
                for c, v in (("input_length", a), ("output_length", b)):
                    if v == 0:
                        raise _err(path, lineno, c, "token count is 0", "token counts must be positive integers")
                h = obj["hash_ids"]
                if not isinstance(h, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in h):
                    raise _err(path, lineno, "hash_ids", "hash_ids is not a list of integers",
                               "write hash_ids as a JSON list of integers")
                ts.append(t)
                inp.append(a)
                out.append(b)
                hashes.append(tuple(h))
                continue
            # session formats
            if fmt == "exgentic" and obj["is_error"] is True:
                dropped_err += 1
                continue
            if fmt == "semianalysis":
                tcol, icol = "request_arrival_delta_s", "input_tokens"
                t = _float_field(path, lineno, tcol, obj[tcol])
            elif fmt == "exgentic":
                tcol, icol = "start_time_s", "input_tokens"
                t = _float_field(path, lineno, tcol, obj[tcol])
            else:
                tcol, icol = "timing_events", "input_tokens_total"
                ev = obj[tcol]
                stamps = [e.get("timestamp") for e in ev if isinstance(e, dict)] if isinstance(ev, list) else []
                stamps = [s for s in stamps if isinstance(s, str)]
                if not stamps:
                    raise _err(path, lineno, tcol, "timing_events has no timestamp",
                               "give at least one event with an ISO 'timestamp'")
                t = min(_wallclock_s(path, lineno, tcol, s) for s in stamps)
            a = _int_field(path, lineno, icol, obj[icol])
            b = _int_field(path, lineno, "output_tokens", obj["output_tokens"])
            key = str(obj["session_id"])
            sid = sess_index.get(key)
            if sid is None:
                sid = sess_index[key] = len(sess_first)
                sess_first.append(t)
                sess_prev.append(t)
                sess_blocks.append([])
            _check_order(path, lineno, tcol, sess_prev[sid], t, f" within session {key}")
            sess_prev[sid] = t
            if a == 0 or b == 0:
                dropped_zero += 1
                continue
            nblocks = a // PREFIX_BLOCK_TOKENS
            blocks = sess_blocks[sid]
            if nblocks > len(blocks):
                if nblocks > SESSION_BLOCK_STRIDE:
                    raise _err(path, lineno, icol, f"session {key} prompt has {nblocks} blocks of {PREFIX_BLOCK_TOKENS} "
                               f"tokens, more than the {SESSION_BLOCK_STRIDE} that synthesized prefix ids allow",
                               f"keep prompts shorter than {(SESSION_BLOCK_STRIDE + 1) * PREFIX_BLOCK_TOKENS} tokens")
                base = sid * SESSION_BLOCK_STRIDE
                blocks.extend(range(base + len(blocks), base + nblocks))
            ts.append(t - sess_first[sid])
            inp.append(a)
            out.append(b)
            sess.append(sid)
            hashes.append(tuple(blocks[:nblocks]))
    if fmt is None:
        raise _err(path, None, None, "empty trace (no JSON lines)", "give a non-empty trace file")
    if fmt == "mooncake":
        assumptions = [
            "mooncake: timestamp in milliseconds, converted to seconds; bucketed timestamps replayed as-is (no jitter)",
            "mooncake: hash_ids are 512-token prefix blocks, kept as prefix_hash_ids; no session ids",
        ]
        return ts, inp, out, None, hashes, assumptions
    common = f"{fmt}: no global clock used; every session starts at t=0 (sessions replayed concurrently, open loop)"
    assumptions = [common]
    if fmt == "semianalysis":
        assumptions.append("semianalysis: request_arrival_delta_s = seconds since session start; "
                           "per-block hashes absent upstream")
    elif fmt == "exgentic":
        assumptions.append("exgentic: arrival = start_time_s - session's first start_time_s")
        assumptions.append(f"exgentic: dropped {dropped_err} row(s) with is_error true")
    else:
        assumptions.append("tracelab: arrival = earliest timing_events timestamp of the round; input = input_tokens_total; "
                           "output = output_tokens (assumed to include reasoning_output_tokens); prefix_tokens not used")
    assumptions.append(f"{fmt}: {_SESSION_ASSUMPTION}")
    assumptions.append(f"{fmt}: prefix ids synthesized: request of session s with input n gets ids "
                       f"s*{SESSION_BLOCK_STRIDE}+j for its floor(n/{PREFIX_BLOCK_TOKENS}) full blocks j; "
                       "no prefix shared across sessions")
    assumptions.append(f"{fmt}: dropped {dropped_zero} row(s) with 0 input or output tokens")
    assumptions.append(f"{fmt}: session ids numbered 0.. in order of first appearance ({len(sess_first)} sessions)")
    return ts, inp, out, sess, hashes, assumptions


# ----------------------------------------------------------------------------- entry point

def resolve_trace_path(path) -> Path:
    """`path` itself when it exists; else, for a bare file name (no folder part), the shipped trace of
    that name. Anything else that does not exist is an `InputError` listing the shipped names."""
    path = Path(path)
    if path.exists():
        return path
    if path.name == str(path) and shipped_trace(path.name).is_file():
        return shipped_trace(path.name)
    raise InputError(f"{path}: trace file not found; check the path, or name a shipped trace: "
                     f"{', '.join(trace_names())}")


def read_trace(path, *, rate_scale: float = 1.0, max_requests: int | None = None) -> Requests:
    """Read a trace file (format detected from extension + header/keys) into sorted `Requests`."""
    path = resolve_trace_path(path)
    if not (isinstance(rate_scale, (int, float)) and math.isfinite(rate_scale) and rate_scale > 0):
        raise InputError(f"{path.name}: rate_scale {rate_scale!r} must be a positive number; "
                         "use > 1 to compress time, < 1 to stretch it")
    if max_requests is not None and (isinstance(max_requests, bool) or not isinstance(max_requests, int)
                                     or max_requests < 1):
        raise InputError(f"{path.name}: max_requests {max_requests!r} must be a positive integer; or leave it unset")
    if not path.is_file():
        raise InputError(f"{path}: trace file not found; check the path")
    ext = path.suffix.lower()
    if ext == ".csv":
        ts, inp, out, sess, hashes, assumptions = _read_csv(path)
    elif ext in (".jsonl", ".json", ".ndjson"):
        ts, inp, out, sess, hashes, assumptions = _read_jsonl(path)
    else:
        raise InputError(f"{path.name}: unknown trace format (extension '{ext}'); "
                         "give a .csv (Azure, BurstGPT) or .jsonl (Mooncake, semianalysis, exgentic, tracelab) file")
    if not ts:
        raise InputError(f"{path.name}: empty trace (no usable requests); give a trace with at least one request")
    arrival = np.asarray(ts, dtype=np.float64)
    order = np.argsort(arrival, kind="stable")
    arrival = arrival[order]
    arrival = arrival - arrival[0]
    inp_a = np.asarray(inp, dtype=np.int64)[order]
    out_a = np.asarray(out, dtype=np.int64)[order]
    sess_a = None if sess is None else np.asarray(sess, dtype=np.int64)[order]
    hash_l = None if hashes is None else [hashes[i] for i in order]
    if rate_scale != 1.0:
        arrival = arrival / float(rate_scale)
        assumptions = [*assumptions, f"arrivals divided by rate_scale={rate_scale:g}"]
    if max_requests is not None and max_requests < len(arrival):
        arrival, inp_a, out_a = arrival[:max_requests], inp_a[:max_requests], out_a[:max_requests]
        sess_a = None if sess_a is None else sess_a[:max_requests]
        hash_l = None if hash_l is None else hash_l[:max_requests]
        assumptions = [*assumptions, f"kept the first {max_requests} requests by arrival"]
    return Requests(arrival_s=arrival, input_tokens=inp_a, output_tokens=out_a, session_id=sess_a,
                    prefix_hash_ids=hash_l, source=path.name, assumptions=tuple(assumptions))
