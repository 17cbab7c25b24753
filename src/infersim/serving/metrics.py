"""Serving metrics: per-request records, latency summaries, SLO goodput, and result files.

Units: every time and duration is in **seconds** (float64); token counts are whole tokens (int64);
throughputs are per second of simulated time.

* `LatencyHistogram`: constant-memory weighted histogram of inter-token latencies (ITL). Quantiles are
  accurate to 0.1% (relative) for durations in [1e-7 s, 1e4 s]; the mean is exact.
* `SLO` / `SLOTarget` / `parse_slo`: latency targets such as ``"ttft_p99=2s,tpot_p99=100ms"``.
* `RequestRecords`: one entry per injected request (arrival, first token, completion, tokens, replica).
* `summarize(...)`: a JSON-ready dict (throughput, TTFT/TPOT/E2E/ITL percentiles, goodput, SLO check).
* `write_results(...)`: ``requests.parquet`` + ``summary.json``, byte-identical for identical inputs.

Definitions (per request): TTFT = first_token - arrival; E2E = completion - arrival;
TPOT = (completion - first_token) / (output_tokens - 1) for outputs of more than one token
(NaN for 1-token outputs, which are left out of TPOT percentiles).
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from infersim.errors import InputError
from infersim.inputs import DURATION_RANGE_S, check_in_range
from infersim.results import json_text, write_dir_atomically

__all__ = [
    "LatencyHistogram",
    "SLOTarget",
    "SLO",
    "parse_slo",
    "RequestRecords",
    "REQUEST_COLUMNS",
    "summarize",
    "write_results",
]


# ----------------------------------------------------------------------------- ITL histogram

_HIST_LO_S = 1e-7
_HIST_HI_S = 1e4
_HIST_REL_WIDTH = 1e-3
# Enough bins that every bin's upper/lower edge ratio is <= 1 + 0.1%.
_HIST_BINS = int(math.ceil(math.log(_HIST_HI_S / _HIST_LO_S) / math.log1p(_HIST_REL_WIDTH)))


class LatencyHistogram:
    """Constant-memory weighted histogram of durations in seconds (inter-token latencies).

    Bins are log-spaced from 1e-7 s to 1e4 s (``np.geomspace`` edges) with a relative width of at
    most 0.1% (about 25,000 bins, ~200 KB). Durations below 1e-7 s count in the first bin, durations
    above 1e4 s in the last one.

    `quantile(q)` returns the geometric midpoint of the bin holding the q-th weight, so it is within
    0.1% (in fact within ~0.05%) of the exact weighted quantile for durations inside the bin range.
    `mean()` is exact: it comes from a running weighted sum, not from the bins.
    """

    edges_s: np.ndarray  # bin edges in seconds, shape (n_bins + 1,)

    def __init__(self) -> None:
        self.edges_s = np.geomspace(_HIST_LO_S, _HIST_HI_S, _HIST_BINS + 1)
        self._weights = np.zeros(_HIST_BINS, dtype=np.float64)
        self._total_weight = 0.0
        self._weighted_sum_s = 0.0

    @property
    def n_bins(self) -> int:
        """Number of bins."""
        return _HIST_BINS

    @property
    def count(self) -> float:
        """Total weight added (the number of intervals when every weight is 1)."""
        return self._total_weight

    def add(self, durations: Any, weights: Any = None) -> None:
        """Add durations (seconds; scalar or array) with weights (scalar or same shape; default 1).

        Finite durations outside [1e-7 s, 1e4 s] count in the first/last bin (the mean keeps their exact
        value). Raises ValueError for NaN or infinite durations, or negative / non-finite weights."""
        d = np.asarray(durations, dtype=np.float64).ravel()
        if weights is None:
            w = np.ones_like(d)
        else:
            w = np.asarray(weights, dtype=np.float64)
            if w.ndim == 0:
                w = np.full_like(d, float(w))
            else:
                w = w.ravel()
                if w.shape != d.shape:
                    raise ValueError(f"weights has {w.size} entries but durations has {d.size}; "
                                     "give one weight per duration or a scalar")
        if d.size == 0:
            return
        if not np.isfinite(d).all():
            raise ValueError("durations contain NaN or inf; only add intervals that happened")
        if not np.isfinite(w).all() or (w < 0).any():
            raise ValueError("weights must be finite and >= 0")
        idx = np.searchsorted(self.edges_s, d, side="right") - 1
        np.clip(idx, 0, _HIST_BINS - 1, out=idx)
        if d.size > _HIST_BINS // 8:
            self._weights += np.bincount(idx, weights=w, minlength=_HIST_BINS)
        else:
            np.add.at(self._weights, idx, w)
        self._total_weight += float(w.sum())
        self._weighted_sum_s += float(np.dot(d, w))

    def merge(self, other: LatencyHistogram) -> None:
        """Add every interval of `other` (e.g. another replica's histogram) to this one."""
        self._weights += other._weights
        self._total_weight += other._total_weight
        self._weighted_sum_s += other._weighted_sum_s

    def quantile(self, q: float) -> float:
        """Weighted q-quantile in seconds (q in [0, 1]); NaN when the histogram is empty.

        The geometric midpoint of the first bin whose cumulative weight reaches q * total weight
        (q = 0: the first non-empty bin). Accurate to 0.1% for durations in [1e-7 s, 1e4 s]."""
        q = float(q)
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"quantile q={q} must be in [0, 1]")
        if self._total_weight <= 0.0:
            return math.nan
        cum = np.cumsum(self._weights)
        total = float(cum[-1])
        if total <= 0.0:
            return math.nan
        if q == 0.0:
            i = int(np.argmax(self._weights > 0))
        else:
            i = min(int(np.searchsorted(cum, q * total, side="left")), _HIST_BINS - 1)
        return float(math.sqrt(self.edges_s[i] * self.edges_s[i + 1]))

    def mean(self) -> float:
        """Exact weighted mean in seconds; NaN when the histogram is empty."""
        if self._total_weight <= 0.0:
            return math.nan
        return self._weighted_sum_s / self._total_weight


