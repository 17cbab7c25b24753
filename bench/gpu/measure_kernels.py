"""Measure real GPU kernels to check and calibrate infersim's GPU cost model.

Run on a machine with one NVIDIA GPU and PyTorch (CUDA build):

    OUT=/some/dir python3 bench/gpu/measure_kernels.py

It writes CSV files under $OUT (default ./gpu_measurements):
  env.json           device name, SM count, clocks, torch/CUDA versions
  membw.csv          device-to-device copy and read-only reduction bandwidth
  gemm.csv           C[M,N] = A[M,K] @ W[K,N] for bf16 and fp8 (e4m3, torch._scaled_mm)
  attention.csv      causal prefill (flash SDPA) and single-token decode attention with GQA
  decode_steps.csv   whole decode steps and prefill passes of a randomly initialised
                     Llama-shaped decoder (our own minimal torch model, CUDA-graph replayed
                     for decode so launch gaps do not dominate), bf16 weights and KV cache.

Timing: CUDA events, warm-up first, median of repeated runs; inputs are random (never zeros).
Each file is flushed as it goes, so a run stopped at its time limit still leaves data.
"""
from __future__ import annotations

import csv
import json
import math
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

OUT = os.environ.get("OUT") or "gpu_measurements"
os.makedirs(OUT, exist_ok=True)
DEV = torch.device("cuda")
T0 = time.time()
BUDGET_S = float(os.environ.get("MEASURE_BUDGET_S", "330"))


def left() -> float:
    return BUDGET_S - (time.time() - T0)


