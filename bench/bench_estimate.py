"""Time `estimate` for one point and a vectorised grid of 100k points (one core).

    python bench/bench_estimate.py

Prints medians over repeats. Targets (issue 2): < 5 ms per single estimate, < 10 s for 100k points.
"""
from __future__ import annotations

import os
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target states

import numpy as np  # noqa: E402

from infersim.catalog.models import load_model  # noqa: E402
from infersim.mapping.deployment import build_deployment  # noqa: E402
from infersim.estimate import estimate, latency_and_throughput  # noqa: E402


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    cases = [("llama-3.1-70b", "h100-sxm", dict(tp=8, precision="fp8")),
             ("nemotron-3-super", "gb200-nvl72", dict(tp=8, precision="fp8")),
             ("deepseek-v3", "h200-sxm", dict(tp=8, precision="fp8")),
             ("llama-2-70b", "groq-lpu-v1", dict(chips=576))]
    for name, system, kw in cases:
        model = load_model(name)
        estimate(model, system, batch=32, input_len=2048, output_len=256, **kw)  # warm caches
        t = median_time(lambda: estimate(model, system, batch=32, input_len=2048, output_len=256, **kw), 50)
        print(f"single estimate  {name:18s} on {system:12s}: {t * 1e3:7.2f} ms (median of 50)")

    model = load_model("llama-3.1-70b")
    dep = build_deployment(model, "h100-sxm", tp=8, precision="fp8")
    rng = np.random.default_rng(0)
    n = 100_000
    batch = rng.integers(1, 257, n)
    inp = rng.integers(128, 8193, n)
    out = rng.integers(16, 2049, n)
    t = median_time(lambda: latency_and_throughput(dep, batch, inp, out), 5)
    print(f"vectorised grid  {n} points (llama-3.1-70b, 8 x h100-sxm): {t:6.3f} s (median of 5), "
          f"{t / n * 1e6:.2f} us/point")


if __name__ == "__main__":
    main()
