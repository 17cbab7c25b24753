"""Time the loaders every command starts with: the hardware catalog, the model catalog's config.json
parsing, and the largest shipped trace (formerly wall-clock asserts in the tests; timings belong
here, where a slow machine does not turn them into failures).

    python bench/bench_load.py [--repeats N]

Prints the median and the spread (min-max) of N runs (default 7) of each, beside the budget the
tests used to assert:
- hardware catalog: parse and validate every chip/system YAML and links.yaml, cache cleared first
  (budget 1 s; the packaged load took ~20 ms when the budget was set);
- model catalog: `parse_hf_config` plus total/active parameter counts for every shipped config.json,
  files already read (budget 0.2 s);
- trace: `read_trace` of the shipped Azure conversation trace, 19,366 requests (budget 0.5 s).
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

from infersim.catalog import hardware
from infersim.catalog.models import DATA_DIR, catalog_entries, parse_hf_config
from infersim.datasets import trace as shipped_trace
from infersim.workload.traces import read_trace


def _load_hardware() -> None:
    hardware._packaged.cache_clear()  # time the parse, not the cache
    hardware.load_catalog()


def _parse_models(configs: list[tuple[str, dict]]) -> None:
    for name, cfg in configs:
        arch = parse_hf_config(cfg, name)
        arch.total_params, arch.active_params


def _timed(fn, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="runs per loader (median reported)")
    a = ap.parse_args()
    if a.repeats < 1:
        ap.error("--repeats must be at least 1")
    configs = [(e["name"], json.loads((DATA_DIR / e["config"] / "config.json").read_text()))
               for e in catalog_entries()]
    conv = shipped_trace("AzureLLMInferenceTrace_conv.csv")
    cases = [("hardware catalog (uncached)", _load_hardware, 1.0),
             (f"model catalog: parse {len(configs)} configs", lambda: _parse_models(configs), 0.2),
             (f"trace: {conv.name}", lambda: read_trace(conv), 0.5)]
    print(f"median of {a.repeats} runs each")
    for label, fn, budget in cases:
        t = _timed(fn, a.repeats)
        med = statistics.median(t)
        print(f"{label:40s} {med * 1e3:8.1f} ms  (min {min(t) * 1e3:.1f}, max {max(t) * 1e3:.1f})  "
              f"budget {budget * 1e3:.0f} ms: {'ok' if med <= budget else 'OVER'}")


if __name__ == "__main__":
    main()
