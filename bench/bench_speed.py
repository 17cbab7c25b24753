"""Issue 11's speed targets: trace simulation per request against Vidur, and one `estimate` call.

    python bench/bench_speed.py [--repeats N] [--estimates N] [--profile OUT.prof]

(a) The Azure conversation trace (19,366 requests) through 8 replicas of Llama-2-7B on H100 (tp 1),
    prefill chunks of 512 tokens and at most 128 sequences per step, the setup Vidur was timed on
    side by side on this machine kind: Vidur took 10.75 ms of wall time per simulated request.
    Prints the median wall time per request over the repeats and the ratio to Vidur's figure.
    Target (issue 11): >= 40x Vidur, i.e. <= 0.27 ms per request.
(b) One `estimate` call (llama-3.1-70b fp8 on 8 x H100, batch 32, 2048 in / 256 out), median over
    many calls after one warm-up. Target (issue 11): <= 0.5 ms per call.

One core (OMP_NUM_THREADS=1). The machine is shared: run under `nice`, compare medians of one run
against medians of another taken at the same time, and read ratios rather than absolute times.
--profile writes a cProfile of one trace replay.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import timeit

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one core, as the targets state

import numpy as np  # noqa: E402

from infersim.catalog.models import load_model  # noqa: E402
from infersim.datasets import trace as shipped_trace  # noqa: E402
from infersim.estimate import estimate  # noqa: E402
from infersim.mapping.deployment import build_deployment  # noqa: E402
from infersim.serving.config import EngineConfig  # noqa: E402
from infersim.serving.simulate import simulate  # noqa: E402
from infersim.workload.traces import read_trace  # noqa: E402

CONV_TRACE = "AzureLLMInferenceTrace_conv.csv"
# Vidur on this machine kind, same trace and setup (issue 11, "Speed"): seconds of wall time per request
VIDUR_S_PER_REQUEST = 10.75e-3
TARGET_RATIO = 40.0
TARGET_ESTIMATE_S = 0.5e-3


def vidur_setup():
    """(requests, deployment, engine settings) of the side-by-side comparison."""
    reqs = read_trace(shipped_trace(CONV_TRACE))
    model = load_model("llama-2-7b")
    # Llama-2-7B holds 4096 tokens; as Vidur's trace reader clips lengths to its max_tokens, trim the
    # prompts of the few longer requests so each fits (the output lengths are kept)
    out = reqs.output_tokens
    inp = np.minimum(reqs.input_tokens, np.maximum(model.max_context - out, 1))
    reqs = dataclasses.replace(reqs, input_tokens=inp, output_tokens=np.minimum(out, model.max_context - inp))
    dep = build_deployment(model, "h100-sxm", tp=1, replicas=8)
    return reqs, dep, EngineConfig(max_batch=128, chunk_tokens=512)


def timed(fn, repeats: int) -> list[float]:
    """Wall seconds of each of `repeats` calls."""
    return timeit.repeat(fn, number=1, repeat=repeats)


def trace_speed(repeats: int, profile: str | None) -> None:
    reqs, dep, cfg = vidur_setup()
    n = len(reqs)
    if profile:
        import cProfile
        cProfile.runctx("simulate(reqs, dep, engine=cfg)", globals(), locals(), profile)
        print(f"profile of one replay written to {profile}")
    times = timed(lambda: simulate(reqs, dep, engine=cfg), repeats)
    t = statistics.median(times)
    per = t / n
    print(f"(a) {CONV_TRACE}: {n} requests, 8 x llama-2-7b on h100-sxm, chunk 512, batch cap 128")
    print(f"    wall {t:.2f} s (median of {repeats}: {', '.join(f'{x:.2f}' for x in times)}), "
          f"{per * 1e3:.3f} ms/request; Vidur {VIDUR_S_PER_REQUEST * 1e3:.2f} ms/request -> "
          f"{VIDUR_S_PER_REQUEST / per:.1f}x Vidur (target >= {TARGET_RATIO:g}x, <= "
          f"{VIDUR_S_PER_REQUEST / TARGET_RATIO * 1e3:.2f} ms/request)")


def estimate_speed(calls: int) -> None:
    model = load_model("llama-3.1-70b")

    def one():
        estimate(model, "h100-sxm", batch=32, input_len=2048, output_len=256, tp=8, precision="fp8")
    one()  # warm caches (catalog, calibration)
    times = timed(one, calls)
    t = statistics.median(times)
    print(f"(b) estimate llama-3.1-70b fp8 on 8 x h100-sxm, batch 32, 2048/256: {t * 1e3:.3f} ms per call "
          f"(median of {calls}; target <= {TARGET_ESTIMATE_S * 1e3:.1f} ms)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="trace replays to take the median of")
    ap.add_argument("--estimates", type=int, default=200, help="estimate calls to take the median of")
    ap.add_argument("--profile", default=None, help="write a cProfile of one replay here")
    ap.add_argument("--skip-trace", action="store_true")
    args = ap.parse_args()
    if not args.skip_trace:
        trace_speed(args.repeats, args.profile)
    estimate_speed(args.estimates)


if __name__ == "__main__":
    main()
