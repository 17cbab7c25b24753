"""Per output token time taken apart on the LPU side of the frontier (issue 10): DeepSeek-V3 and
Nemotron 3 Super decode at 1, 8 and 64 users on a VR NVL72 (GPU only), LPX only, VR NVL72 + LPX
attention-FFN disaggregation at 1, 2 and 4 LPX racks per NVL72 (the FFN pool's whole racks set
the minimum), AFD + speculative decoding with the model's own MTP head, and Cerebras CS-3; then,
for each AFD deployment, the LPX : NVL72 ratio at which each stage stops binding.

    python bench/lpu_breakdown.py [--input 8192] [--output 1024] [--out FILE.md]

Method (every choice is an option, a deployment field or a catalog/calibration input):
- Deployments are built from deployment specs through `infersim.modes.build_plan`, exactly as
  `estimate --deployment` builds them (GPU tp 8 at fp8, LPUs at 'mixed', CS-3 at bf16, engine
  dynamo-trtllm, 2 micro-batches). LPX-only and CS-3 are one layer pipeline over the fewest racks /
  wafers whose SRAM holds the weights and the users' KV cache. AFD uses as many NVL72 racks as the ratio needs for
  one whole-rack FFN pool (DeepSeek-V3 needs 6 LPX racks: 1 LPX per NVL72 means 6 NVL72).
- Users are concurrent decoding sequences of one decode replica (a GPU tp group, an AFD attention
  replica, an LPU / wafer pipeline): its batch. The step is timed at a context averaged over the
  output (`span`), with the shipped calibration. Every replica of the deployment runs the same
  batch (so the LPU pool of AFD serves every attention replica's micro-batches).
- Parts (ms per output token; speculative rows divide the cycle by its expected tokens):
  GPU kernels (op rooflines + launch / graph gaps), GPU collectives, CPU (engine host work the
  step waits for; an overlapping engine's host work is its own AFD bound, in `binds`), link
  (GPU<->LPU crossings), LPU compute (op times, compute or SRAM streaming), LPU hops (chip-to-chip
  transfers, latency included), pipeline latency (per-layer fixed latency). For AFD the parts are
  one micro-batch's chain; the step is the largest AFD bound (`binds` names it), so parts add up to
  the step only when the chain binds. `host CPU work` is the engine's CPU time per step whether or
  not the GPU waits for it (an overlapping engine hides it unless it is the longest: `binds` host).
  The script asserts that parts add up where they must.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from infersim.catalog.models import load_model
from infersim.costmodel.afd import AFDStepCost, afd_bottleneck
from infersim.costmodel.memory import max_sequences
from infersim.costmodel.specdec import SpecDecodeCost
from infersim.costmodel.step import StepCost
from infersim.deployments.spec import DeploymentSpec, check_spec
from infersim.errors import InputError
from infersim.modes import build_plan
from infersim.results import write_file_atomically

from bench_args import refuse_bad_args

MODELS = ("deepseek-v3", "nemotron-3-super")
USERS = (1, 8, 64)
RATIOS = (1, 2, 4)
GPU = {"system": "vr-nvl72", "tp": 8, "precision": "fp8"}
COLUMNS = ("gpu_kernels", "gpu_collectives", "cpu", "link", "lpu_compute", "lpu_hops", "pipeline_latency")
HEADS = ("GPU kernels", "GPU coll.", "CPU", "link", "LPU compute", "LPU hops", "pipeline lat.")


def _zero() -> dict[str, float]:
    return {c: 0.0 for c in COLUMNS}


def _one(v) -> float:
    return float(np.asarray(v).reshape(-1)[0])


def host_seconds(timer, shape) -> float:
    """The engine's host CPU work per step (overlapped with the GPU or not; 0 on SRAM chips)."""
    if isinstance(timer, AFDStepCost):
        return _one(timer.parts(shape)["overhead_s"])
    if timer.dep.dataflow:
        return 0.0
    return _one(timer.overhead.parts(*timer.rank_step(shape), 0.0)["host"])