def timed(fn, warmup: int = 3, reps: int = 10) -> float:
    """Median seconds of fn() over reps, timed with CUDA events after warm-up."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b) / 1e3)
    return statistics.median(times)


class Writer:
    def __init__(self, name: str, fields: list[str]):
        self.f = open(os.path.join(OUT, name), "w", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=fields)
        self.w.writeheader()

    def row(self, **kw):
        self.w.writerow(kw)
        self.f.flush()


def env_info():
    p = torch.cuda.get_device_properties(0)
    info = {
        "device": p.name,
        "sm_count": p.multi_processor_count,
        "total_memory_bytes": p.total_memory,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import subprocess
        q = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,clocks.max.sm,clocks.max.mem,power.limit",
             "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        info["nvidia_smi"] = q.stdout.strip()
    except Exception as e:  # noqa: BLE001 - informational only
        info["nvidia_smi"] = f"unavailable: {e}"
    with open(os.path.join(OUT, "env.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(info, flush=True)


def measure_membw():
    w = Writer("membw.csv", ["op", "bytes_moved", "seconds", "bytes_per_s"])
    for n_bytes in (256 << 20, 2 << 30):
        n = n_bytes // 2
        src = torch.randn(n, device=DEV, dtype=torch.bfloat16)
        dst = torch.empty_like(src)
        t = timed(lambda: dst.copy_(src))
        w.row(op="copy", bytes_moved=2 * n_bytes, seconds=t, bytes_per_s=2 * n_bytes / t)
        t = timed(lambda: src.sum(dtype=torch.float32))
        w.row(op="read_sum", bytes_moved=n_bytes, seconds=t, bytes_per_s=n_bytes / t)
        del src, dst
    torch.cuda.empty_cache()


# (N, K) pairs from real models: Llama-3.1-8B (H=4096, I=14336, kv 8x128), Llama-70B at TP=1/2/8
# (H=8192, I=28672), and an MoE expert (gpt-oss: H=2880, I=2880).
GEMM_SHAPES = [
    ("l8b_qkv", 6144, 4096), ("l8b_o", 4096, 4096), ("l8b_gateup", 28672, 4096), ("l8b_down", 4096, 14336),
    ("l70b_qkv", 10240, 8192), ("l70b_gateup_tp2", 28672, 8192), ("l70b_down_tp8", 8192, 3584),
    ("l70b_o_tp8", 8192, 1024), ("gptoss_expert_up", 5760, 2880), ("lmhead_l8b", 128256, 4096),
]
GEMM_M = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384]


def measure_gemm():
    w = Writer("gemm.csv", ["dtype", "shape", "m", "n", "k", "seconds", "flops", "min_bytes", "tflops", "gb_per_s"])
    have_fp8 = hasattr(torch, "_scaled_mm") and hasattr(torch, "float8_e4m3fn")
    for name, n, k in GEMM_SHAPES:
        if left() < 200:
            break
        wt = torch.randn(n, k, device=DEV, dtype=torch.bfloat16) / math.sqrt(k)
        w8 = wt.to(torch.float8_e4m3fn) if have_fp8 else None
        one = torch.ones((), device=DEV, dtype=torch.float32)
        for m in GEMM_M:
            if m * n > 2**31 // 2:
                continue
            a = torch.randn(m, k, device=DEV, dtype=torch.bfloat16)
            flops = 2.0 * m * n * k
            t = timed(lambda: a @ wt.t())
            by = 2 * (m * k + n * k + m * n)
            w.row(dtype="bf16", shape=name, m=m, n=n, k=k, seconds=t, flops=flops, min_bytes=by,
                  tflops=flops / t / 1e12, gb_per_s=by / t / 1e9)
            if have_fp8:
                mp = max(16, m)  # _scaled_mm needs dims divisible by 16: pad small M as engines do
                a8 = torch.randn(mp, k, device=DEV, dtype=torch.bfloat16).to(torch.float8_e4m3fn)
                try:
                    t8 = timed(lambda: torch._scaled_mm(a8, w8.t(), scale_a=one, scale_b=one,
                                                        out_dtype=torch.bfloat16))
                    by8 = mp * k + n * k + 2 * mp * n
                    w.row(dtype="fp8", shape=name, m=m, n=n, k=k, seconds=t8, flops=flops, min_bytes=by8,
                          tflops=flops / t8 / 1e12, gb_per_s=by8 / t8 / 1e9)
                except Exception as e:  # noqa: BLE001
                    print(f"fp8 gemm {name} m={m}: {e}", flush=True)
                    have_fp8 = False
        del wt, w8
    torch.cuda.empty_cache()


def measure_attention():
    w = Writer("attention.csv", ["phase", "batch", "q_len", "ctx", "heads", "kv_heads", "head_dim",
                                 "seconds", "flops", "kv_bytes"])
    h, kvh, d = 32, 8, 128
    for seq in (512, 2048, 8192, 16384):
        q = torch.randn(1, h, seq, d, device=DEV, dtype=torch.bfloat16)
        k = torch.randn(1, kvh, seq, d, device=DEV, dtype=torch.bfloat16)
        v = torch.randn_like(k)
        t = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True))
        flops = 4.0 * h * d * seq * seq / 2  # causal: half the score matrix, QK^T and PV
        w.row(phase="prefill", batch=1, q_len=seq, ctx=seq, heads=h, kv_heads=kvh, head_dim=d,
              seconds=t, flops=flops, kv_bytes=2 * 2 * kvh * d * seq)
    for batch in (1, 8, 32, 128):
        for ctx in (512, 2048, 8192):
            if batch * ctx > 2**20:
                continue
            q = torch.randn(batch, h, 1, d, device=DEV, dtype=torch.bfloat16)
            k = torch.randn(batch, kvh, ctx, d, device=DEV, dtype=torch.bfloat16)
            v = torch.randn_like(k)
            t = timed(lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True))
            w.row(phase="decode", batch=batch, q_len=1, ctx=ctx, heads=h, kv_heads=kvh, head_dim=d,
                  seconds=t, flops=4.0 * batch * h * d * ctx, kv_bytes=2 * 2 * batch * kvh * d * ctx)
    torch.cuda.empty_cache()


class TinyLlama(torch.nn.Module):
    """Llama-shaped decoder with random weights: RMSNorm, fused QKV, GQA SDPA over a static KV
    cache, fused gate/up SwiGLU, down projection. No embedding lookup cost beyond an index."""

    def __init__(self, layers, hidden, inter, heads, kv_heads, head_dim, vocab):
        super().__init__()
        dt = torch.bfloat16
        self.h, self.kvh, self.d = heads, kv_heads, head_dim
        mk = lambda *s: torch.randn(*s, device=DEV, dtype=dt) / math.sqrt(s[-1])  # noqa: E731
        self.qkv = [mk((heads + 2 * kv_heads) * head_dim, hidden) for _ in range(layers)]
        self.o = [mk(hidden, heads * head_dim) for _ in range(layers)]
        self.gu = [mk(2 * inter, hidden) for _ in range(layers)]
        self.dn = [mk(hidden, inter) for _ in range(layers)]
        self.emb = mk(vocab, hidden)
        self.head = mk(vocab, hidden)
        self.kc: list[torch.Tensor] = []
        self.vc: list[torch.Tensor] = []

    def make_cache(self, batch: int, tokens: int):
        """Allocate a random KV cache of exactly batch x tokens per layer (frees the old one first)."""
        self.kc, self.vc = [], []
        torch.cuda.empty_cache()
        shape = (batch, self.kvh, tokens, self.d)
        self.kc = [torch.randn(shape, device=DEV, dtype=torch.bfloat16) for _ in self.qkv]
        self.vc = [torch.randn(shape, device=DEV, dtype=torch.bfloat16) for _ in self.qkv]

    def forward(self, ids, ctx: int, causal: bool):
        b, s = ids.shape
        x = self.emb[ids]
        for i in range(len(self.qkv)):
            y = F.rms_norm(x, (x.shape[-1],))
            qkv = y @ self.qkv[i].t()
            q, k, v = qkv.split([self.h * self.d, self.kvh * self.d, self.kvh * self.d], dim=-1)
            q = q.view(b, s, self.h, self.d).transpose(1, 2)
            k = k.view(b, s, self.kvh, self.d).transpose(1, 2)
            v = v.view(b, s, self.kvh, self.d).transpose(1, 2)
            self.kc[i][:b, :, ctx - s:ctx] = k
            self.vc[i][:b, :, ctx - s:ctx] = v
            att = F.scaled_dot_product_attention(q, self.kc[i][:b, :, :ctx], self.vc[i][:b, :, :ctx],
                                                 is_causal=causal, enable_gqa=True)
            x = x + att.transpose(1, 2).reshape(b, s, -1) @ self.o[i].t()
            y = F.rms_norm(x, (x.shape[-1],))
            g, u = (y @ self.gu[i].t()).chunk(2, dim=-1)
            x = x + (F.silu(g) * u) @ self.dn[i].t()
        return F.rms_norm(x[:, -1], (x.shape[-1],)) @ self.head.t()


MODELS = {
    # name: layers, hidden, inter, heads, kv_heads, head_dim, vocab
    "llama-3.1-8b": (32, 4096, 14336, 32, 8, 128, 128256),
    "llama-3.1-70b-8layers": (8, 8192, 28672, 64, 8, 128, 128256),
}
DECODE_POINTS = [(1, 1024), (1, 4096), (8, 1024), (16, 4096), (64, 1024), (64, 4096), (128, 2048), (256, 1024)]
PREFILL_POINTS = [(1, 128), (1, 512), (1, 2048), (1, 8192), (4, 2048)]


def measure_decode_steps():
    w = Writer("decode_steps.csv", ["model", "layers", "hidden", "inter", "heads", "kv_heads", "head_dim", "vocab",
                                    "phase", "batch", "new_tokens", "ctx", "mode", "seconds"])
    for name, cfg in MODELS.items():
        if left() < 60:
            break
        model = TinyLlama(*cfg)
        with torch.inference_mode():
            for b, s in PREFILL_POINTS:
                if left() < 40:
                    continue
                model.make_cache(b, s)
                ids = torch.randint(0, cfg[-1], (b, s), device=DEV)
                t = timed(lambda: model(ids, s, True), warmup=2, reps=5)
                w.row(model=name, layers=cfg[0], hidden=cfg[1], inter=cfg[2], heads=cfg[3], kv_heads=cfg[4],
                      head_dim=cfg[5], vocab=cfg[6], phase="prefill", batch=b, new_tokens=s, ctx=s,
                      mode="eager", seconds=t)
            for b, ctx in DECODE_POINTS:
                if left() < 30:
                    continue
                model.make_cache(b, ctx)
                ids = torch.randint(0, cfg[-1], (b, 1), device=DEV)
                t_eager = timed(lambda: model(ids, ctx, False), warmup=2, reps=5)
                g = torch.cuda.CUDAGraph()
                s_ = torch.cuda.Stream()
                s_.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s_):
                    model(ids, ctx, False)
                torch.cuda.current_stream().wait_stream(s_)
                with torch.cuda.graph(g):
                    model(ids, ctx, False)
                t_graph = timed(g.replay, warmup=3, reps=10)
                for mode, t in (("eager", t_eager), ("cuda_graph", t_graph)):
                    w.row(model=name, layers=cfg[0], hidden=cfg[1], inter=cfg[2], heads=cfg[3], kv_heads=cfg[4],
                          head_dim=cfg[5], vocab=cfg[6], phase="decode", batch=b, new_tokens=1, ctx=ctx,
                          mode=mode, seconds=t)
                print(f"{name} decode b={b} ctx={ctx}: eager {t_eager*1e3:.2f} ms graph {t_graph*1e3:.2f} ms", flush=True)
                del g
        model.make_cache(1, 1)
        del model
        torch.cuda.empty_cache()


def main():
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this script measures real GPU kernels")
    env_info()
    for step in (measure_membw, measure_gemm, measure_attention, measure_decode_steps):
        t = time.time()
        try:
            step()
        except Exception as e:  # noqa: BLE001 - keep going: partial data is still data
            print(f"{step.__name__} failed: {type(e).__name__}: {e}", flush=True)
        print(f"{step.__name__}: {time.time() - t:.1f} s (left {left():.0f} s)", flush=True)
    for fn in sorted(os.listdir(OUT)):
        print(fn, sum(1 for _ in open(os.path.join(OUT, fn))), "lines")


if __name__ == "__main__":
    main()
