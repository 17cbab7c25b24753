"""Per output token time of DeepSeek-V3 decode taken apart (issue 9), on a GB200 NVL72 and a VR
NVL72 rack, in the engines' wide-EP convention (DP attention over the 72 GPUs, routed experts
spread over all 72: tp 1 x ep 72) and as 9 TP8 instances for comparison.

    python bench/token_breakdown.py [--input 1000] [--output 1000] [--engine trtllm] [--out FILE.md]

Method (every choice is an option or a catalog/calibration input):
- Users are concurrent decoding sequences on the whole rack (72 GPUs), spread over its instances
  as evenly as whole sequences allow; the table times the busiest instance's step (with DP
  attention, the busiest rank: costmodel.work.dp_rank_imbalance). Every user gets one token per
  step, so per output token ms = step ms, tok/s/user = 1 / step, tok/s/GPU = users / step / 72.
- The step is a pure decode step averaged over the whole output (context from input to
  input + output, `span`), at fp8 (DeepSeek-V3's native format), shipped calibration fit.
- Parts: compute and memory are the op rooflines' split (costmodel.execution.gpu_table_time);
  collectives by kind (costmodel.collectives.step_collectives: TP all-reduce after attention and
  after the MoE, EP dispatch + combine all-to-all); kernel launch / graph gaps and the engine's host
  CPU work (costmodel.overhead): `host` is the CPU's time per step, `host exp` the part the step
  waits for (0 while the overlap scheduler hides it behind the GPU). The parts add up to the step
  the serving simulator uses (`StepCost.total`); the script asserts it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from infersim.catalog.models import load_model
from infersim.costmodel.step import StepCost
from infersim.mapping.deployment import build_deployment
from infersim.results import check_out_file, write_file_atomically

SYSTEMS = (("GB200 NVL72", "gb200-nvl72"), ("VR NVL72", "vr-nvl72"))
LAYOUTS = (("DP72 attn + EP72", 1, 72), ("TP8 x 9", 8, 1))  # (label, tp, ep)
USERS = (1, 8, 64, 256)
COMM_KINDS = (("tp_all_reduce.attention", "TP AR attn"), ("tp_all_reduce.ffn", "TP AR moe"),
              ("ep_all_to_all", "EP a2a"))


def token_parts(cost: StepCost, batch: float, past: float, span: float) -> dict[str, float]:
    """Seconds of one decode step of `batch` sequences (one replica) by part; their sum is the step."""
    shape = cost.uniform_decode_shape(batch, past, span)
    ops = cost.time(shape)  # compute / memory / interconnect / overhead
    comms = cost.collectives(shape)
    out = {"compute": float(ops.compute), "memory": float(ops.memory)}
    for name, _ in COMM_KINDS:
        out[name] = sum(float(c.seconds) for c in comms if c.name == name)
    other = sum(float(c.seconds) for c in comms if c.name not in dict(COMM_KINDS))
    assert other == 0.0, f"collectives the table has no column for: {[c.name for c in comms]}"
    busy = out["compute"] + out["memory"] + sum(out[n] for n, _ in COMM_KINDS)
    p = cost.overhead.parts(*cost.rank_step(shape), busy)  # the busiest DP rank schedules its own sequences
    out.update(launch=float(p["launch"]), host=float(p["host"]), host_exposed=float(p["exposed"]))
    out["step"] = busy + out["launch"] + out["host_exposed"]
    total = float(cost.total(shape))  # the serving simulator's step (compiled table)
    assert abs(out["step"] - total) <= 1e-9 * total, f"parts {out['step']} != step {total}"
    assert abs(float(ops.total) - total) <= 1e-9 * total, f"Breakdown {float(ops.total)} != step {total}"
    assert abs(float(ops.interconnect) - busy + out["compute"] + out["memory"]) <= 1e-9 * total
    return out


def table(model_name: str, precision: str, engine: str, input_len: int, output_len: int) -> str:
    model = load_model(model_name)
    head = ("| system | layout | users | per token ms | compute | memory | launch/graph | "
            + " | ".join(label for _, label in COMM_KINDS) + " | host CPU (exposed) | tok/s/user | tok/s/GPU |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for sys_label, system in SYSTEMS:
        for lay_label, tp, ep in LAYOUTS:
            dep = build_deployment(model, system, tp=tp, ep=ep, precision=precision, engine=engine)
            cost = StepCost(dep)
            chips, instances = dep.n_chips, dep.par.replicas
            for users in USERS:
                batch = float(np.ceil(users / instances))  # the busiest instance
                p = token_parts(cost, batch, float(input_len), float(output_len))
                ms = {k: 1e3 * v for k, v in p.items()}
                comm = " | ".join(f"{ms[n]:.3f}" for n, _ in COMM_KINDS)
                lines.append(f"| {sys_label} | {lay_label} | {users} | {ms['step']:.3f} | {ms['compute']:.3f} | "
                             f"{ms['memory']:.3f} | {ms['launch']:.3f} | {comm} | {ms['host']:.3f} "
                             f"({ms['host_exposed']:.3f}) | {1 / p['step']:.1f} | {users / p['step'] / chips:.1f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="deepseek-v3")
    ap.add_argument("--precision", default="fp8")
    ap.add_argument("--engine", default="trtllm", help="serving engine (catalog/data/engines.yaml)")
    ap.add_argument("--input", type=int, default=1000, help="prompt tokens per user")
    ap.add_argument("--output", type=int, default=1000, help="output tokens per user (the step is averaged over them)")
    ap.add_argument("--out", type=Path, help="also write the table to this markdown file (replaced if present)")
    args = ap.parse_args()
    body = table(args.model, args.precision, args.engine, args.input, args.output)
    text = (f"# {args.model} decode per output token, {args.precision}, engine {args.engine}, "
            f"{args.input} in / {args.output} out\n\n`python bench/token_breakdown.py` (ms per output token; "
            f"columns from compute to host exposed add up to the token time; host CPU is the engine's work "
            f"per step, in parentheses the part not hidden by the overlap scheduler)\n\n{body}\n")
    print(text)
    if args.out:
        check_out_file(args.out, overwrite=True)
        write_file_atomically(args.out, text.encode())


if __name__ == "__main__":
    sys.exit(main())
