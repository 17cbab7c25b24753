"""Mode `pd`: prefill/decode disaggregation on GPUs. Prefill replicas hand each request's KV cache
over `kv_link` (the rack's NVLink when both pools share a scale-up domain, else the scale-out
network) to decode replicas, which may be another chip or tp (`decode:` section)."""
from __future__ import annotations

from infersim.deployments.plan import Plan, plain_pool
from infersim.errors import InputError
from infersim.mapping.deployment import kv_transfer_link
from infersim.modes import register
from infersim.modes._shared import BuildContext, gpu_deployment, gpu_footprint, shared_domain


@register("pd", needs=("gpu",), description="GPU prefill pool -> KV transfer -> GPU decode pool")
def build(ctx: BuildContext) -> Plan:
    part, override = ctx.spec.gpu, ctx.spec.decode
    p = part.prefill_replicas
    if p < 1:
        raise InputError(f"deployment '{ctx.spec.name}': mode pd needs gpu.prefill_replicas of at least 1 "
                         "(--prefill-replicas)")
    if part.racks is not None:  # a file: the racks' replicas split into the two pools
        if override is not None:
            raise InputError("decode: (another chip or tp for the decode pool) needs the pools sized by replicas, not "
                             "gpu.racks; give gpu.decode_replicas and drop gpu.racks")
        full = gpu_deployment(ctx, part)
        d = part.decode_replicas if part.decode_replicas is not None else full.par.replicas - p
        if p + d > full.par.replicas or d < 1:
            raise InputError(f"gpu.prefill_replicas {p} and {d} decode replica(s) do not fit the {full.par.replicas} "
                             f"tp x ep x pp replicas of {part.racks} x {part.system}: the two pools need at least one "
                             "replica each; lower gpu.prefill_replicas (or gpu.decode_replicas)")
        decode = gpu_deployment(ctx, part, replicas=d)
    else:
        if part.decode_replicas is None:
            raise InputError("a disaggregated deployment needs both --prefill-replicas and --decode-replicas")
        decode = gpu_deployment(ctx, part, replicas=part.decode_replicas,
                                system=override.system if override else None, tp=override.tp if override else None)
    prefill = gpu_deployment(ctx, part, replicas=p)
    same = override is None or override.system in (None, part.system)
    link = kv_transfer_link(prefill, decode, shared_domain(ctx, part) if same else None)
    if link is None:
        raise InputError(f"{decode.system.name} has no link to move KV caches between the prefill and decode pools; "
                         "pick a system with a scale-out link")
    racks, power = gpu_footprint(ctx, part, [prefill, decode])
    return ctx.plan([plain_pool(prefill, "prefill"), plain_pool(decode, "decode")], kv_link=link, racks=racks,
                    power_w=power)
