"""`infersim sweep` and `infersim query`: the sweep file's expansion and ids, rows for infeasible
points, resuming without replacing, --overwrite, and clean failure on bad files (exit 2, one line,
the file untouched)."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import duckdb
import pytest
import yaml
from typer.testing import CliRunner

from cli_checks import assert_fails_cleanly
from infersim.cli.main import app
from infersim.sweep.spec import SweepFile, config_id, expand
from infersim.sweep.store import COLUMN_NAMES

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]

TINY = {
    "name": "tiny",
    "models": ["llama-3.3-70b"],
    "workload": {"input_len": 1024, "output_len": 128},
    "load": {"batch": [1, 512]},
    "deployments": [
        {"base": {"name": "gpu", "mode": "gpu", "gpu": {"system": "vr-nvl72", "tp": 8, "precision": "fp8"}},
         "grid": {"gpu.tp": [4, 8]}},
        {"base": {"name": "lpx", "mode": "lpu", "lpu": {"system": "lpx", "racks": 1}}},
    ],
}


def write(tmp_path: Path, doc: dict, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc))
    return p


def rows(db: Path, sql: str = "select * from results order by config_id") -> list[dict]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        cur = con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]
    finally:
        con.close()


def sweep(*args: str):
    return runner.invoke(app, ["sweep", *args, "--quiet", "--jobs", "1"])


def test_expansion_is_the_grid_product_with_stable_ids(tmp_path):
    configs = expand(SweepFile.model_validate(TINY))
    assert len(configs) == 1 * (2 + 1) * 2  # models x (grid points + one plain base) x loads
    assert len({c.config_id for c in configs}) == len(configs)
    # the same configuration under another name, with keys in another order, keeps its id
    renamed = json.loads(json.dumps(TINY))
    renamed["name"] = "other"
    renamed["deployments"][0]["base"]["name"] = "renamed"
    renamed["deployments"][0]["base"] = dict(reversed(list(renamed["deployments"][0]["base"].items())))
    assert {c.config_id for c in expand(SweepFile.model_validate(renamed))} == {c.config_id for c in configs}
    body = configs[0].body
    assert config_id(json.loads(json.dumps(body, sort_keys=True))) == configs[0].config_id
    # a changed field is another configuration
    changed = json.loads(json.dumps(TINY))
    changed["workload"]["output_len"] = 129
    assert not {c.config_id for c in expand(SweepFile.model_validate(changed))} & {c.config_id for c in configs}


def test_sweep_writes_one_row_per_configuration_with_infeasible_reasons(tmp_path):
    db = tmp_path / "r.duckdb"
    r = sweep(str(write(tmp_path, TINY)), "--out", str(db))
    assert r.exit_code == 0, r.output
    got = rows(db)
    assert len(got) == 6 and list(got[0]) == COLUMN_NAMES
    ok = [g for g in got if g["status"] == "ok"]
    bad = [g for g in got if g["status"] != "ok"]
    assert ok and bad
    for g in bad:  # 512 sequences of 1152 tokens do not fit one LPX rack's SRAM: a row with the reason
        assert g["status"] == "infeasible" and "does not fit" in g["error"] and g["tok_s_per_user"] is None
    for g in ok:
        assert g["tok_s_per_user"] > 0 and g["output_tok_s"] > 0 and g["tok_s_per_mw"] > 0 and g["error"] is None
        assert g["tok_s_per_mw"] == pytest.approx(g["output_tok_s"] / (g["power_w"] / 1e6))
        assert g["tpot_s"] == pytest.approx(1 / g["tok_s_per_user"])
        assert json.loads(g["config"])["model"] == g["model"] == "llama-3.3-70b"
    tps = {g["tp"] for g in got if g["mode"] == "gpu"}
    assert tps == {4, 8}
    # more sequences per replica: more throughput, less speed per user (same deployment)
    gpu8 = sorted((g for g in ok if g["tp"] == 8), key=lambda g: g["batch"])
    assert gpu8[0]["batch"] == 1 and gpu8[-1]["batch"] == 512
    assert gpu8[-1]["output_tok_s"] > gpu8[0]["output_tok_s"] and gpu8[-1]["tok_s_per_user"] < gpu8[0]["tok_s_per_user"]
    # the cost columns (VR NVL72 and LPX carry catalog prices): the same hardware at 512 sequences
    # serves many more tokens for the same hours, so each million costs less
    for g in ok:
        assert g["cost_per_mtok_output_usd"] > 0 and g["output_tok_per_usd"] > 0
    assert gpu8[-1]["cost_per_mtok_output_usd"] < gpu8[0]["cost_per_mtok_output_usd"]
    for g in bad:
        assert g["cost_per_mtok_output_usd"] is None


def test_rerun_continues_and_never_replaces_without_overwrite(tmp_path):
    db, spec = tmp_path / "r.duckdb", write(tmp_path, TINY)
    assert sweep(str(spec), "--out", str(db)).exit_code == 0
    first = rows(db)
    r = runner.invoke(app, ["sweep", str(spec), "--out", str(db), "--json", "--quiet", "--jobs", "1"])
    assert r.exit_code == 0
    summary = json.loads(r.stdout)
    assert summary["evaluated"] == 0 and summary["already_written"] == 6 and summary["rows_in_table"] == 6
    assert rows(db) == first  # finished_at included: nothing rewritten
    # a wider grid adds only the new points
    wider = json.loads(json.dumps(TINY))
    wider["load"]["batch"] = [1, 2, 512]
    r = runner.invoke(app, ["sweep", str(write(tmp_path, wider, "w.yaml")), "--out", str(db), "--json", "--quiet"])
    assert json.loads(r.stdout)["evaluated"] == 3 and len(rows(db)) == 9
    assert [g for g in rows(db) if g["config_id"] in {f["config_id"] for f in first}] == first
    # --overwrite evaluates this sweep's points again and replaces only their rows
    r = runner.invoke(app, ["sweep", str(spec), "--out", str(db), "--overwrite", "--json", "--quiet", "--jobs", "1"])
    s = json.loads(r.stdout)
    assert s["deleted"] == 6 and s["evaluated"] == 6 and s["rows_in_table"] == 9
    again = {g["config_id"]: g for g in rows(db)}
    for f in first:
        assert again[f["config_id"]]["finished_at"] > f["finished_at"]
        assert again[f["config_id"]]["tok_s_per_user"] == f["tok_s_per_user"]


@pytest.mark.parametrize("content", [b"not a database\n", b"", bytes(range(256)) * 64])
def test_a_file_that_is_not_duckdb_is_refused_and_left_untouched(tmp_path, content):
    db = tmp_path / "r.duckdb"
    db.write_bytes(content)
    r = sweep(str(write(tmp_path, TINY)), "--out", str(db))
    assert "not a DuckDB database" in assert_fails_cleanly(r)
    assert db.read_bytes() == content and sorted(p.name for p in tmp_path.iterdir()) == ["r.duckdb", "s.yaml"]


def test_a_foreign_or_corrupt_duckdb_file_is_refused_and_left_untouched(tmp_path):
    foreign = tmp_path / "f.duckdb"
    con = duckdb.connect(str(foreign))
    con.execute("create table results (a integer)")
    con.close()
    before = foreign.read_bytes()
    assert "of something else" in assert_fails_cleanly(sweep(str(write(tmp_path, TINY)), "--out", str(foreign)))
    assert foreign.read_bytes() == before
    # a results file whose data blocks were overwritten
    db = tmp_path / "r.duckdb"
    assert sweep(str(write(tmp_path, TINY)), "--out", str(db)).exit_code == 0
    data = bytearray(db.read_bytes())
    data[12288:len(data) - 4096] = bytes(len(data) - 4096 - 12288)
    db.write_bytes(bytes(data))
    assert "corrupt" in assert_fails_cleanly(sweep(str(write(tmp_path, TINY)), "--out", str(db)))
    assert db.read_bytes() == bytes(data)
    assert "corrupt" in assert_fails_cleanly(runner.invoke(app, ["query", str(db), "select * from results"]))


@pytest.mark.parametrize("change, expect", [
    ({"colour": "red"}, "colour"),
    ({"deployments": [{"base": {"name": "g", "mode": "gpu", "gpu": {"system": "vr-nvl72"}}, "grid": {"gpu.tpp": [1]}}]},
     "tpp"),
    ({"deployments": [{"base": {"name": "g", "mode": "gpu", "gpu": {"system": "vr-nvl72"}}, "grid": {"gpu.tp": []}}]},
     "no values"),
    ({"load": {"batch": [1], "concurrency": [4]}}, "exactly one"),
    ({"load": {"batch": [0]}}, "at least 1"),
    ({"workload": {"input_len": 10}}, "output_len"),
    ({"workload": {"trace": "no-such-trace.csv"}}, "trace file not found"),
    ({"deployments": [{"base": "missing.yaml"}]}, "missing.yaml"),
])
def test_bad_sweep_files_fail_cleanly_before_touching_the_output(tmp_path, change, expect):
    db = tmp_path / "r.duckdb"
    r = sweep(str(write(tmp_path, {**TINY, **change})), "--out", str(db))
    assert expect in assert_fails_cleanly(r)
    assert not db.exists()


def test_trace_workload_uses_the_trace_mean_lengths(tmp_path):
    from infersim.workload.traces import read_trace
    doc = {**TINY, "workload": {"trace": "AzureLLMInferenceTrace_conv.csv"}, "load": {"concurrency": [9, 18]}}
    configs = expand(SweepFile.model_validate(doc))
    reqs = read_trace("AzureLLMInferenceTrace_conv.csv")
    w = configs[0].body["workload"]
    assert (w["input_len"], w["output_len"]) == (round(reqs.input_tokens.mean()), round(reqs.output_tokens.mean()))
    db = tmp_path / "r.duckdb"
    assert sweep(str(write(tmp_path, doc)), "--out", str(db)).exit_code == 0
    gpu = [g for g in rows(db) if g["mode"] == "gpu" and g["tp"] == 8]
    # vr-nvl72 at tp 8: 9 replicas; concurrency spread evenly over them
    assert sorted(g["batch"] for g in gpu) == [1, 2] and {g["trace"] for g in gpu} == {"AzureLLMInferenceTrace_conv.csv"}


def test_query_prints_table_json_csv_and_refuses_bad_or_writing_sql(tmp_path):
    db = tmp_path / "r.duckdb"
    assert sweep(str(write(tmp_path, TINY)), "--out", str(db)).exit_code == 0
    sql = "select deployment, batch, status from results order by deployment, batch"
    table = runner.invoke(app, ["query", str(db), sql])
    assert table.exit_code == 0 and "gpu[gpu.tp=4]" in table.stdout and "6 rows" in table.stdout
    j = json.loads(runner.invoke(app, ["query", str(db), sql, "--json"]).stdout)
    assert [r["deployment"] for r in j] == ["gpu[gpu.tp=4]"] * 2 + ["gpu[gpu.tp=8]"] * 2 + ["lpx"] * 2
    c = list(csv.reader(io.StringIO(runner.invoke(app, ["query", str(db), sql, "--csv"]).stdout)))
    assert c[0] == ["deployment", "batch", "status"] and len(c) == 7
    before = db.read_bytes()
    assert "SQL failed" in assert_fails_cleanly(runner.invoke(app, ["query", str(db), "selec 1"]))
    assert "read-only" in assert_fails_cleanly(runner.invoke(app, ["query", str(db), "delete from results"]))
    out = tmp_path / "copy.csv"
    assert_fails_cleanly(runner.invoke(app, ["query", str(db), f"copy results to '{out}'"]))
    assert not out.exists() and db.read_bytes() == before
    assert "not a file" in assert_fails_cleanly(runner.invoke(app, ["query", str(tmp_path / "none.duckdb"), "select 1"]))


def test_example_sweep_expands_to_a_few_hundred_configurations():
    from infersim.sweep.spec import read_sweep
    path = REPO / "examples" / "sweeps" / "small.yaml"
    configs = expand(read_sweep(path), path.parent)
    assert 200 <= len(configs) <= 500
    assert {c.body["deployment"]["mode"] for c in configs} == {"gpu", "pd", "lpu", "afd", "spec"}


def test_ray_missing_is_one_line_before_any_file_is_written(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    db = tmp_path / "r.duckdb"
    line = assert_fails_cleanly(sweep(str(write(tmp_path, TINY)), "--out", str(db), "--ray", "local"))
    assert "pip install 'infersim[ray]'" in line and not db.exists()
