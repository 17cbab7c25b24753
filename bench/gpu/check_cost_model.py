"""Check the GPU cost model against our own H100 measurements (made by measure_kernels.py).

    python bench/gpu/check_cost_model.py [data/gpu/h100-sxm]   # the folder's name is the chip

Run on the H200 data it checks how the H100-derived defaults transfer to a chip they never saw.

1. GEMMs: fits the smoothed roofline t = (t_c^p + t_m^p)^(1/p) + floor per dtype (grid search,
   median |log error|) and writes kernel_fit.json beside the data. These are the sources of the
   GPU values in src/infersim/calibration/defaults.json. Note: single-launch event timing adds
   ~10-30 us per kernel, so the fitted floor is larger than a CUDA-graph kernel floor.
2. Whole steps: predicts every decode step (CUDA-graph mode) and prefill pass of the randomly
   initialised Llama-shaped model with infersim's step model, using the defaults (no fit) and the
   current fit, and prints predicted vs measured.
3. Kernel boundaries: from the decode steps, the GPU time per kernel boundary inside a CUDA graph
   (graph step minus the op rooflines, over the kernels the model launches) and the exposed cost of
   launching a kernel eagerly (eager step minus graph step, over the same kernels): the sources of
   calibration kernel_s and the engines' eager_launch_s (catalog/data/engines.yaml).
"""
from __future__ import annotations

import csv
import itertools
import json
import sys
from pathlib import Path

import numpy as np

from infersim.catalog.hardware import load_catalog
from infersim.catalog.models import load_model, parse_hf_config
from infersim.calibration.efficiency import load_calibration
from infersim.costmodel.step import step_time
from infersim.mapping.deployment import build_deployment

REPO = Path(__file__).resolve().parents[2]
DATA = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "data" / "gpu" / "h100-sxm"
CHIP = DATA.resolve().name


def fit_gemms(chip) -> dict:
    rows = list(csv.DictReader(open(DATA / "gemm.csv")))
    bw = chip.mem_bw_bytes_per_s.value
    fits = {}
    for dtype in sorted({r["dtype"] for r in rows}):
        rs = [r for r in rows if r["dtype"] == dtype]
        peak = chip.peak_flops[dtype].value
        fl = np.array([float(r["flops"]) for r in rs])
        by = np.array([float(r["min_bytes"]) for r in rs])
        t = np.array([float(r["seconds"]) for r in rs])
        best = None
        for ce, me, p, fl0 in itertools.product(np.linspace(0.4, 0.95, 23), np.linspace(0.4, 0.95, 23),
                                               (1.5, 2, 2.5, 3, 4, 6, 1e3), (0, 5e-6, 1e-5, 2e-5, 3e-5)):
            pred = ((fl / (peak * ce)) ** p + (by / (bw * me)) ** p) ** (1 / p) + fl0
            err = float(np.median(np.abs(np.log(np.maximum(pred, 1e-12) / t))))
            if best is None or err < best[0]:
                best = (err, ce, me, p, fl0)
        fits[dtype] = {"compute_eff": best[1], "mem_eff": best[2], "blend_p": best[3], "floor_s": best[4],
                       "median_abs_log_err": best[0], "n": len(rs)}
        print(f"GEMM {dtype}: compute_eff {best[1]:.3f} mem_eff {best[2]:.3f} p {best[3]} floor {best[4] * 1e6:.0f} us"
              f"  (median |log err| {best[0]:.3f}, {len(rs)} shapes)")
    copy = [r for r in csv.DictReader(open(DATA / "membw.csv")) if r["op"] == "copy"]
    fits["device_copy_mem_eff"] = max(float(r["bytes_per_s"]) for r in copy) / bw
    print(f"device copy: {fits['device_copy_mem_eff']:.3f} of {bw / 1e12:.2f} TB/s")
    return fits


def compare_steps() -> None:
    archs = models()
    rows = [r for r in csv.DictReader(open(DATA / "decode_steps.csv"))
            if r["phase"] == "prefill" or r["mode"] == "cuda_graph"]
    cals = {"defaults": load_calibration("none"), "fitted": load_calibration()}
    print(f"{'model':24s} {'phase':8s} {'batch':>5s} {'tokens':>6s} {'ctx':>6s} {'measured ms':>11s} "
          + " ".join(f"{k + ' ms':>12s} {'err':>5s}" for k in cals))
    errs = {k: [] for k in cals}
    for r in rows:
        arch = archs[r["model"]]
        b, new, ctx = int(r["batch"]), int(r["new_tokens"]), int(r["ctx"])
        past = ctx - new
        line = f"{r['model']:24s} {r['phase']:8s} {b:5d} {new:6d} {ctx:6d} {float(r['seconds']) * 1e3:11.2f} "
        for k, cal in cals.items():
            dep = build_deployment(arch, CHIP, tp=1, precision="bf16", kv_precision="bf16", calibration=cal)
            t = float(step_time(dep, b, new, past).total)
            e = t / float(r["seconds"]) - 1
            errs[k].append(abs(e))
            line += f"{t * 1e3:12.2f} {e:+5.0%} "
        print(line)
    for k, v in errs.items():
        print(f"{k}: median |error| {np.median(v):.1%}, mean {np.mean(v):.1%} over {len(v)} steps "
              "(prefill rows ran eagerly, so launch gaps inflate the small ones)")


