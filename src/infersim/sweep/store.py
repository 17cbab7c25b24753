"""The sweep's results: one DuckDB file, table `results`, one row per configuration.

Schema (`results`; one row per config_id, never two):

| column | type | what |
|---|---|---|
| config_id | VARCHAR, primary key | 16 hex digits of the SHA-256 of the configuration's canonical JSON (sweep/spec.py) |
| sweep | VARCHAR | name of the sweep file that wrote the row |
| deployment | VARCHAR | the deployment's name and its grid point, e.g. `vr-nvl72[gpu.tp=8]` |
| model | VARCHAR | catalog model name |
| mode | VARCHAR | gpu, pd, lpu, afd, spec |
| gpu_system, gpu_racks, tp, ep, pp, gpu_precision, prefill_replicas | | the deployment's `gpu:` section (NULL without one) |
| lpu_system, lpu_racks, lpx_per_nvl72, lpu_precision | | its `lpu:` section; lpx_per_nvl72 is `lpu.racks_per_gpu_rack` |
| link, micro_batches, spec_method, spec_k, engine | | the GPU<->LPU link, AFD micro-batches, speculative method and k, serving engine |
| input_len, output_len, trace | INTEGER, INTEGER, VARCHAR | tokens per request (a trace's means, rounded) and the trace's name |
| load_kind, load, batch | VARCHAR, INTEGER, INTEGER | `batch` or `concurrency`, its value, and the sequences per decode replica evaluated |
| config | VARCHAR | the whole configuration as canonical JSON (every deployment field) |
| tok_s_per_user, output_tok_s, ttft_s, tpot_s | DOUBLE | per-user decode speed, output tokens/s of the deployment, TTFT and TPOT in seconds |
| racks, power_w, tok_s_per_mw | DOUBLE | racks of every kind, power in W, output tokens/s per MW |
| cost_per_mtok_output_usd, cost_per_mtok_input_usd, output_tok_per_usd | DOUBLE | USD per million output / input tokens and output tokens per USD, buying the hardware at the catalog's prices (capex amortised + power: infersim.economics); NULL where a system has no price |
| status, error | VARCHAR | `ok`, `infeasible` (error: why, e.g. does not fit) or `error` (an unexpected failure) |
| code_version, finished_at | VARCHAR, TIMESTAMP | infersim's version (+ git commit when run from a checkout) and when the row was written (UTC) |

Table `infersim_meta(key, value)` marks the file as infersim's (`schema_version`). Rows are
inserted in transactions with `ON CONFLICT DO NOTHING`, so a configuration written twice (a
restart, a retried task) stays one row; existing rows are only ever deleted by `--overwrite`.
"""
from __future__ import annotations

import datetime
import functools
import subprocess
from pathlib import Path

from infersim.errors import InputError, shown

SCHEMA_VERSION = "2"  # 2: the cost columns
TABLE = "results"
META = "infersim_meta"

# (column, DuckDB type): configuration columns, taken from the configuration's body
CONFIG_COLUMNS = [
    ("config_id", "VARCHAR PRIMARY KEY"), ("sweep", "VARCHAR"), ("deployment", "VARCHAR"), ("model", "VARCHAR"),
    ("mode", "VARCHAR"), ("gpu_system", "VARCHAR"), ("gpu_racks", "INTEGER"), ("tp", "INTEGER"), ("ep", "INTEGER"),
    ("pp", "INTEGER"), ("gpu_precision", "VARCHAR"), ("prefill_replicas", "INTEGER"), ("lpu_system", "VARCHAR"),
    ("lpu_racks", "INTEGER"), ("lpx_per_nvl72", "DOUBLE"), ("lpu_precision", "VARCHAR"), ("link", "VARCHAR"),
    ("micro_batches", "INTEGER"), ("spec_method", "VARCHAR"), ("spec_k", "INTEGER"), ("engine", "VARCHAR"),
    ("input_len", "INTEGER"), ("output_len", "INTEGER"), ("trace", "VARCHAR"), ("load_kind", "VARCHAR"),
    ("load", "INTEGER"), ("batch", "INTEGER"), ("config", "VARCHAR"),
]
METRICS = ["tok_s_per_user", "output_tok_s", "ttft_s", "tpot_s", "racks", "power_w", "tok_s_per_mw",
           "cost_per_mtok_output_usd", "cost_per_mtok_input_usd", "output_tok_per_usd"]