def step_parts(timer, shape) -> tuple[dict[str, float], float, str]:
    """(parts in seconds, step seconds, binding stage) of one step of `timer` at `shape`."""
    out = _zero()
    if isinstance(timer, AFDStepCost):
        p = timer.parts(shape)
        micro = shape.scaled(1.0 / _one(p["m"]))
        g, lp = timer.gpu.time(micro), timer.lpu.time(micro)
        out["gpu_kernels"] = _one(g.compute + g.memory + g.overhead)
        out["gpu_collectives"] = _one(g.interconnect)
        out["cpu"] = 0.0 if timer.host.engine.overlap else _one(p["overhead_s"])
        out["link"] = _one(p["link_s"])
        out["lpu_compute"] = _one(lp.compute + lp.memory)
        out["lpu_hops"] = _one(lp.interconnect)
        out["pipeline_latency"] = _one(lp.overhead)
        chain = _one(timer.bounds(shape)["chain"])
        assert math.isclose(sum(out.values()), chain, rel_tol=1e-9), (sum(out.values()), chain)
        return out, _one(timer.total(shape)), afd_bottleneck(timer, shape)
    assert isinstance(timer, StepCost), type(timer)
    b = timer.time(shape)
    if timer.dep.dataflow:
        out.update(lpu_compute=_one(b.compute + b.memory), lpu_hops=_one(b.interconnect),
                   pipeline_latency=_one(b.overhead))
    else:
        busy = _one(b.compute + b.memory + b.interconnect)
        o = timer.overhead.parts(*timer.rank_step(shape), busy)
        out.update(gpu_kernels=_one(b.compute + b.memory + o["launch"]), gpu_collectives=_one(b.interconnect),
                   cpu=_one(o["exposed"]))
    total = _one(timer.total(shape))
    assert math.isclose(sum(out.values()), total, rel_tol=1e-6), (sum(out.values()), total)
    return out, total, "-"


def token_parts(timer, batch: float, past: float, span: float) -> tuple[dict[str, float], float, str]:
    """(parts, seconds per output token, binding stage) of one sequence's decode."""
    if not isinstance(timer, SpecDecodeCost):
        shape = timer.uniform_decode_shape(batch, past, span)
        parts, step, binds = step_parts(timer, shape)
        return {**parts, "host": host_seconds(timer, shape)}, step, binds
    v_shape = timer.verify_shape(batch, past)
    share = timer.target.par.replicas / timer.draft.par.replicas
    d_shape = timer.draft_cost.uniform_decode_shape(batch * share, past, span)
    vp, v_step, binds = step_parts(timer.target_cost, v_shape)
    dp, d_step, _ = step_parts(timer.draft_cost, d_shape)
    cycle = timer.cycle_parts(batch, past, span)
    assert math.isclose(v_step, _one(cycle["verify_s"]), rel_tol=1e-6)
    assert math.isclose(timer.k * d_step, _one(cycle["draft_s"]), rel_tol=1e-6)
    e = timer.expected
    parts = {c: (vp[c] + timer.k * dp[c]) / e for c in COLUMNS}
    parts["link"] += _one(cycle["link_s"]) / e
    parts["host"] = host_seconds(timer.target_cost, v_shape) / e  # the verify step pays it once
    return parts, _one(timer.cycle(batch, past, span)) / e, f"verify: {binds}" if binds != "-" else "-"


def _spec(name: str, body: dict) -> DeploymentSpec:
    return check_spec(DeploymentSpec.model_validate({"name": name, "engine": "dynamo-trtllm", **body}), name)


def _fits(body_for, model, users: int, context: int, input_len: int, limit: int = 64):
    """The fewest racks (1 up to `limit`) whose plan builds and whose decode replicas' memory each
    hold `users` sequences at `context` tokens; (racks, plan), else InputError."""
    err = None
    for racks in range(1, limit + 1):
        try:
            plan = build_plan(_spec("probe", body_for(racks)), model)
        except InputError as e:
            err = e
            continue
        pool = plan.decode_pool
        if max_sequences(pool.deployment, context, input_len) >= users:
            return racks, plan
        err = f"{racks} hold fewer than {users} sequences of {context} tokens"
    raise InputError(f"no size up to {limit} fits: {err}")