# ----------------------------------------------------------------------------- SLO

SLO_METRICS: tuple[str, ...] = ("ttft", "tpot", "itl", "e2e")
SLO_PERCENTILES: dict[str, float | None] = {
    "p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9, "mean": None,
}
# Per-user decode speed, tokens/s = 1 / TPOT per request: a floor, not a ceiling, so its percentiles
# count from the slow end (tok_s_per_user_p10 >= X is the TPOT p90 <= 1/X). No mean: the mean of 1/TPOT
# is not 1 / mean TPOT.
RATE_METRIC = "tok_s_per_user"
RATE_PERCENTILES: dict[str, float] = {"p50": 50.0, "p10": 10.0, "p5": 5.0, "p1": 1.0}
_UNIT_S = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
_SLO_EXAMPLE = "write e.g. ttft_p99=2s,tpot_p99=100ms,tok_s_per_user_p50=500tok/s"
_NUMBER = r"((?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
_DURATION_RE = re.compile(r"^\s*" + _NUMBER + r"\s*(s|ms|us)?\s*$")
_RATE_RE = re.compile(r"^\s*" + _NUMBER + r"\s*(tok/s)?\s*$")


@dataclass(frozen=True)
class SLOTarget:
    """One latency target: `metric` (ttft, tpot, itl, e2e) at `percentile` (p50..p999 or mean)
    must be <= `seconds`. A per-user speed target (metric tok_s_per_user) is a floor: its
    `percentile` (p50, p10, p5, p1) of 1 / TPOT must be >= `tok_s`; `seconds` is then the TPOT
    ceiling it is per request (1 / tok_s)."""

    metric: str
    percentile: str
    seconds: float
    tok_s: float | None = None  # tok_s_per_user targets only: tokens/s per user

    @property
    def key(self) -> str:
        """The target's name as written, e.g. ``"ttft_p99"``."""
        return f"{self.metric}_{self.percentile}"

    @property
    def is_rate(self) -> bool:
        """True for a per-user speed floor (tok_s_per_user), False for a latency ceiling."""
        return self.metric == RATE_METRIC

    @property
    def text(self) -> str:
        """The target as one would write it, e.g. ``"ttft_p99=2s"``, ``"tok_s_per_user_p50=500tok/s"``."""
        return f"{self.key}={self.tok_s:g}tok/s" if self.is_rate else f"{self.key}={self.seconds:g}s"