COLUMNS = CONFIG_COLUMNS + [(m, "DOUBLE") for m in METRICS] + [
    ("status", "VARCHAR"), ("error", "VARCHAR"), ("code_version", "VARCHAR"), ("finished_at", "TIMESTAMP")]
COLUMN_NAMES = [c for c, _ in COLUMNS]

# results column -> (deployment section, field)
_SECTION_FIELDS = {
    "gpu_system": ("gpu", "system"), "gpu_racks": ("gpu", "racks"), "tp": ("gpu", "tp"), "ep": ("gpu", "ep"),
    "pp": ("gpu", "pp"), "gpu_precision": ("gpu", "precision"), "prefill_replicas": ("gpu", "prefill_replicas"),
    "lpu_system": ("lpu", "system"), "lpu_racks": ("lpu", "racks"), "lpx_per_nvl72": ("lpu", "racks_per_gpu_rack"),
    "lpu_precision": ("lpu", "precision"), "spec_method": ("spec", "method"), "spec_k": ("spec", "k"),
    "engine": ("engine", "name"),
}


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """infersim's version, with the git commit (and `-dirty`) when run from a checkout."""
    from infersim import __version__
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(here), "describe", "--always", "--dirty", "--abbrev=10"],
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return __version__
    return f"{__version__}+g{sha.stdout.strip()}" if sha.returncode == 0 and sha.stdout.strip() else __version__


def config_columns(cid: str, sweep: str, name: str, body: dict) -> dict:
    """The configuration columns of a row."""
    from infersim.sweep.spec import canonical_json
    dep = body["deployment"]
    row = {"config_id": cid, "sweep": sweep, "deployment": name, "model": body["model"], "mode": dep["mode"],
           "link": dep.get("link"), "micro_batches": dep.get("micro_batches"), **body["workload"],
           "load_kind": body["load"]["kind"], "load": body["load"]["value"], "config": canonical_json(body)}
    for col, (section, field) in _SECTION_FIELDS.items():
        row[col] = (dep.get(section) or {}).get(field)
    return row


def duckdb_module():
    try:
        import duckdb
    except ImportError:  # pragma: no cover - a dependency; only a broken install lacks it
        raise InputError("duckdb is not installed; `pip install duckdb` (a dependency of infersim)") from None
    return duckdb


def first_line(e: Exception) -> str:
    return shown(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__, 160)


def check_results_file(path: Path, option: str = "--out") -> bool:
    """Before opening `path` for writing: True when it is an infersim results file to continue,
    False when it does not exist yet. A directory, a file DuckDB cannot open (corrupt, or not a
    database) or a DuckDB file of someone else's (tables but no infersim marker) is one InputError,
    and the file is left untouched (it is only opened read-only here)."""
    if not path.exists():
        return False
    if path.is_dir():
        raise InputError(f"{option} '{shown(path)}' is a directory; give a .duckdb file name")
    duckdb = duckdb_module()
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as e:
        if "could not set lock" in str(e).lower():
            raise InputError(f"{option} '{shown(path)}' is in use by another process (a sweep still running?); "
                             "wait for it or give another file") from None
        raise InputError(f"{option} '{shown(path)}' is not a DuckDB database or is corrupt ({first_line(e)}); left it "
                         "untouched: give another file name") from None
    try:
        return _check_tables(con, path, option)
    except duckdb.Error as e:  # a file that opens but whose blocks do not read back
        raise InputError(f"{option} '{shown(path)}' is a corrupt DuckDB file ({first_line(e)}); left it untouched: "
                         "give another file name") from None
    finally:
        con.close()


