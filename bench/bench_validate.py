"""Time `infersim validate` on the shipped measurement set and InferenceX points, as a user runs it.

    python bench/bench_validate.py [--repeats 3] [--jobs 1 2] [--measurements FILE] [--per-kind]

Runs `python -m infersim validate --json` of this checkout (src/ first on PYTHONPATH) in a fresh
process per repeat, for each --jobs value, and prints per setting the median wall seconds and the
median CPU seconds (user + system of the command and its worker processes). Every run's JSON must
equal the first one's: the number of processes changes the speed, never a prediction. --per-kind
then also times each distinct InferenceX simulation in one process and prints the CPU seconds per
point kind (aggregated / disaggregated, with or without MTP) and concurrency (bench/profile_points.py).

The README's claim ("validate: about N s on two cores") is the --jobs 2 median of this script;
target: at most 60 s wall on 2 cores (issue 8), with margin for a busy machine; with the InferenceX
points (issue 9) the whole run must stay within 3 minutes on 2 cores.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
sys.path.insert(0, str(SRC))

from infersim.datasets import measurements_csv  # noqa: E402


def children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(measurements: Path, jobs: int) -> tuple[float, float, bytes]:
    """(wall s, CPU s, JSON output) of one validate run in a fresh process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC)] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
    cmd = [sys.executable, "-m", "infersim", "validate", "--measurements", str(measurements), "--jobs", str(jobs),
           "--json"]
    cpu0, t0 = children_cpu_s(), time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, cwd=REPO)
    wall, cpu = time.perf_counter() - t0, children_cpu_s() - cpu0
    if done.returncode != 0:
        sys.exit(f"validate failed (exit {done.returncode}): {done.stderr.decode(errors='replace').strip()}")
    return wall, cpu, done.stdout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--measurements", type=Path, default=measurements_csv())
    ap.add_argument("--per-kind", action="store_true", help="also time the InferenceX simulations per point kind")
    args = ap.parse_args()
    if args.repeats < 1 or any(j < 1 for j in args.jobs):
        sys.exit("--repeats and --jobs must be at least 1")
    print(f"validate --measurements {args.measurements}  ({os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; median of {args.repeats})")
    reference = None
    for jobs in args.jobs:
        walls, cpus = [], []
        for _ in range(args.repeats):
            wall, cpu, out = run_once(args.measurements, jobs)
            reference = reference if reference is not None else out
            if out != reference:
                sys.exit(f"--jobs {jobs}: the report differs from the first run's; predictions must not depend "
                         "on the number of processes")
            walls.append(wall)
            cpus.append(cpu)
        print(f"  --jobs {jobs}: wall {statistics.median(walls):6.1f} s  CPU {statistics.median(cpus):6.1f} s  "
              f"(wall runs: {', '.join(f'{w:.1f}' for w in walls)})")
    if args.per_kind:
        subprocess.run([sys.executable, str(REPO / "bench" / "profile_points.py")], check=True)


if __name__ == "__main__":
    main()
