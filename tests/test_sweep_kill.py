"""A sweep killed for real (SIGKILL of the driver, or of a pool worker) and run again ends with
every configuration's row exactly once, equal to an uninterrupted run's; the same sweep as Ray
tasks on a local instance, with a task whose worker dies once, lands the same rows."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
import yaml

import infersim
from infersim.sweep.runner import run_sweep
from infersim.sweep.spec import SweepFile, expand
from infersim.sweep.store import METRICS, ResultStore

SRC = str(Path(infersim.__file__).resolve().parents[1])
# 144 configurations of ~5-20 ms each: long enough (seconds) to be killed after the first commit
SWEEP = {
    "name": "kill",
    "models": ["nemotron-3-super"],
    "workload": {"input_len": 2048, "output_len": 256},
    "load": {"batch": [1, 2, 4, 8, 16, 32, 64, 128]},
    "deployments": [
        {"base": {"name": "afd", "mode": "afd", "gpu": {"system": "vr-nvl72", "racks": 1, "tp": 8, "precision": "fp8",
                                                        "prefill_replicas": 2},
                  "lpu": {"system": "lpx", "precision": "mixed"}, "link": "gpu-lpu-direct"},
         "grid": {"lpu.racks_per_gpu_rack": [0.5, 1, 2, 4], "micro_batches": [1, 2, 4]}},
        {"base": {"name": "gpu", "mode": "gpu", "gpu": {"system": "vr-nvl72", "racks": 1}},
         "grid": {"gpu.tp": [2, 4, 8], "gpu.precision": ["fp8", "fp4"]}},
    ],
}
COMPARED = ["config_id", "batch", "status", "error", *METRICS]


def outcome(db: Path) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(f"select {', '.join(COMPARED)} from results order by config_id").fetchall()
    finally:
        con.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """(sweep file, rows of an uninterrupted in-process run)."""
    folder = tmp_path_factory.mktemp("sweep")
    spec = folder / "kill.yaml"
    spec.write_text(yaml.safe_dump(SWEEP))
    store = ResultStore(folder / "ref.duckdb")
    configs = expand(SweepFile.model_validate(SWEEP))
    run_sweep(configs, store, sweep_name="kill", jobs=1)
    store.close()
    got = outcome(folder / "ref.duckdb")
    assert len(got) == len(configs) and {r[2] for r in got} == {"ok", "infeasible"}
    return spec, got


def start(spec: Path, db: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-m", "infersim", "sweep", str(spec), "--out", str(db), "--jobs", "2",
                             "--commit-every", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for_first_commit(proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        assert line, f"the sweep ended before its first commit: {proc.wait()} {proc.stdout.read()}"
        if line.startswith("written"):
            return
    raise AssertionError("no commit within 120 s")


def started_midway(reference, tmp_path: Path):
    """(sweep file, reference rows, results file, the sweep's process after its first commit)."""
    spec, ref = reference
    db = tmp_path / "r.duckdb"
    proc = start(spec, db)
    wait_for_first_commit(proc)
    return spec, ref, db, proc


def rerun(spec: Path, db: Path) -> str:
    proc = start(spec, db)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    return stdout


def workers_of(pid: int) -> list[int]:
    kids = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(k) for k in (task / "children").read_text().split()]
    return [k for k in kids if b"spawn_main" in Path(f"/proc/{k}/cmdline").read_bytes()]


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds pool workers through Linux /proc")
def test_driver_sigkill_then_rerun_loses_and_duplicates_nothing(tmp_path, reference):
    spec, ref, db, proc = started_midway(reference, tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    partial = outcome(db)
    assert 0 < len(partial) < len(ref), "the kill did not land midway"
    assert set(partial) <= set(ref)
    out = rerun(spec, db)
    assert f"{len(partial)} already in" in out
    assert outcome(db) == ref


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds pool workers through Linux /proc")
def test_worker_sigkill_is_recovered_and_rerun_adds_nothing(tmp_path, reference):
    spec, ref, db, proc = started_midway(reference, tmp_path)
    workers = workers_of(proc.pid)
    assert workers, "no pool worker found"
    os.kill(workers[0], signal.SIGKILL)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "a worker process died" in stderr
    assert outcome(db) == ref
    assert f"{len(ref)} already in" in rerun(spec, db) and outcome(db) == ref


FLAG = "INFERSIM_TEST_FAIL_ONCE"


def dies_once(body: dict) -> dict:
    """An evaluation whose worker process dies the first time it runs anywhere (a flag file marks it)."""
    from infersim.sweep.evaluate import estimate_config
    flag = Path(os.environ[FLAG])
    try:
        fd = os.open(flag, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return estimate_config(body)
    os.close(fd)
    os._exit(1)


def test_ray_tasks_land_the_same_rows_and_a_failed_task_is_retried(tmp_path, reference, monkeypatch):
    ray = pytest.importorskip("ray", reason="ray is not installed (the optional extra: pip install 'infersim[ray]')")
    import ray.cloudpickle
    _, ref = reference
    monkeypatch.setenv(FLAG, str(tmp_path / "died"))  # the local instance's workers inherit it
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import tests/
    store = ResultStore(tmp_path / "r.duckdb")
    configs = expand(SweepFile.model_validate(SWEEP))[::4]  # a quarter of them: Ray's start-up dominates
    report = run_sweep(configs, store, sweep_name="kill", evaluate=dies_once, ray_address="local", jobs=2, chunk=4)
    store.close()
    assert (tmp_path / "died").exists()  # one worker did die
    assert report.evaluated == len(configs) and report.backend.startswith("ray")
    ids = {c.config_id for c in configs}
    assert outcome(tmp_path / "r.duckdb") == [r for r in ref if r[0] in ids]
