"""Mode `pd`: prefill/decode disaggregation on GPUs. N prefill workers hand each request's KV cache
over `kv_link` to M decode workers; each worker is a GPU group of its own tp x ep x pp (`prefill:`
and `decode:` sections, default the gpu section's), possibly spanning several nodes of a rack or
cluster (its collectives then cross the scale-out link). The KV link is the scale-up fabric
(NVLink) when both pools fit one scale-up domain together, else the scale-out RDMA NICs, one per
GPU (mapping.deployment.kv_transfer_link). The router spreads requests over the prefill workers and
hands each prefilled request to a decode worker (serving/policies.py). With a `spec:` section the
decode workers draft on their own GPUs (MTP / EAGLE head or a draft model)."""
from __future__ import annotations

from infersim.deployments.plan import Plan, plain_pool
from infersim.errors import InputError
from infersim.mapping.deployment import kv_transfer_link
from infersim.modes import register
from infersim.modes._shared import (DEFAULT_RACK_TP, BuildContext, gpu_deployment, gpu_footprint, gpu_rack_system,
                                    shared_domain)
from infersim.modes._speculative import speculative_pool


def _layout(part, pool) -> tuple[int, int, int]:
    """(tp, ep, moe_ep) of one worker of a pool: the pool section's, else the gpu section's (a
    pool section giving its own tp or ep has tensor-sharded experts unless it gives moe_ep too)."""
    tp = (pool.tp if pool is not None and pool.tp else None) or part.tp
    ep = (pool.ep if pool is not None and pool.ep else None) or part.ep
    own = pool is not None and bool(pool.tp or pool.ep or pool.moe_ep)
    moe_ep = ((pool.moe_ep or 1) if own else part.moe_ep) or 1
    return tp, ep, moe_ep


@register("pd", needs=("gpu",), takes=("spec",), description="GPU prefill workers -> KV transfer -> GPU decode workers")
def build(ctx: BuildContext) -> Plan:
    spec, part = ctx.spec, ctx.spec.gpu
    p = part.prefill_replicas
    if p < 1:
        raise InputError(f"deployment '{spec.name}': mode pd needs gpu.prefill_replicas of at least 1 "
                         "(--prefill-replicas)")
    (p_tp, p_ep, p_moe), (d_tp, d_ep, d_moe) = _layout(part, spec.prefill), _layout(part, spec.decode)
    systems = {s for s in (spec.prefill and spec.prefill.system, spec.decode and spec.decode.system) if s}
    if part.racks is not None:  # a file: both pools' workers are carved from the racks
        if systems - {part.system}:
            raise InputError("prefill.system / decode.system name another system; with gpu.racks both pools come "
                             "from the racks of gpu.system: drop them (or size the pools by replicas without racks)")
        rack = gpu_rack_system(ctx.catalog, part.system)
        chips = rack.n_chips * part.racks
        p_per, d_per = ((p_tp or DEFAULT_RACK_TP) * p_ep * part.pp, (d_tp or DEFAULT_RACK_TP) * d_ep * part.pp)
        d = part.decode_replicas if part.decode_replicas is not None else (chips - p * p_per) // d_per
        if d < 1 or p * p_per + d * d_per > chips:
            raise InputError(f"{p} prefill worker(s) of {p_per} GPUs and {max(d, 0)} decode worker(s) of {d_per} GPUs "
                             f"do not fit the {chips} GPUs of {part.racks} x {part.system}: each pool needs at least "
                             "one worker; lower gpu.prefill_replicas / gpu.decode_replicas, shrink a worker's tp x ep "
                             "or add racks")
        prefill = gpu_deployment(ctx, part, replicas=p, tp=p_tp, ep=p_ep, moe_ep=p_moe)
        decode = gpu_deployment(ctx, part, replicas=d, tp=d_tp, ep=d_ep, moe_ep=d_moe)
    else:
        if part.decode_replicas is None:
            raise InputError("a disaggregated deployment needs both --prefill-replicas and --decode-replicas")
        prefill = gpu_deployment(ctx, part, replicas=p, tp=p_tp, ep=p_ep, moe_ep=p_moe,
                                 system=spec.prefill.system if spec.prefill else None)
        decode = gpu_deployment(ctx, part, replicas=part.decode_replicas, tp=d_tp, ep=d_ep, moe_ep=d_moe,
                                system=spec.decode.system if spec.decode else None)
    same = systems <= {part.system}
    link = kv_transfer_link(prefill, decode, shared_domain(ctx, part) if same else None)
    if link is None:
        raise InputError(f"{decode.system.name} has no link to move KV caches between the prefill and decode pools; "
                         "pick a system with a scale-out link")
    racks, power = gpu_footprint(ctx, part, [prefill, decode])
    decode_pool, spec_summary = speculative_pool(ctx, decode, "decode")
    notes = [f"pd: {p} prefill worker(s) of {prefill.chips_per_replica} GPUs (tp {prefill.par.tp}, ep {prefill.par.ep}), "
             f"{decode.par.replicas} decode worker(s) of {decode.chips_per_replica} GPUs (tp {decode.par.tp}, ep "
             f"{decode.par.ep}); KV cache over {link.name}"]
    return ctx.plan([plain_pool(prefill, "prefill"), decode_pool], kv_link=link, racks=racks, power_w=power,
                    notes=notes, summary={"spec": spec_summary} if spec_summary else {})