@dataclass(frozen=True)
class SLO:
    """A set of latency targets; a request is good when it meets every one of them."""

    targets: tuple[SLOTarget, ...] = field(default_factory=tuple)

    def __str__(self) -> str:
        return ",".join(t.text for t in self.targets)


def _parse_duration_s(text: str) -> float | None:
    m = _DURATION_RE.match(text)
    if not m:
        return None
    value = float(m.group(1)) * _UNIT_S[m.group(2) or "s"]
    return value if math.isfinite(value) else None


def parse_slo(text: str | None) -> SLO | None:
    """Parse ``"metric_percentile=duration,..."`` into an `SLO`; None or blank text gives None.

    Metrics: ttft, tpot, itl, e2e. Percentiles: p50, p90, p95, p99, p999, mean. Durations: a
    positive number with unit s, ms or us (a bare number is seconds), e.g. ``"ttft_p99=2s,tpot_p99=100ms"``
    or ``"e2e_p90=30,itl_p50=500us"``. Per-user decode speed, a floor: ``tok_s_per_user_p50=500tok/s``
    (percentiles p50, p10, p5, p1 from the slow end; unit tok/s, a bare number is tok/s). Raises
    `InputError` naming the bad part."""
    if text is None or not text.strip():
        return None
    targets: list[SLOTarget] = []
    seen: set[str] = set()
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        where = f"--slo '{part}'"
        if "=" not in part:
            raise InputError(f"{where}: expected metric_percentile=duration; {_SLO_EXAMPLE}")
        key, _, value = (s.strip() for s in part.partition("="))
        if key.lower().startswith(RATE_METRIC):
            targets.append(_rate_target(key, value, where, seen))
            continue
        metric, sep, pct = key.lower().partition("_")
        if not sep:
            raise InputError(f"{where}: '{key}' is not metric_percentile (e.g. ttft_p99); {_SLO_EXAMPLE}")
        if metric not in SLO_METRICS:
            raise InputError(f"{where}: '{metric}' is not a metric (one of {', '.join(SLO_METRICS)}, "
                             f"{RATE_METRIC}); {_SLO_EXAMPLE}")
        if pct not in SLO_PERCENTILES:
            raise InputError(f"{where}: '{pct}' is not a percentile (one of {', '.join(SLO_PERCENTILES)}); "
                             f"{_SLO_EXAMPLE}")
        seconds = _parse_duration_s(value)
        if seconds is None:
            raise InputError(f"{where}: '{value}' is not a duration (number with unit s, ms or us); "
                             f"{_SLO_EXAMPLE}")
        if seconds <= 0.0:
            raise InputError(f"{where}: the duration must be > 0; {_SLO_EXAMPLE}")
        check_in_range(f"{where}: the duration", seconds, DURATION_RANGE_S, "s")
        canonical = f"{metric}_{pct}"
        if canonical in seen:
            raise InputError(f"{where}: {canonical} is given twice; give each target once, {_SLO_EXAMPLE}")
        seen.add(canonical)
        targets.append(SLOTarget(metric, pct, seconds))
    if not targets:
        raise InputError(f"--slo '{text}': no targets; {_SLO_EXAMPLE}")
    return SLO(tuple(targets))


