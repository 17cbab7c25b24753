"""Time `infersim plan` stage by stage (issue 11's target: the whole plan <= 120 s on 2 cores) on
the issue's example: Nemotron 3 Super on the Exgentic SWE-bench coding-agent trace (every request
simulated for each finalist), ttft_p99=2s, tok_s_per_user_p50=500, 8 racks, cost per Mtok; and a
synthetic DeepSeek-V3 8k/1k Poisson stream.

    python bench/bench_plan.py [--requests N] [--skip-synthetic]
"""
from __future__ import annotations

import argparse
import time

from infersim.planner.budget import parse_budget
from infersim.planner.plan import run_plan
from infersim.planner.plan_workload import plan_workload
from infersim.serving.metrics import parse_slo

TARGET_S = 120.0
TRACE = "exgentic_swebench_claude_code_shard12.jsonl"


def _one(label: str, model: str, workload, slo: str, budget: str) -> None:
    t = time.perf_counter()
    res = run_plan(model, workload, parse_slo(slo), parse_budget(budget), "cost_per_mtok")
    wall = time.perf_counter() - t
    stages = ", ".join(f"{k[:-2]} {v:.1f} s" for k, v in res.stages_s.items())
    per = ", ".join(f"{f.cand.family} {f.summary.get('requests_completed', 0)}/{len(workload.requests)}"
                    for f in [res.best, *res.runners_up] if f is not None)
    print(f"{label}: screened {res.screened} ({res.not_runnable} do not run), pruned {res.pruned}, simulated "
          f"{res.simulated} ({workload.window}); {stages}; {wall:.1f} s wall (target {TARGET_S:.0f} s)")
    print(f"  {res.verdict}")
    print(f"  completed per finalist: {per}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=None, help="simulate only the trace's first N requests")
    ap.add_argument("--skip-synthetic", action="store_true")
    a = ap.parse_args()
    _one("nemotron-3-super, coding-agent trace", "nemotron-3-super", plan_workload(TRACE, requests=a.requests),
         "ttft_p99=2s,tok_s_per_user_p50=500", "racks=8")
    if not a.skip_synthetic:
        _one("deepseek-v3, Poisson 5 req/s 8192/1024", "deepseek-v3",
             plan_workload(None, input_len=8192, output_len=1024, rate=5.0), "ttft_p99=2s,tok_s_per_user_p50=100",
             "racks=8")


if __name__ == "__main__":
    main()
