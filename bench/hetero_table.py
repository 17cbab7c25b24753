"""The heterogeneous-fleet comparison of issue 4: per-user speed, tokens/s per rack and per MW for
GPU-only (GB200 NVL72, VR NVL72), LPU-only (Groq 3 LPX), attention-FFN disaggregation at 1, 2 and
4 LPX racks per NVL72, LPX-drafted speculative decoding, and Cerebras CS-3, on a coding-agent trace
and on the Azure conversation trace.

    python bench/hetero_table.py [--requests N] [--users-per-replica U] [--out FILE.md]

Method (every choice is an input you can change):
- Workload: the first N requests of each trace (lengths as recorded), replayed closed-loop with
  U users per decode replica (LPU/wafer: per pipeline), so every deployment runs loaded at the
  same per-replica concurrency; the coding trace keeps its session prefix ids (prefix caching,
  prefix-affinity routing).
- Sizes: GPU racks are 1 unless the LPU side needs more (AFD: the FFN/MoE weights must fit the
  LPX racks at the given ratio, so the NVL72 count grows with the model); LPU-only and CS-3 use
  the fewest racks / systems whose SRAM holds the weights, plus one for the KV cache.
- Draft model for speculative decoding: llama-3.1-8b, k=4, acceptance 0.7 (an assumption; the
  catalog models' own MTP heads or EAGLE drafts would accept more).
- Per-user speed = 1 / mean TPOT; per rack = output tok/s / racks of every kind; per MW = output
  tok/s / catalog power (LPX and Vera Rubin power are estimates/assumptions: see
  `infersim sensitivity`).
"""
from __future__ import annotations

import argparse
import copy
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

from infersim.catalog.models import load_model
from infersim.calibration.efficiency import load_calibration
from infersim.costmodel.memory import min_chips_for_context
from infersim.mapping.deployment import build_deployment
from infersim.modes import build_plan
from infersim.deployments.run import simulate_plan
from infersim.deployments.spec import DeploymentSpec, check_spec
from infersim.costmodel.afd import ffn_part
from infersim.datasets import trace as shipped_trace
from infersim.errors import InputError
from infersim.results import write_file_atomically

from bench_args import refuse_bad_args
from infersim.workload.synthetic import ClosedLoop
from infersim.workload.traces import read_trace

TRACES = {"coding-agent (exgentic SWE-bench)": "exgentic_swebench_claude_code_shard12.jsonl",
          "Azure conv": "AzureLLMInferenceTrace_conv.csv"}
MODELS = ("nemotron-3-super", "nemotron-3-ultra", "deepseek-v3", "gpt-oss-120b")
LPX_CHIPS = 256


def _sram_racks(model, part, chip: str, per_rack: int, precision: str) -> int:
    """Fewest racks of `per_rack` chips whose SRAM holds `part`'s weights."""
    dep = build_deployment(part, chip, chips=1, precision=precision)
    return math.ceil(min_chips_for_context(dep, 0, 0) / per_rack)


def specs_for(model) -> list[tuple[str, dict]]:
    gpu = {"tp": 8, "precision": "fp8"}
    ffn_racks = _sram_racks(model, ffn_part(model), "groq3-lpu", LPX_CHIPS, "mixed")
    out = [("GPU: GB200 NVL72", {"mode": "gpu", "gpu": {"system": "gb200-nvl72", **gpu}}),
           ("GPU: VR NVL72", {"mode": "gpu", "gpu": {"system": "vr-nvl72", **gpu}}),
           ("LPU only: LPX", {"mode": "lpu", "lpu": {"system": "lpx", "precision": "mixed",
                                                    "racks": _sram_racks(model, model, "groq3-lpu", LPX_CHIPS, "mixed") + 1}})]
    for ratio in (1, 2, 4):
        racks = max(1, math.ceil(ffn_racks / ratio))
        out.append((f"AFD: {ratio} LPX per VR NVL72", {
            "mode": "afd", "gpu": {"system": "vr-nvl72", "racks": racks, "prefill_replicas": 2 * racks, **gpu},
            "lpu": {"system": "lpx", "racks_per_gpu_rack": ratio, "precision": "mixed"},
            "link": "gpu-lpu-direct", "micro_batches": 2}))
    out.append(("Spec: VR NVL72 + 1 LPX draft", {
        "mode": "spec", "gpu": {"system": "vr-nvl72", **gpu},
        "lpu": {"system": "lpx", "racks_per_gpu_rack": 1, "precision": "mixed"}, "link": "gpu-lpu-direct",
        "spec": {"draft_model": "llama-3.1-8b", "draft_on": "lpu", "k": 4, "acceptance": 0.7}}))
    out.append(("Wafer: Cerebras CS-3", {"mode": "lpu", "lpu": {
        "system": "cs3", "precision": "bf16", "racks": _sram_racks(model, model, "cerebras-wse3", 1, "bf16") + 1}}))
    return out