def _rate_target(key: str, value: str, where: str, seen: set[str]) -> SLOTarget:
    """A tok_s_per_user_pNN=X[tok/s] target (parse_slo's per-user speed floor)."""
    pct = key.lower()[len(RATE_METRIC):].lstrip("_")
    if pct not in RATE_PERCENTILES:
        raise InputError(f"{where}: '{pct or key}' is not a percentile of {RATE_METRIC} (one of "
                         f"{', '.join(RATE_PERCENTILES)}: counted from the slowest user up); {_SLO_EXAMPLE}")
    m = _RATE_RE.match(value)
    tok_s = float(m.group(1)) if m else math.nan
    if not math.isfinite(tok_s):
        raise InputError(f"{where}: '{value}' is not a speed (number with unit tok/s); {_SLO_EXAMPLE}")
    if tok_s <= 0.0:
        raise InputError(f"{where}: the speed must be > 0 tok/s; {_SLO_EXAMPLE}")
    check_in_range(f"{where}: the TPOT it implies", 1.0 / tok_s, DURATION_RANGE_S, "s")
    canonical = f"{RATE_METRIC}_{pct}"
    if canonical in seen:
        raise InputError(f"{where}: {canonical} is given twice; give each target once, {_SLO_EXAMPLE}")
    seen.add(canonical)
    return SLOTarget(RATE_METRIC, pct, 1.0 / tok_s, tok_s)


# ----------------------------------------------------------------------------- per-request records

REQUEST_COLUMNS: tuple[str, ...] = (
    "request_id", "arrival_s", "first_token_s", "completion_s", "input_tokens", "output_tokens",
    "replica", "prefill_replica", "cached_tokens", "preemptions",
)
_FLOAT_COLUMNS = frozenset({"arrival_s", "first_token_s", "completion_s"})
_OPTIONAL_DEFAULTS = {"prefill_replica": -1, "cached_tokens": 0, "preemptions": 0}


@dataclass(eq=False)
class RequestRecords:
    """Per-request outcome of a simulation: one entry per injected request, all arrays of equal length.

    Times are seconds of simulated time (float64); NaN where the request never got there
    (no first token / not completed by the end of the run). The last three fields may be left out
    (None) and are then filled with -1, 0 and 0."""

    request_id: np.ndarray  # int64
    arrival_s: np.ndarray  # float64 s
    first_token_s: np.ndarray  # float64 s, NaN if no token was produced
    completion_s: np.ndarray  # float64 s, NaN if not completed
    input_tokens: np.ndarray  # int64 prompt tokens
    output_tokens: np.ndarray  # int64 output tokens (requested length)
    replica: np.ndarray  # int64 replica that produced the output tokens; -1 if never scheduled
    prefill_replica: np.ndarray = None  # type: ignore[assignment]  # int64; -1 if not disaggregated / not scheduled
    cached_tokens: np.ndarray = None  # type: ignore[assignment]  # int64 prompt tokens served from the prefix cache
    preemptions: np.ndarray = None  # type: ignore[assignment]  # int64 times the request was preempted

    def __post_init__(self) -> None:
        n = np.asarray(self.request_id).reshape(-1).shape[0]
        for name in REQUEST_COLUMNS:
            value = getattr(self, name)
            if value is None and name in _OPTIONAL_DEFAULTS:
                value = np.full(n, _OPTIONAL_DEFAULTS[name], dtype=np.int64)
            arr = np.asarray(value)
            if arr.ndim != 1 or arr.shape[0] != n:
                raise ValueError(f"RequestRecords.{name} has shape {arr.shape}; expected ({n},) like request_id")
            if name in _FLOAT_COLUMNS:
                arr = arr.astype(np.float64, copy=False)
            else:
                if arr.dtype.kind == "f":
                    if not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
                        raise ValueError(f"RequestRecords.{name} must hold whole numbers")
                elif arr.dtype.kind not in "iub" and n:
                    raise ValueError(f"RequestRecords.{name} must be integers (got dtype {arr.dtype})")
                arr = arr.astype(np.int64, copy=False)
            setattr(self, name, arr)

    def __len__(self) -> int:
        return int(self.request_id.shape[0])

    @property
    def completed(self) -> np.ndarray:
        """Boolean mask of requests that completed (completion_s is not NaN)."""
        return ~np.isnan(self.completion_s)

    def ttft_s(self) -> np.ndarray:
        """Time to first token in seconds (first_token_s - arrival_s); NaN without a first token."""
        return self.first_token_s - self.arrival_s

    def e2e_s(self) -> np.ndarray:
        """End-to-end latency in seconds (completion_s - arrival_s); NaN if not completed."""
        return self.completion_s - self.arrival_s

    def tpot_s(self) -> np.ndarray:
        """Time per output token after the first, in seconds:
        (completion_s - first_token_s) / (output_tokens - 1); NaN for 1-token outputs and unfinished requests."""
        out = np.full(len(self), np.nan)
        ok = self.completed & (self.output_tokens > 1)
        out[ok] = (self.completion_s[ok] - self.first_token_s[ok]) / (self.output_tokens[ok] - 1)
        return out


