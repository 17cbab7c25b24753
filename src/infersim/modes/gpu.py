"""Mode `gpu`: GPU replicas that each prefill and decode (aggregated serving), optionally with
speculative decoding drafted on the same GPUs (a `spec:` section: MTP / EAGLE head or a draft model)."""
from __future__ import annotations

from infersim.deployments.plan import Plan
from infersim.errors import InputError
from infersim.modes import register
from infersim.modes._shared import BuildContext, gpu_deployment, gpu_footprint
from infersim.modes._speculative import speculative_pool


@register("gpu", needs=("gpu",), takes=("spec",), description="GPU replicas that prefill and decode (aggregated)")
def build(ctx: BuildContext) -> Plan:
    part = ctx.spec.gpu
    if part.prefill_replicas or part.decode_replicas is not None:
        raise InputError(f"deployment '{ctx.spec.name}': gpu.prefill_replicas / decode_replicas split the replicas into "
                         "prefill and decode pools; set mode: pd for that (or drop them)")
    dep = gpu_deployment(ctx, part)
    racks, power = gpu_footprint(ctx, part, [dep])
    pool, spec = speculative_pool(ctx, dep, "both")
    return ctx.plan([pool], racks=racks, power_w=power, summary={"spec": spec} if spec else {})
