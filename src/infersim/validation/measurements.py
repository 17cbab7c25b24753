"""Reader for the published-measurement CSV (schema: infersim/datasets/calibration/README.md).

Strict: a malformed row raises InputError naming the file, line and column. An empty field means
unknown (None), never zero."""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from infersim.errors import InputError, shown
from infersim.inputs import os_problem

REQUIRED_COLUMNS = ("id", "model", "chip", "n_chips", "precision", "scenario", "input_len", "output_len", "batch",
                    "concurrency", "request_rate", "spec_decode", "metric", "stat", "value", "unit")
SCENARIOS = ("offline", "fixed_batch", "server", "concurrency", "single_stream")
METRICS = {"output_tok_s": "tok/s", "output_tok_s_per_chip": "tok/s/chip", "total_tok_s": "tok/s",
           "tok_s_per_user": "tok/s/user", "ttft_ms": "ms", "tpot_ms": "ms", "itl_ms": "ms",
           "e2e_latency_ms": "ms", "prefill_tok_s": "tok/s"}
PRECISIONS = ("fp32", "fp16", "bf16", "fp8", "fp4", "int8", "int4", "mixed")


@dataclass(frozen=True)
class Measurement:
    id: str
    model: str
    chip: str
    n_chips: int | None
    precision: str | None
    scenario: str
    input_len: int | None
    output_len: int | None
    batch: int | None
    concurrency: int | None
    request_rate: float | None
    spec_decode: str
    metric: str
    stat: str
    value: float
    unit: str
    software: str = ""
    trust: str = ""
    notes: str = ""
    source: str = ""   # where the number comes from (folds group rows by it: validation/folds.py)
    line: int = 0


def _num(raw: str, kind, where: str, col: str, positive: bool = True):
    raw = (raw or "").strip()
    if raw == "":
        return None
    try:
        v = kind(raw)
    except ValueError:
        raise InputError(f"{where}, column '{col}': '{raw}' is not {'an integer' if kind is int else 'a number'}") from None
    if not math.isfinite(v):
        raise InputError(f"{where}, column '{col}': {raw} is not a finite number")
    if positive and v <= 0:
        raise InputError(f"{where}, column '{col}': {raw} must be positive")
    return v


def read_csv_file(path: str | Path, parse, what: str, fix: str):
    """parse(csv.DictReader, path) over a UTF-8 CSV file; an unreadable file is one InputError
    ("cannot read {what} '...': why; {fix}")."""
    path = Path(path)
    try:
        fh = path.open(newline="", encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read {what} '{shown(path)}': {os_problem(e)}; {fix}") from None
    try:
        with fh:
            return parse(csv.DictReader(fh), path)
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the file as UTF-8") from None


def checked_records(reader: csv.DictReader, path: Path, required: tuple[str, ...], id_column: str,
                    header_note: str = ""):
    """Yield (record, line, where, id) for every CSV record after checking the header holds the
    `required` columns, each record has as many fields as the header and a unique, non-empty id
    (each problem one InputError naming the line and column)."""
    missing = [c for c in required if c not in (reader.fieldnames or [])]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} in the header line{header_note}")
    seen: set[str] = set()
    for r in reader:
        line = reader.line_num
        where = f"{path.name} line {line}"
        if None in r:
            raise InputError(f"{where}: more fields than the header has columns (quote fields holding commas)")
        short = [c for c in required if r.get(c) is None]
        if short:
            raise InputError(f"{where}: fewer fields than the header; column '{short[0]}' is missing")
        rid = (r[id_column] or "").strip()
        if not rid:
            raise InputError(f"{where}, column '{id_column}': empty")
        if rid in seen:
            raise InputError(f"{where}, column '{id_column}': duplicate id {shown(rid)}")
        seen.add(rid)
        yield r, line, where, rid


def read_measurements(path: str | Path) -> list[Measurement]:
    return read_csv_file(path, _parse, "measurements file", "give a measurement CSV (the calibration schema)")


def _parse(reader: csv.DictReader, path: Path) -> list[Measurement]:
    rows: list[Measurement] = []
    for r, line, where, rid in checked_records(reader, path, REQUIRED_COLUMNS, "id"):
        for col, allowed in (("scenario", SCENARIOS), ("metric", tuple(METRICS))):
            if r[col] not in allowed:
                raise InputError(f"{where}, column '{col}': '{r[col]}' is not one of {', '.join(allowed)}")
        prec = (r["precision"] or "").strip() or None
        if prec is not None and prec not in PRECISIONS:
            raise InputError(f"{where}, column 'precision': '{prec}' is not one of {', '.join(PRECISIONS)}")
        if r["unit"] != METRICS[r["metric"]]:
            raise InputError(f"{where}, column 'unit': '{r['unit']}' does not match metric {r['metric']} "
                             f"(its unit is {METRICS[r['metric']]})")
        value = _num(r["value"], float, where, "value")
        if value is None:
            raise InputError(f"{where}, column 'value': empty")
        rows.append(Measurement(
            id=rid, model=r["model"].strip(), chip=r["chip"].strip(),
            n_chips=_num(r["n_chips"], int, where, "n_chips"), precision=prec, scenario=r["scenario"],
            input_len=_num(r["input_len"], int, where, "input_len"),
            output_len=_num(r["output_len"], int, where, "output_len"),
            batch=_num(r["batch"], int, where, "batch"), concurrency=_num(r["concurrency"], int, where, "concurrency"),
            request_rate=_num(r["request_rate"], float, where, "request_rate"),
            spec_decode=(r["spec_decode"] or "unknown").strip(), metric=r["metric"], stat=r["stat"], value=value,
            unit=r["unit"], software=r.get("software", "") or "", trust=r.get("trust", "") or "",
            notes=r.get("notes", "") or "", source=(r.get("source", "") or "").strip(), line=line))
    return rows
