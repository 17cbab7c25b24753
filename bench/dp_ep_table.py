"""DeepSeek-V3 (R1 architecture) decode step on 8 x B200 as TP8 vs DP8 + EP8 and on a GB200 NVL72 as
wide EP (DP72 + EP72), by part: rank-local ops (attention, dense layers, shared experts, ...),
routed experts, collectives by side, engine overhead. `python bench/dp_ep_table.py [--past N]`."""
from __future__ import annotations

import argparse

import numpy as np

from infersim.catalog.models import load_model
from infersim.costmodel.execution import gpu_table_time
from infersim.costmodel.step import StepCost
from infersim.costmodel.work import GLOBAL_OPS, model_ops
from infersim.mapping.deployment import build_deployment

LAYOUTS = (("8xB200 TP8", "b200", 8, 1, 8), ("8xB200 DP8+EP8", "b200", 1, 8, 8),
           ("NVL72 DP72+EP72", "gb200-nvl72", 1, 72, 72))


def parts(cost: StepCost, batch: int, past: float) -> dict[str, float]:
    shape = cost.uniform_decode_shape(batch, past, 1.0)
    flops, byts, rates, counts = cost._ops(shape)
    names = [o.name for o in model_ops(cost.dep.model, shape, cost.sharding, cost.dep.plan)]
    glob = np.array([n in GLOBAL_OPS for n in names])
    ms = lambda sel: 1e3 * float(gpu_table_time(flops[..., sel], byts[..., sel], rates[sel], counts[sel],  # noqa: E731
                                                cost.dep.chip, cost.dep.eff).total)
    out = {"rank_ops_ms": ms(~glob), "experts_ms": ms(glob)}
    for c in cost.collectives(shape):
        key = f"comm_{c.side}_ms"
        out[key] = out.get(key, 0.0) + 1e3 * float(c.seconds)
    out["total_ms"] = 1e3 * float(cost.total(shape))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--past", type=float, default=2000.0, help="tokens already in each sequence's KV cache")
    ap.add_argument("--precision", default="fp8")
    args = ap.parse_args()
    model = load_model("deepseek-r1")
    print(f"DeepSeek-V3 architecture, {args.precision}, decode at context {args.past:.0f}; ms per step")
    print(f"{'layout':18} {'batch':>5} {'rank ops':>9} {'experts':>8} {'attn comm':>9} {'ffn comm':>9} {'total':>8}"
          f" {'tok/s/user':>10} {'tok/s/GPU':>9}")
    for label, system, tp, ep, chips in LAYOUTS:
        cost = StepCost(build_deployment(model, system, tp=tp, ep=ep, chips=chips, precision=args.precision))
        for batch in (1, 64, 256):
            p = parts(cost, batch, args.past)
            t = p["total_ms"] / 1e3
            print(f"{label:18} {batch:5d} {p['rank_ops_ms']:9.3f} {p['experts_ms']:8.3f} {p.get('comm_attention_ms', 0):9.3f}"
                  f" {p.get('comm_ffn_ms', 0):9.3f} {p['total_ms']:8.3f} {1 / t:10.1f} {batch / t / chips:9.1f}")


if __name__ == "__main__":
    main()