def decode_units(plan) -> int:
    return plan.decode_pool.replicas


def calibration_with_gpu_host_scale(host_scale: float | None):
    """The fitted calibration, or a copy whose GPU families all use `host_scale` on the serving
    engine's host work (to show how the comparison moves with that one assumption; 1 = the engine
    file's priors)."""
    cal = load_calibration()
    if host_scale is None:
        return cal
    fitted = copy.deepcopy(cal.fitted)
    for name, fam in fitted.get("families", {}).items():
        if "host_scale" in fam.get("values", {}):
            fam["values"]["host_scale"] = host_scale
    return replace(cal, fitted=fitted, source=f"{cal.source} with GPU host_scale={host_scale:g}")


def run(requests: int, users: int, calibration=None) -> list[dict]:
    rows = []
    for trace_label, fname in TRACES.items():
        trace = read_trace(shipped_trace(fname), max_requests=requests)
        for name in MODELS:
            model = load_model(name)
            for label, body in specs_for(model):
                spec = check_spec(DeploymentSpec.model_validate({"name": label, **body,
                                                                 "engine": {"router": "prefix-affinity"}}), label)
                row = {"trace": trace_label, "model": name, "deployment": label}
                t0 = time.perf_counter()
                try:
                    plan = build_plan(spec, model, calibration=calibration)
                    res = simulate_plan(plan, ClosedLoop(users * decode_units(plan), trace))
                    s = res.summary
                    row.update(racks=plan.total_racks, power_kw=plan.power_w / 1e3,
                               tok_s_user=1.0 / s["tpot_s"]["mean"], tok_s_rack=s["output_tok_s_per_rack"],
                               tok_s_mw=s["output_tok_s_per_mw"], ttft_p50_s=s["ttft_s"]["p50"],
                               preemptions=s["preemptions"])
                except InputError as e:
                    row["error"] = str(e)
                row["wall_s"] = time.perf_counter() - t0
                rows.append(row)
                print(_line(row), file=sys.stderr, flush=True)
    return rows


def _line(r: dict) -> str:
    if "error" in r:
        return f"| {r['trace']} | {r['model']} | {r['deployment']} | — | — | — | — | — | does not fit: {r['error']} |"
    return (f"| {r['trace']} | {r['model']} | {r['deployment']} | {r['racks']:g} | {r['power_kw']:.0f} | "
            f"{r['tok_s_user']:.0f} | {r['tok_s_rack']:,.0f} | {r['tok_s_mw']:,.0f} | "
            f"TTFT p50 {r['ttft_p50_s'] * 1e3:,.0f} ms, {r['preemptions']} preemptions |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=400)
    ap.add_argument("--users-per-replica", type=int, default=16)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--gpu-host-scale", type=float, default=None,
                    help="replace the fitted scale on the GPU engines' host times, e.g. 1 (the engine file's priors)")
    a = ap.parse_args()
    def host_scale_ok():
        if a.gpu_host_scale is not None and not (math.isfinite(a.gpu_host_scale) and a.gpu_host_scale >= 0):
            raise InputError(f"--gpu-host-scale must be a non-negative number, got {a.gpu_host_scale}")

    # refuse bad arguments before the long run: one line, exit code 2
    refuse_bad_args({"--requests": a.requests, "--users-per-replica": a.users_per_replica}, a.out, host_scale_ok)
    t0 = time.perf_counter()
    cal = calibration_with_gpu_host_scale(a.gpu_host_scale)
    rows = run(a.requests, a.users_per_replica, cal)
    head = ("| trace | model | deployment | racks | power kW | tok/s per user | tok/s per rack | tok/s per MW | notes |\n"
            "|---|---|---|---|---|---|---|---|---|")
    text = "\n".join([f"Closed loop, first {a.requests} requests per trace, {a.users_per_replica} users per decode "
                      f"replica or pipeline; calibration {cal.source} (bench/hetero_table.py).", "", head,
                      *(_line(r) for r in rows), ""])
    print(text)
    if a.out:
        write_file_atomically(a.out, text.encode("utf-8"))
    print(f"wall {time.perf_counter() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
