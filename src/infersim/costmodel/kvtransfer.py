"""KV-cache hand-over between a prefill worker and a decode worker (P/D disaggregation).

Each GPU of the prefill worker holds its shard of the request's KV cache and sends it over its own
port of `link` (its NVLink port within a scale-up domain, its own RDMA NIC across nodes: one NIC
per GPU, as HGX and NVL72 systems are built), so min(prefill, decode) GPUs per worker send in
parallel: seconds = latency + (KV bytes / lanes) / (link bandwidth per direction x link_eff).
Transfers of different requests to one decode worker queue FIFO (serving/engine.py).
"""
from __future__ import annotations

from infersim.catalog.hardware import LinkSpec
from infersim.costmodel.execution import collective_time
from infersim.costmodel.memory import kv_bytes_per_seq
from infersim.mapping.deployment import Deployment


def kv_transfer_seconds(prefill: Deployment, decode: Deployment, link: LinkSpec, input_tokens):
    """Seconds to move the KV cache of `input_tokens` prompt tokens (scalar or array) to a decode worker."""
    lanes = min(prefill.chips_per_replica, decode.chips_per_replica)
    return collective_time(link, decode.eff, 2, kv_bytes_per_seq(prefill, input_tokens) / lanes, 1.0, "p2p")
