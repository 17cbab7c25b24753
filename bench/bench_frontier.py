"""Time `infersim frontier` for one model, every family (issue 11's target: <= 60 s on 2 cores), per
stage: the analytical screen, the trace confirmation (replaying each family's frontier points) and
the verdicts with their sensitivity sweeps. Two workloads: fixed lengths (8k/1k by default: screen
and verdicts only) and a trace (the exgentic coding-agent trace by default: all three stages).

    python bench/bench_frontier.py [--model deepseek-v3] [--input-len 8192] [--output-len 1024]
                                   [--trace exgentic_swebench_claude_code_shard12.jsonl] [--out]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from infersim.planner.frontier import run_frontier
from infersim.sweep.runner import default_jobs

TARGET_S = 60.0
TRACE = "exgentic_swebench_claude_code_shard12.jsonl"


def _line(label: str, res, wall: float) -> str:
    s = res.stages
    ok = sum(len(f.points) for f in res.families)
    parts = [f"screen {s['screen_s']:.1f} s (CPU {s['screen_cpu_s']:.1f} s; {res.screened} configurations, {ok} run)"]
    if res.trace is not None:
        capped = sum(f.not_simulated for f in res.families)
        parts.append(f"simulate {s['simulate_s']:.1f} s ({s['simulated']} frontier points, "
                     f"{s['simulated_requests']:,} requests, {s['jobs']} processes, {s['simulated_cpu_s']:.1f} s "
                     "CPU simulating in all" + (f", {capped} left out by the bound" if capped else "")
                     + ")")
    parts.append(f"verdicts {s['verdicts_s']:.1f} s (CPU {s['verdicts_cpu_s']:.1f} s)")
    # on two idle cores: the serial stages' CPU time plus the replays' CPU time shared by the workers
    idle = s["screen_cpu_s"] + s["verdicts_cpu_s"] + s.get("simulated_cpu_s", 0.0) / max(1, min(2, s.get("jobs", 1)))
    verdict = "within" if wall <= TARGET_S else "OVER"
    return (f"{label}: {'; '.join(parts)}; {wall:.1f} s wall ({verdict} the {TARGET_S:.0f} s target; "
            f"~{idle:.0f} s on two idle cores from the CPU times)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="deepseek-v3")
    ap.add_argument("--input-len", type=int, default=8192)
    ap.add_argument("--output-len", type=int, default=1024)
    ap.add_argument("--trace", default=TRACE)
    ap.add_argument("--out", action="store_true", help="also write the DuckDB store (to a temporary file)")
    a = ap.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start (other processes share them: "
          "compare the CPU times)")
    with tempfile.TemporaryDirectory() as tmp:
        runs = ((f"{a.model} {a.input_len}/{a.output_len}", {"input_len": a.input_len, "output_len": a.output_len}),
                (f"{a.model} trace {a.trace}", {"trace": a.trace, "jobs": default_jobs()}))
        for i, (label, kw) in enumerate(runs):
            if a.out:
                kw["out"] = Path(tmp) / f"f{i}.duckdb"
            t = time.perf_counter()
            res = run_frontier(a.model, **kw)
            print(_line(label, res, time.perf_counter() - t), flush=True)


if __name__ == "__main__":
    main()
