"""Time each distinct InferenceX simulation of `validate` (one process), grouped by point kind.

    python bench/profile_points.py [--points FILE] [--out CSV] [--only agg|pd|mtp|pd-mtp]

Prints CPU seconds per kind (aggregated / disaggregated, with or without MTP) and by concurrency,
and the ten slowest points; --out writes one line per simulation (id, kind, concurrency, isl, osl,
prompts simulated, events, seconds).
"""
from __future__ import annotations

import argparse
import collections
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402

from infersim.calibration.efficiency import load_calibration  # noqa: E402
from infersim.catalog.hardware import load_catalog  # noqa: E402
from infersim.datasets import inferencex_points  # noqa: E402
from infersim.deployments.run import simulate_plan  # noqa: E402
from infersim.errors import InputError  # noqa: E402
from infersim.validation.harness import run_harness  # noqa: E402
from infersim.validation.inferencex import read_points  # noqa: E402
from infersim.validation.inferencex_plan import PointSetup, map_point  # noqa: E402
from infersim.validation.inferencex_report import _job_key  # noqa: E402


def kind(p) -> str:
    return ("pd" if p.disagg else "agg") + ("-mtp" if p.spec_decode == "mtp" else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--only", default=None)
    args = ap.parse_args()
    catalog, calibration = load_catalog(), load_calibration()
    setups = {}
    for p in read_points(args.points or inferencex_points()):
        s = map_point(p, catalog, calibration)
        if isinstance(s, PointSetup) and (args.only is None or kind(p) == args.only):
            setups.setdefault(_job_key(s), s)
    lines = []
    for s in setups.values():
        p = s.point

        def loop(wl, s=s):
            return simulate_plan(s.plan, wl, engine=s.engine).records
        t0 = time.process_time()
        try:
            with np.errstate(all="ignore"):
                simulated = run_harness(loop, p.concurrency, p.isl, p.osl, p.num_prompts).requests_simulated
        except InputError:  # refused (validate skips it): its time still counts
            simulated = 0
        dt = time.process_time() - t0
        lines.append((p.id, kind(p), p.concurrency, p.isl, p.osl, simulated, dt))
    total = sum(x[-1] for x in lines)
    print(f"{len(lines)} distinct simulations, {total:.1f} CPU s")
    by_kind = collections.defaultdict(lambda: [0, 0.0])
    by_conc = collections.defaultdict(lambda: [0, 0.0])
    for x in lines:
        by_kind[x[1]][0] += 1
        by_kind[x[1]][1] += x[-1]
        by_conc[(x[1], x[2])][0] += 1
        by_conc[(x[1], x[2])][1] += x[-1]
    for k, (n, t) in sorted(by_kind.items()):
        print(f"  {k:7s} {n:4d} points {t:7.1f} s ({100 * t / total:4.1f}%)")
    print("by kind and concurrency (points, s):")
    for (k, c), (n, t) in sorted(by_conc.items()):
        print(f"  {k:7s} c{c:<5d} {n:3d} {t:7.1f}")
    print("slowest:")
    for x in sorted(lines, key=lambda x: -x[-1])[:10]:
        print("  ", *x[:-1], f"{x[-1]:.2f} s")
    if args.out:
        with open(args.out, "w") as f:
            f.write("id,kind,concurrency,isl,osl,simulated,cpu_s\n")
            for x in lines:
                f.write(",".join(map(str, x[:-1])) + f",{x[-1]:.4f}\n")


if __name__ == "__main__":
    main()
