"""Time the serving simulator (`simulate`) on a full trace, a large synthetic workload, and its memory.

    python bench/bench_simulate.py [--quick]

(a) Replay of the full Azure conversation trace (19,366 requests) through 8 replicas on H100:
    llama-3.1-8b tp=1 x 8 and llama-3.1-70b tp=8 fp8 x 8. Prints the wall time (median of 3), simulated
    requests per wall second, microseconds per request and the speed-up over Vidur's ~10.75 ms per
    request (about 85 s for this trace), plus the summary's engine steps and events (engine steps per
    event > 1 is the closed-form decode fast path advancing many steps per event). Target: < 5 s.
(b) Throughput: 200,000 Poisson requests (exponential lengths, mean 1024 in / 256 out) on 16 replicas
    of llama-3.1-8b at ~70% of their saturated throughput. Target: >= 100k simulated requests per minute.
(c) Memory: 50k vs 200k requests of (b)'s workload, each in a fresh process (the same runs give (b)'s
    timing): peak RSS during `simulate` above the RSS before it; the growth from 50k to 200k divided by
    the extra requests is the memory per request (per-request state, pending arrivals and the returned
    records; nothing else grows with the workload). --tracemalloc measures Python's traced peak
    instead of RSS (exact, but tracing makes the runs ~6x slower).

--quick: one repeat, and 10k / 40k requests for (b) and (c). Prints medians over repeats (one core).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the target states

from infersim.catalog.models import load_model  # noqa: E402
from infersim.datasets import trace as shipped_trace  # noqa: E402
from infersim.mapping.deployment import build_deployment  # noqa: E402
from infersim.serving.simulate import simulate  # noqa: E402
from infersim.workload.synthetic import poisson, sampled_lengths  # noqa: E402
from infersim.workload.traces import read_trace  # noqa: E402

CONV_TRACE = shipped_trace("AzureLLMInferenceTrace_conv.csv")
VIDUR_S_PER_REQUEST = 10.75e-3  # Vidur measured on this machine kind (Azure conv trace, 8 replicas): ~208 s for this trace
# (b): 16 x llama-3.1-8b on H100 saturate at ~239 requests/s on this workload (simulated with a rate of
# 5000/s); 167/s loads them to ~70%.
LOAD_RATE = 167.0
LOAD_REPLICAS = 16


def median_time(fn, repeats: int):
    """(median wall seconds, the last result)."""
    times, result = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), result


def load_workload(n: int):
    """(b)'s workload: n Poisson requests at LOAD_RATE with exponential lengths (seeded)."""
    return poisson(LOAD_RATE, n, input_len=sampled_lengths(1024, n, 1, "exponential"),
                   output_len=sampled_lengths(256, n, 2, "exponential"), seed=0)


def load_deployment():
    return build_deployment(load_model("llama-3.1-8b"), "h100-sxm", tp=1, replicas=LOAD_REPLICAS)


def trace_replay(repeats: int) -> None:
    t = time.perf_counter()
    reqs = read_trace(CONV_TRACE)
    print(f"(a) full trace replay: {CONV_TRACE.name}, {len(reqs)} requests (read in {time.perf_counter() - t:.2f} s)")
    cases = [("llama-3.1-8b", dict(tp=1)), ("llama-3.1-70b", dict(tp=8, precision="fp8"))]
    for name, kw in cases:
        dep = build_deployment(load_model(name), "h100-sxm", replicas=8, **kw)
        t, res = median_time(lambda: simulate(reqs, dep), repeats)
        s = res.summary
        n = len(reqs)
        label = f"{name} tp={kw['tp']}{' ' + kw['precision'] if 'precision' in kw else ''} x 8"
        print(f"    {label:28s}: {t:6.2f} s (median of {repeats}), {n / t:8.0f} req/s, {t / n * 1e6:6.0f} us/req, "
              f"{VIDUR_S_PER_REQUEST * n / t:5.1f}x faster than Vidur (~{VIDUR_S_PER_REQUEST * n:.0f} s); "
              f"engine_steps {s['engine_steps']}, events {s['events']} "
              f"({s['engine_steps'] / s['events']:.1f} steps/event)")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def load_child(n: int, traced: bool) -> None:
    """Run (b)'s workload of n requests in this fresh process; print wall seconds, the summary's
    counts and the memory `simulate` took (peak RSS above the RSS before it, or the traced peak)
    as JSON."""
    import resource
    import tracemalloc
    reqs = load_workload(n)
    dep = load_deployment()
    before = _rss_bytes()
    if traced:
        tracemalloc.start()
    t = time.perf_counter()
    res = simulate(reqs, dep)
    wall = time.perf_counter() - t
    if traced:
        grown = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:  # ru_maxrss: peak RSS of this process (KiB on Linux); the peak is during or after simulate
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    s = res.summary
    records = sum(getattr(res.records, f).nbytes for f in res.records.__dataclass_fields__)
    print(json.dumps({"wall": wall, "grown": grown, "before": before, "records": records,
                      "duration": s["duration_s"], "steps": s["engine_steps"], "events": s["events"]}))


def throughput_and_memory(sizes: tuple[int, int], traced: bool) -> None:
    got = {}
    for n in sizes:
        cmd = [sys.executable, __file__, "--load-child", str(n)] + (["--tracemalloc"] if traced else [])
        out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=os.environ).stdout
        got[n] = json.loads(out.strip().splitlines()[-1])
    for n in sizes:
        g = got[n]
        print(f"(b) throughput: {n} Poisson requests at {LOAD_RATE:g}/s on {LOAD_REPLICAS} x llama-3.1-8b (~70% load): "
              f"{g['wall']:6.2f} s{' (traced: slow)' if traced else ''}, {n / g['wall'] * 60:8.0f} simulated "
              f"requests per minute; {g['duration']:.0f} simulated s, engine_steps {g['steps']}, events {g['events']}")
    what = "traced peak" if traced else "peak RSS growth"
    for n in sizes:
        g = got[n]
        print(f"(c) memory, {n:7d} requests: {what} during simulate {g['grown'] / 2**20:7.1f} MiB "
              f"(RSS before {g['before'] / 2**20:.0f} MiB), returned records {g['records'] / 2**20:5.1f} MiB")
    a, b = sizes
    per = (got[b]["grown"] - got[a]["grown"]) / (b - a)
    print(f"    growth {a} -> {b}: {per:.0f} B/request ({what}), of which the returned records "
          f"{(got[b]['records'] - got[a]['records']) / (b - a):.0f} B/request")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one repeat, smaller workloads for (b) and (c)")
    ap.add_argument("--tracemalloc", action="store_true", help="(c) as tracemalloc's traced peak (slow)")
    ap.add_argument("--load-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.load_child:
        load_child(args.load_child, args.tracemalloc)
        return
    trace_replay(1 if args.quick else 3)
    throughput_and_memory((10_000, 40_000) if args.quick else (50_000, 200_000), args.tracemalloc)


if __name__ == "__main__":
    main()