def _check_tables(con, path: Path, option: str) -> bool:
    """True when the open file is empty or an infersim results file of this schema."""
    tables = {t for (t,) in con.execute("select table_name from information_schema.tables").fetchall()}
    if not tables:
        return True
    if META not in tables or TABLE not in tables:
        raise InputError(f"{option} '{shown(path)}' is a DuckDB file of something else (tables: "
                         f"{shown(', '.join(sorted(tables)))}); left it untouched: give another file name")
    got = con.execute(f"select value from {META} where key = 'schema_version'").fetchone()
    if got is None or got[0] != SCHEMA_VERSION:
        raise InputError(f"{option} '{shown(path)}' holds infersim results of schema version "
                         f"{got[0] if got else '?'}, not {SCHEMA_VERSION}; give a new file name")
    have = [r[0] for r in con.execute(f"select column_name from information_schema.columns where table_name = "
                                      f"'{TABLE}' order by ordinal_position").fetchall()]
    if have != COLUMN_NAMES:
        raise InputError(f"{option} '{shown(path)}': its results table has other columns than schema version "
                         f"{SCHEMA_VERSION}'s; give a new file name")
    return True


class ResultStore:
    """The `results` table of one DuckDB file, open for writing by this process alone (DuckDB
    locks the file; workers never touch it: they return rows to the driver)."""

    def __init__(self, path: str | Path, option: str = "--out"):
        self.path = Path(path)
        check_results_file(self.path, option)
        duckdb = duckdb_module()
        try:
            self.con = duckdb.connect(str(self.path))
        except duckdb.Error as e:
            raise InputError(f"{option} '{shown(self.path)}': cannot open it for writing ({first_line(e)})") from None
        cols = ", ".join(f"{c} {t}" for c, t in COLUMNS)
        self.con.execute("begin transaction")
        self.con.execute(f"create table if not exists {META} (key VARCHAR PRIMARY KEY, value VARCHAR)")
        self.con.execute(f"insert into {META} values ('schema_version', ?) on conflict do nothing", [SCHEMA_VERSION])
        self.con.execute(f"create table if not exists {TABLE} ({cols})")
        self.con.execute("commit")

    def done_ids(self) -> set[str]:
        return {r[0] for r in self.con.execute(f"select config_id from {TABLE}").fetchall()}

    def count(self) -> int:
        return self.con.execute(f"select count(*) from {TABLE}").fetchone()[0]

    def delete(self, ids: list[str]) -> int:
        """Delete the rows of `ids` (--overwrite), in one transaction; returns how many there were."""
        import pyarrow as pa
        self.con.register("doomed", pa.table({"config_id": pa.array(ids, pa.string())}))
        self.con.execute("begin transaction")
        n = self.con.execute(f"select count(*) from {TABLE} where config_id in (select config_id from doomed)"
                             ).fetchone()[0]
        self.con.execute(f"delete from {TABLE} where config_id in (select config_id from doomed)")
        self.con.execute("commit")
        self.con.unregister("doomed")
        return n

    def write(self, rows: list[dict]) -> None:
        """Insert `rows` (dicts with every column but code_version and finished_at) in one
        transaction; a config_id already present is kept as it is."""
        if not rows:
            return
        import pyarrow as pa
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        extra = {"code_version": code_version(), "finished_at": now}
        arrow = {"VARCHAR": pa.string(), "INTEGER": pa.int64(), "DOUBLE": pa.float64(), "TIMESTAMP": pa.timestamp("us")}
        schema = pa.schema([(c, arrow[t.split()[0]]) for c, t in COLUMNS])
        self.con.register("incoming_rows", pa.Table.from_pylist([{**r, **extra} for r in rows], schema=schema))
        self.con.execute("begin transaction")
        self.con.execute(f"insert into {TABLE} select {', '.join(COLUMN_NAMES)} from incoming_rows on conflict do nothing")
        self.con.execute("commit")
        self.con.unregister("incoming_rows")

    def close(self) -> None:
        self.con.close()