# Kernels of measure_kernels.TinyLlama's forward, counted from its code: per layer 2 rms_norm, QKV,
# O, gate-up and down GEMMs, 2 KV-cache writes, SDPA, the attention output's transpose copy, 2
# residual adds, silu and the gating multiply (14); per step the embedding gather, final norm and
# LM head (3).
TINY_LAYER_KERNELS = 14
TINY_STEP_KERNELS = 3


def fit_kernel_boundaries(archs: dict) -> dict:
    """Median seconds per kernel boundary in graph mode and per eager launch (see 3. above)."""
    from dataclasses import replace
    from infersim.costmodel.step import StepCost
    from infersim.costmodel.work import Batch, batch_shape, model_windows
    rows = [r for r in csv.DictReader(open(DATA / "decode_steps.csv")) if r["phase"] == "decode"]
    by_point: dict = {}
    for r in rows:
        by_point.setdefault((r["model"], r["batch"], r["ctx"]), {})[r["mode"]] = float(r["seconds"])
    cal = load_calibration("none")
    gaps, launches = [], []
    for (name, b, ctx), t in sorted(by_point.items()):
        arch = archs[name]
        dep = build_deployment(arch, CHIP, tp=1, precision="bf16", kv_precision="bf16", calibration=cal)
        dep = replace(dep, eff=dep.eff.with_values(kernel_s=0.0))
        cost = StepCost(dep, compiled=False, host=False)
        shape = batch_shape(Batch(np_f(b), np_f(1), np_f(int(ctx) - 1)), model_windows(arch))
        ops = float(cost.time(shape).total)
        kernels = TINY_LAYER_KERNELS * arch.n_layers + TINY_STEP_KERNELS
        gaps.append((t["cuda_graph"] - ops) / kernels)
        launches.append((t["eager"] - t["cuda_graph"]) / kernels)
        print(f"{name:24s} b={int(b):4d} ctx={int(ctx):5d}: graph {t['cuda_graph'] * 1e3:6.2f} ms, op rooflines "
              f"{ops * 1e3:6.2f} ms -> {gaps[-1] * 1e6:5.2f} us per kernel; eager +{launches[-1] * 1e6:5.2f} us per kernel")
    out = {"graph_kernel_s": float(np.median(gaps)), "graph_kernel_s_iqr": [float(x) for x in np.percentile(gaps, [25, 75])],
           "eager_launch_s": float(np.median(launches)),
           "eager_launch_s_iqr": [float(x) for x in np.percentile(launches, [25, 75])],
           "kernels_per_layer": TINY_LAYER_KERNELS, "n": len(gaps)}
    print(f"graph: {out['graph_kernel_s'] * 1e6:.2f} us per kernel boundary (median; IQR "
          f"{out['graph_kernel_s_iqr'][0] * 1e6:.2f}-{out['graph_kernel_s_iqr'][1] * 1e6:.2f}); eager launch: "
          f"{out['eager_launch_s'] * 1e6:.2f} us per kernel (IQR {out['eager_launch_s_iqr'][0] * 1e6:.2f}-"
          f"{out['eager_launch_s_iqr'][1] * 1e6:.2f})")
    return out


def np_f(x) -> np.ndarray:
    return np.asarray(float(x))


def models() -> dict:
    base = load_model("llama-3.1-70b")
    cfg = json.loads((REPO / "src/infersim/catalog/data/models/meta-llama__Llama-3.1-70B-Instruct/config.json").read_text())
    cfg["num_hidden_layers"] = 8
    return {"llama-3.1-8b": load_model("llama-3.1-8b"),
            "llama-3.1-70b-8layers": parse_hf_config(cfg, "llama-3.1-70b-8layers", base.hf_id)}


if __name__ == "__main__":
    chip = load_catalog().chip(CHIP)
    fits = fit_gemms(chip)
    fits["kernel_boundaries"] = fit_kernel_boundaries(models())
    (DATA / "kernel_fit.json").write_text(json.dumps(fits, indent=1) + "\n")
    compare_steps()
