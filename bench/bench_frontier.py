"""Time `infersim frontier` for one model and workload, every family (issue 11's target: <= 60 s
on 2 cores), with and without the verdicts' sensitivity sweeps, and with --out to DuckDB.

    python bench/bench_frontier.py [--model deepseek-v3] [--input-len 8192] [--output-len 1024]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from infersim.planner.frontier import run_frontier

TARGET_S = 60.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="deepseek-v3")
    ap.add_argument("--input-len", type=int, default=8192)
    ap.add_argument("--output-len", type=int, default=1024)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for label, kw in (("screen only", {"sensitivity": False}), ("screen + sensitivity", {}),
                          ("screen + sensitivity + --out", {"out": Path(tmp) / "f.duckdb"})):
            t = time.perf_counter()
            res = run_frontier(a.model, a.input_len, a.output_len, **kw)
            wall = time.perf_counter() - t
            ok = sum(len(f.points) for f in res.families)
            print(f"{a.model} {a.input_len}/{a.output_len}, {label}: {res.screened} configurations ({ok} run) in "
                  f"{wall:.1f} s wall ({res.screened / wall:,.0f}/s; target {TARGET_S:.0f} s)")


if __name__ == "__main__":
    main()
