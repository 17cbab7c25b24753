"""Reader for InferenceX serving points (schema: infersim/datasets/calibration/inferencex/README.md).

One row is one benchmark run: a closed-loop client with `concurrency` requests in flight against
one deployment (aggregated TP/EP, or prefill/decode disaggregated), reporting throughput per GPU,
interactivity (tokens/s per user) and latency statistics.

Strict, like the measurement reader: a malformed row raises InputError naming the file, line and
column. An empty field means unknown (None), never zero. Only the columns a prediction or a report
uses are parsed; the provenance columns are kept as text.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from infersim.errors import InputError, shown
from infersim.validation.measurements import _num, checked_records, read_csv_file

REQUIRED_COLUMNS = ("point_id", "hardware", "n_gpus", "framework", "model", "precision", "isl", "osl", "concurrency",
                    "tp", "ep", "dp_attention", "disagg", "prefill_gpus", "decode_gpus", "prefill_tp", "prefill_ep",
                    "prefill_dp_attention", "prefill_workers", "decode_tp", "decode_ep", "decode_dp_attention",
                    "decode_workers", "spec_decode", "output_tput_per_gpu", "tok_s_per_user", "tok_s_per_user_stat",
                    "ttft_ms_median")
PRECISIONS = ("fp8", "fp4", "bf16", "fp16")
SPEC_DECODES = ("none", "mtp")
BOOLEANS = {"true": True, "false": False, "": None}
# the client's TPOT statistic behind tok_s_per_user: the column's text starts with one of these
TPOT_STATS = ("median", "mean")


@dataclass(frozen=True)
class Pool:
    """One side of a disaggregated run (GPUs in all its workers; per-worker tp / ep)."""

    gpus: int | None
    tp: int | None
    ep: int | None
    dp_attention: bool | None
    workers: int | None


@dataclass(frozen=True)
class InferenceXPoint:
    id: str
    hardware: str
    n_gpus: int
    framework: str
    model: str
    precision: str
    isl: int
    osl: int
    concurrency: int
    tp: int | None
    ep: int | None
    dp_attention: bool | None
    disagg: bool
    prefill: Pool | None
    decode: Pool | None
    spec_decode: str
    output_tok_s_per_gpu: float | None   # disaggregated: per decode GPU (the source's definition)
    tok_s_per_user: float | None
    tpot_stat: str                       # "median" or "mean": the TPOT statistic behind tok_s_per_user
    ttft_ms_median: float | None
    num_prompts: int | None              # None: 10 x concurrency (README)
    framework_version: str = ""
    run_date: str = ""
    line: int = 0

    @property
    def decode_gpus(self) -> int:
        """The GPUs output throughput per GPU divides by: decode GPUs when disaggregated, else all."""
        return self.decode.gpus if self.disagg and self.decode and self.decode.gpus else self.n_gpus


def read_points(path: str | Path) -> list[InferenceXPoint]:
    """Every point of an InferenceX-format CSV (InputError for an unreadable or malformed file)."""
    return read_csv_file(path, _parse, "InferenceX points file", "give a CSV in the InferenceX points format "
                         "(src/infersim/datasets/calibration/inferencex/README.md)")


def _choice(raw: str | None, allowed, where: str, col: str) -> str:
    v = (raw or "").strip().lower()
    if v not in allowed:
        raise InputError(f"{where}, column '{col}': '{shown(raw)}' is not one of {', '.join(allowed)}")
    return v


def _bool(raw: str | None, where: str, col: str) -> bool | None:
    return BOOLEANS[_choice(raw, tuple(BOOLEANS), where, col)]


def _pool(r: dict, side: str, where: str) -> Pool:
    def n(col):
        return _num(r[f"{side}_{col}"], int, where, f"{side}_{col}")
    return Pool(n("gpus"), n("tp"), n("ep"), _bool(r[f"{side}_dp_attention"], where, f"{side}_dp_attention"),
                n("workers"))


def _required(value, where: str, col: str):
    if value is None:
        raise InputError(f"{where}, column '{col}': empty; every point needs it")
    return value


def _tpot_stat(raw: str | None, where: str) -> str:
    text = (raw or "").strip().lower()
    for stat in TPOT_STATS:
        if text.startswith(stat):
            return stat
    if text == "":
        return "median"  # README: the dashboard's interactivity is 1000 / median TPOT unless stated
    raise InputError(f"{where}, column 'tok_s_per_user_stat': '{shown(raw)}' does not start with median or mean")


def _parse(reader: csv.DictReader, path: Path) -> list[InferenceXPoint]:
    points: list[InferenceXPoint] = []
    for r, line, where, pid in checked_records(reader, path, REQUIRED_COLUMNS, "point_id",
                                               "; it is not in the InferenceX points format"):
        for col in ("hardware", "framework", "model"):
            if not (r[col] or "").strip():
                raise InputError(f"{where}, column '{col}': empty")
        disagg = _required(_bool(r["disagg"], where, "disagg"), where, "disagg")
        points.append(InferenceXPoint(
            id=pid, hardware=r["hardware"].strip().lower(), framework=r["framework"].strip().lower(),
            n_gpus=_required(_num(r["n_gpus"], int, where, "n_gpus"), where, "n_gpus"), model=r["model"].strip(),
            precision=_choice(r["precision"], PRECISIONS, where, "precision"),
            isl=_required(_num(r["isl"], int, where, "isl"), where, "isl"),
            osl=_required(_num(r["osl"], int, where, "osl"), where, "osl"),
            concurrency=_required(_num(r["concurrency"], int, where, "concurrency"), where, "concurrency"),
            tp=_num(r["tp"], int, where, "tp"), ep=_num(r["ep"], int, where, "ep"),
            dp_attention=_bool(r["dp_attention"], where, "dp_attention"), disagg=disagg,
            prefill=_pool(r, "prefill", where) if disagg else None,
            decode=_pool(r, "decode", where) if disagg else None,
            spec_decode=_choice(r["spec_decode"], SPEC_DECODES, where, "spec_decode"),
            output_tok_s_per_gpu=_num(r["output_tput_per_gpu"], float, where, "output_tput_per_gpu"),
            tok_s_per_user=_num(r["tok_s_per_user"], float, where, "tok_s_per_user"),
            tpot_stat=_tpot_stat(r["tok_s_per_user_stat"], where),
            ttft_ms_median=_num(r["ttft_ms_median"], float, where, "ttft_ms_median"),
            num_prompts=_num(r.get("num_prompts"), int, where, "num_prompts"),
            framework_version=(r.get("framework_version") or "").strip(), run_date=(r.get("run_date") or "").strip(),
            line=line))
    return points