def deployments(model, users: int, context: int, input_len: int):
    """[(label, plan)] of every system for this model and user count."""
    out = [("VR NVL72", build_plan(_spec("gpu", {"mode": "gpu", "gpu": GPU}), model))]
    # one pipeline over every rack (lpu.chips), so more racks hold more KV cache for its batch
    lpx = lambda r: {"mode": "lpu", "lpu": {"system": "lpx", "racks": r, "chips": 256 * r, "precision": "mixed"}}  # noqa: E731
    cs3 = lambda r: {"mode": "lpu", "lpu": {"system": "cs3", "racks": r, "chips": r, "precision": "bf16"}}  # noqa: E731
    for label, body in (("LPX only", lpx), ("CS-3", cs3)):
        try:
            racks, plan = _fits(body, model, users, context, input_len, 128)
            out.append((f"{label} ({racks} {'racks' if label == 'LPX only' else 'wafers'})", plan))
        except InputError as e:
            out.append((label, e))
    for ratio in RATIOS:
        afd = lambda r, ratio=ratio: {"mode": "afd", "gpu": {**GPU, "racks": r, "prefill_replicas": 2 * r},  # noqa: E731
                                      "lpu": {"system": "lpx", "racks_per_gpu_rack": ratio, "precision": "mixed"},
                                      "link": "gpu-lpu-direct", "micro_batches": 2}
        try:
            racks, plan = _fits(afd, model, users, context, input_len)
            out.append((f"AFD {ratio} LPX/NVL72 ({racks} NVL72)", plan))
            if ratio == 1:
                body = afd(racks)
                body["spec"] = {"method": "mtp"}
                out.append((f"AFD 1 LPX/NVL72 + MTP ({racks} NVL72)",
                            build_plan(_spec("afd-mtp", body), model)))
        except InputError as e:
            out.append((f"AFD {ratio} LPX/NVL72", e))
    return out


def rows(input_len: int, output_len: int) -> list[dict]:
    out = []
    for name in MODELS:
        model = load_model(name)
        for users in USERS:
            for label, plan in deployments(model, users, input_len + output_len, input_len):
                row = {"model": name, "users": users, "system": label}
                if isinstance(plan, Exception):
                    row["error"] = str(plan)
                    out.append(row)
                    continue
                pool = plan.decode_pool
                batch = float(users)
                parts, per_token, binds = token_parts(pool.timer, batch, float(input_len), float(output_len))
                row.update(parts=parts, per_token_s=per_token, binds=binds)
                if isinstance(pool.timer, AFDStepCost):
                    step = pool.timer.decode_step(batch, float(input_len), float(output_len))
                    row["binding"] = step.details["afd"].get("binding")
                out.append(row)
                print(_line(row), file=sys.stderr, flush=True)
    return out


def _line(r: dict) -> str:
    if "error" in r:
        return f"| {r['model']} | {r['users']} | {r['system']} | does not fit: {r['error']} |" + " |" * (len(COLUMNS) + 3)
    ms = " | ".join(f"{1e3 * r['parts'][c]:.3f}" for c in COLUMNS)
    return (f"| {r['model']} | {r['users']} | {r['system']} | {1e3 * r['per_token_s']:.3f} | {ms} | "
            f"{1e3 * r['parts']['host']:.3f} | {r['binds']} | "
            f"{1 / r['per_token_s']:,.0f} |")


def _binding_lines(rs: list[dict]) -> list[str]:
    lines = ["| model | users | AFD deployment | binds | LPU pool stops binding at | link stops binding at |",
             "|---|---|---|---|---|---|"]
    for r in rs:
        b = r.get("binding")
        if not b:
            continue
        stages = b["stages"]
        lines.append(f"| {r['model']} | {r['users']} | {r['system']} | {r['binds']} | "
                     f"{_stage_text(stages.get('lpu'))} | {_stage_text(stages.get('link'))} |")
    return lines


def _stage_text(s) -> str:
    if not s:
        return "-"
    if s["status"] == "never binds":
        return "never binds"
    if s["status"] == "stops binding":
        return f"{s['ratio']:g} LPX per NVL72"
    return f"binds at any ratio from {s['ratio']:g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--input", type=int, default=8192)
    ap.add_argument("--output", type=int, default=1024)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    refuse_bad_args({"--input": a.input, "--output": a.output}, a.out)
    rs = rows(a.input, a.output)
    head = ("| model | users | system | ms per token | " + " | ".join(HEADS) + " | host CPU work | binds | "
            "tok/s per user |\n" + "|" + "---|" * (len(HEADS) + 7))
    text = "\n".join([f"Decode per output token, {a.input} in / {a.output} out, users = the batch of each decode replica, shipped calibration "
                      "(bench/lpu_breakdown.py); ms.", "", head, *(_line(r) for r in rs), "",
                      "Where each AFD stage stops binding (LPX racks per NVL72; from `estimate`'s binding report):", "",
                      *_binding_lines(rs), ""])
    print(text)
    if a.out:
        write_file_atomically(a.out, text.encode("utf-8"))


if __name__ == "__main__":
    main()
