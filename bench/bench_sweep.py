"""Time a sweep end to end: expand the sweep file, evaluate every configuration, write the DuckDB
`results` table; print configurations/s per backend.

    python bench/bench_sweep.py [SWEEP.yaml] [--jobs 1,2] [--ray]

Default: examples/sweeps/small.yaml, serially in this process and in a local pool of 2 (each into
a fresh file in a temporary folder; the pool's time includes starting its worker processes).
`--ray` adds a private local Ray instance (startup included) when ray is installed.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from infersim.sweep.runner import run_sweep
from infersim.sweep.spec import expand, read_sweep
from infersim.sweep.store import ResultStore

REPO = Path(__file__).resolve().parents[1]


def timed(configs, name: str, folder: Path, **backend) -> None:
    store = ResultStore(folder / f"{name}.duckdb")
    t = time.perf_counter()
    report = run_sweep(configs, store, sweep_name="bench", **backend)
    wall = time.perf_counter() - t
    store.close()
    status = ", ".join(f"{k} {v}" for k, v in sorted(report.status.items()))
    print(f"{name:14s}: {report.evaluated} configurations in {wall:5.1f} s = {report.evaluated / wall:6.1f} "
          f"configurations/s ({status})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", nargs="?", default=str(REPO / "examples" / "sweeps" / "small.yaml"))
    ap.add_argument("--jobs", default="1,2", help="comma-separated pool sizes (1 = in this process)")
    ap.add_argument("--ray", action="store_true", help="also time a local Ray instance of the largest --jobs")
    args = ap.parse_args()
    path = Path(args.sweep)
    t = time.perf_counter()
    configs = expand(read_sweep(path), path.parent)
    print(f"{path.name}: {len(configs)} configurations, expanded in {time.perf_counter() - t:.2f} s")
    jobs = [int(j) for j in args.jobs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        for j in jobs:
            timed(configs, "serial" if j == 1 else f"pool of {j}", Path(tmp), jobs=j)
        if args.ray:
            timed(configs, f"ray local {max(jobs)}", Path(tmp), jobs=max(jobs), ray_address="local")


if __name__ == "__main__":
    main()