# ----------------------------------------------------------------------------- summary

_SUMMARY_PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0))


def _num(x: Any) -> float | None:
    """Plain float, or None for NaN/inf."""
    f = float(x)
    return f if math.isfinite(f) else None


def _jsonable(x: Any) -> Any:
    """Turn numpy scalars/arrays and nested containers into plain JSON values (NaN/inf -> None)."""
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return [_jsonable(v) for v in x.tolist()]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return _num(x)
    return x


def _stats(values: np.ndarray) -> dict[str, float | None]:
    """p50/p90/p99 (np.percentile, linear) and mean of the non-NaN values, seconds; None if there are none."""
    v = values[~np.isnan(values)]
    if v.size == 0:
        return {"p50": None, "p90": None, "p99": None, "mean": None}
    out: dict[str, float | None] = {k: _num(np.percentile(v, p)) for k, p in _SUMMARY_PERCENTILES}
    out["mean"] = _num(np.mean(v))
    return out


def _hist_stats(h: LatencyHistogram) -> dict[str, float | None]:
    out: dict[str, float | None] = {k: _num(h.quantile(p / 100.0)) for k, p in _SUMMARY_PERCENTILES}
    out["mean"] = _num(h.mean())
    return out


def summarize(records: RequestRecords, *, duration_s: float, itl: LatencyHistogram,
              slo: SLO | None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Summarize a run as a JSON-ready dict (plain floats/ints; NaN -> None).

    `duration_s` is the simulated time span (seconds, > 0) that throughputs are divided by.
    Latency objects ``{"p50", "p90", "p99", "mean"}`` (seconds) are over completed requests
    (np.percentile, linear interpolation); ``tpot_s`` leaves out 1-token outputs; ``itl_s`` comes from `itl`.

    ``goodput`` is the share of *injected* requests that completed and meet every target of `slo`
    per request (its TTFT/TPOT/E2E <= target; for ITL targets its TPOT is the proxy; a 1-token output
    has no TPOT and meets TPOT/ITL targets); without an SLO it is the completed share.
    ``slo`` maps each target (e.g. ``"ttft_p99"``) to ``{"target_s", "value_s", "met"}`` where value_s is
    that percentile (or mean) over completed requests (ITL from the histogram); no data -> value None,
    met False; a tok_s_per_user target also has ``"target_tok_s", "value_tok_s"`` (the percentile of
    1 / TPOT over completed multi-token requests; its target_s / value_s are their inverses, the TPOT
    equivalents; a request is good when its TPOT <= 1 / target).
    `extra` (engine counters) is merged at top level; a key clash raises ValueError."""
    duration_s = float(duration_s)
    if not (math.isfinite(duration_s) and duration_s > 0.0):
        raise ValueError(f"duration_s={duration_s} must be a positive number of seconds")
    n = len(records)
    done = records.completed
    n_done = int(done.sum())
    ttft = records.ttft_s()[done]
    tpot = records.tpot_s()[done]
    e2e = records.e2e_s()[done]
    per_request = {"ttft": ttft, "tpot": tpot, "itl": tpot, "e2e": e2e}

    good = np.ones(n_done, dtype=bool)
    slo_out: dict[str, Any] = {}
    for t in slo.targets if slo is not None else ():
        v = per_request["tpot" if t.is_rate else t.metric]
        good &= np.isnan(v) | (v <= t.seconds)
        if t.is_rate:  # per-user speed: the percentile of 1 / TPOT, a floor
            vv = 1.0 / v[~np.isnan(v)]
            rate = None if vv.size == 0 else _num(np.percentile(vv, RATE_PERCENTILES[t.percentile]))
            slo_out[t.key] = {"target_tok_s": float(t.tok_s), "value_tok_s": rate,
                              "target_s": float(t.seconds), "value_s": None if not rate else 1.0 / rate,
                              "met": bool(rate is not None and rate >= t.tok_s)}
            continue
        pct = SLO_PERCENTILES[t.percentile]
        value: float | None
        if t.metric == "itl":
            value = _num(itl.mean() if pct is None else itl.quantile(pct / 100.0))
        else:
            vv = v[~np.isnan(v)]
            value = None if vv.size == 0 else _num(np.mean(vv) if pct is None else np.percentile(vv, pct))
        slo_out[t.key] = {"target_s": float(t.seconds), "value_s": value,
                          "met": bool(value is not None and value <= t.seconds)}
    n_good = int(good.sum())

    summary: dict[str, Any] = {
        "requests_injected": int(n),
        "requests_completed": n_done,
        "duration_s": duration_s,
        "request_s": n_done / duration_s,
        "input_tok_s": float(records.input_tokens[done].sum()) / duration_s,
        "output_tok_s": float(records.output_tokens[done].sum()) / duration_s,
        "ttft_s": _stats(ttft),
        "tpot_s": _stats(tpot),
        "e2e_s": _stats(e2e),
        "itl_s": _hist_stats(itl),
        "goodput": (n_good / n) if n else None,
        "goodput_req_s": n_good / duration_s,
        "slo": slo_out,
    }
    if extra:
        clash = sorted(set(extra) & set(summary))
        if clash:
            raise ValueError(f"extra keys {clash} would overwrite summary keys; rename them")
        summary.update(_jsonable(extra))
    return summary


# ----------------------------------------------------------------------------- result files

REQUESTS_FILE, SUMMARY_FILE = "requests.parquet", "summary.json"
RESULT_FILES = (REQUESTS_FILE, SUMMARY_FILE)  # what a results directory holds (and --overwrite replaces)


def write_results(out_dir: str | os.PathLike[str], records: RequestRecords,
                  summary: dict[str, Any]) -> tuple[Path, Path]:
    """Write ``requests.parquet`` (columns `REQUEST_COLUMNS`, in that order; NaN times stay NaN float64)
    and ``summary.json`` (sorted keys, indent 2, trailing newline) into `out_dir`, creating it.

    Identical inputs give byte-identical files. The directory is written as a whole, atomically
    (`infersim.results.write_dir_atomically`): an interrupted write leaves the earlier results intact,
    never a new parquet beside an old summary; an existing `out_dir` holding anything but these two
    files is refused. Files follow the user's umask. Returns (parquet path, json path). Raises
    InputError if `summary` holds NaN/inf (use `summarize`)."""
    table = pa.table({name: pa.array(getattr(records, name)) for name in REQUEST_COLUMNS})
    text = json_text(summary, indent=2, sort_keys=True)
    out = write_dir_atomically(out_dir, {
        REQUESTS_FILE: lambda f: pq.write_table(table, f, compression="snappy"),
        SUMMARY_FILE: lambda f: f.write(text.encode("utf-8"))})
    return out / REQUESTS_FILE, out / SUMMARY_FILE
