"""Which link each chip-to-chip transfer of a dataflow (LPU / wafer) layer pipeline uses.

A compiler lays a pipeline out contiguously: layer 0 on the first chips, domain after domain (LPX
rack, GroqNode, CS-3 system), so a transfer crosses the scale-out link only where the pipeline
leaves a domain; everything else stays on the scale-up link. `StepCost` (costmodel.step) times the
transfers; this module only counts them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersim.catalog.hardware import LinkSpec
from infersim.mapping.deployment import Deployment


@dataclass(frozen=True)
class DataflowLinks:
    """Which link each chip-to-chip transfer of a layer pipeline uses (see `dataflow_links`)."""

    hops_up: int             # pipeline chip boundaries inside one scale-up domain
    hops_out: int            # pipeline chip boundaries that leave a domain (rack / node / system)
    hop_up: LinkSpec | None
    hop_out: LinkSpec | None
    group: int               # chips that hold one layer and all-reduce its outputs
    all_reduce: LinkSpec | None
    all_reduces: int         # all-reduces per token when group > 1: one per block (mixer, FFN) present


def dataflow_links(dep: Deployment) -> DataflowLinks:
    """The links of a dataflow replica's transfers, with the chips placed contiguously in pipeline
    order (layer 0 on the first chips, domain after domain, as a compiler lays out a pipeline):

    - the hidden state crosses min(chips, layers) - 1 chip boundaries per token; a replica spanning
      d = ceil(chips / scale_up_domain) domains leaves a domain d - 1 times, over the scale-out link;
      every other boundary is inside a domain, over the scale-up link;
    - a layer held by ceil(chips / layers) chips all-reduces the output of each of its blocks (mixer,
      FFN: two in a decoder layer, one in AFD's FFN-only layers) among them, over the scale-up link
      when that group fits in one domain (aligned placement), else over the scale-out link."""
    chips, n_layers = dep.chips_per_replica, dep.model.n_layers
    domain = max(int(dep.system.scale_up_domain), 1)
    boundaries = max(min(chips, n_layers) - 1, 0)
    hops_out = min(boundaries, -(-chips // domain) - 1)
    group = int(np.ceil(chips / n_layers))
    blocks = sum(n * ((layer.mixer is not None) + (layer.ffn is not None)) for layer, n in dep.model.layer_groups())
    return DataflowLinks(boundaries - hops_out, hops_out, dep.scale_up or dep.scale_out,
                         dep.scale_out or dep.scale_up, group, dep.link_for(group), blocks)


def pipeline_hops_note(dep: Deployment) -> str:
    """What a dataflow replica's prediction assumes about its chips and hops, for the assumptions a
    result lists ("" for GPU deployments): e.g. "; 20 wafers per pipeline, 19 wafer-to-wafer hops
    per token over cerebras-swarmx"."""
    if not dep.dataflow:
        return ""
    links = dataflow_links(dep)
    unit = "wafers" if dep.chip.kind == "wafer" else "chips"
    note = f"; {dep.chips_per_replica} {unit} per pipeline"
    if links.hops_out and links.hop_out is not None:
        where = "wafer-to-wafer" if dep.chip.kind == "wafer" else f"{dep.system.scale_up_domain}-chip-domain-leaving"
        note += f", {links.hops_out} {where} hops per token over {links.hop_out.name}"
    return note
