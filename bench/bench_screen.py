"""Time the analytical screen (planner/screen.py) on one core: every family's deployments for the
given models x batches x input lengths x output lengths (issue 11's target: 1M configurations in
<= 60 s on one core), split into plan building, coefficient extraction (floor timers and their
compiled per-op tables) and the vectorised evaluation; medians of --runs runs. Then how tight the
bounds are: estimate_plan on --sample random configurations that fit, median bound / estimate per
family (tok/s per user, output tok/s, and estimate / bound for TTFT; 1 = exact).

    python bench/bench_screen.py [--models deepseek-v3 nemotron-3-super] [--runs 3] [--sample 300]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads: one thread

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402

import numpy as np  # noqa: E402

TARGET_S = 60.0
BATCHES = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


def build(models):
    """(family names, plans) of every deployment of every family of `models` that builds."""
    from infersim.calibration.efficiency import load_calibration
    from infersim.catalog.hardware import load_catalog
    from infersim.catalog.models import load_model
    from infersim.deployments.spec import DeploymentSpec
    from infersim.errors import InputError
    from infersim.modes import build_plan
    from infersim.planner.families import families
    catalog, calibration = load_catalog(), load_calibration(None)
    names, plans = [], []
    for m in models:
        model = load_model(m)
        for fam in families(model, catalog, calibration):
            for label, dep in fam.deployments:
                try:
                    plans.append(build_plan(DeploymentSpec.model_validate({"name": label, **dep}), model, catalog,
                                            calibration))
                    names.append(fam.name)
                except InputError:
                    pass  # a deployment too small for the model: not a configuration
    return names, plans


def tightness(names, plans, grid, sample: int, seed: int = 0) -> None:
    from infersim.errors import InputError
    from infersim.estimate import estimate_plan
    rng = np.random.default_rng(seed)
    fitting = np.argwhere(grid.fits)
    ratios = defaultdict(list)
    for p, b, i, o in fitting[rng.choice(len(fitting), size=min(sample, len(fitting)), replace=False)]:
        try:
            e = estimate_plan(plans[p], int(grid.batches[b]), int(grid.input_lens[i]), int(grid.output_lens[o]))
        except InputError as err:  # the screen says it fits: that would be a bug
            raise SystemExit(f"screen says {plans[p].spec.name} fits but estimate refuses it: {err}")
        ratios[names[p]].append((grid.tok_s_per_user[p, b, i, o] / e["tok_s_per_user"],
                                 grid.output_tok_s[p, b, i, o] / e["output_tok_s"], e["ttft_s"] / grid.ttft_s[p, b, i, o]))
    print(f"\nbound / estimate_plan on {min(sample, len(fitting))} random fitting configurations (>= 1 always; 1 = exact):")
    print(f"{'family':24s} {'n':>4s} {'tok/s/user':>11s} {'(max)':>7s} {'output tok/s':>13s} {'(max)':>7s} "
          f"{'TTFT est/bound':>15s}")
    for fam, rows in sorted(ratios.items()):
        a = np.array(rows)
        print(f"{fam:24s} {len(a):4d} {np.median(a[:, 0]):11.4f} {a[:, 0].max():7.3f} {np.median(a[:, 1]):13.4f} "
              f"{a[:, 1].max():7.3f} {np.median(a[:, 2]):15.4f}")
    if min(min(r) for rows in ratios.values() for r in rows) < 1.0:
        raise SystemExit("a bound was beaten by the estimate")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["deepseek-v3", "nemotron-3-super"])
    ap.add_argument("--inputs", type=int, default=16, help="input lengths, geometric in 128..65536 tokens")
    ap.add_argument("--outputs", type=int, default=18, help="output lengths, geometric in 16..8192 tokens")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sample", type=int, default=300, help="configurations checked against estimate_plan (0: none)")
    ap.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the first one allowed)")
    a = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        cpu = a.cpu if a.cpu is not None else min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpu})
        print(f"pinned to CPU {cpu}; numpy threads 1")
    from infersim.planner.screen import screen
    inputs = np.unique(np.round(np.geomspace(128, 65536, a.inputs)).astype(int))
    outputs = np.unique(np.round(np.geomspace(16, 8192, a.outputs)).astype(int))
    rows = []
    for run in range(a.runs):
        t = time.perf_counter()
        names, plans = build(a.models)
        built = time.perf_counter() - t
        res = screen(plans, BATCHES, inputs, outputs)
        total = built + res.seconds["coefficients"] + res.seconds["evaluation"]
        rows.append((built, res.seconds["coefficients"], res.seconds["evaluation"], total))
        print(f"run {run + 1}: {res.size:,} configurations ({len(plans)} plans x {len(BATCHES)} batches x "
              f"{inputs.size} inputs x {outputs.size} outputs; {int(res.fits.sum()):,} fit): plans {built:.2f} s, "
              f"coefficients {res.seconds['coefficients']:.2f} s, evaluation {res.seconds['evaluation']:.2f} s, "
              f"total {total:.2f} s")
    med = [statistics.median(c) for c in zip(*rows)]
    print(f"median of {a.runs}: plans {med[0]:.2f} s + coefficients {med[1]:.2f} s + evaluation {med[2]:.2f} s = "
          f"{med[3]:.2f} s for {res.size:,} configurations: {res.size / med[3]:,.0f} configurations/s "
          f"({res.size / med[2]:,.0f}/s in the evaluation); target {TARGET_S:.0f} s for 1M")
    if a.sample:
        tightness(names, plans, res, a.sample)


if __name__ == "__main__":
    main()
