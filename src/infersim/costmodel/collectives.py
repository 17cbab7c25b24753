"""Collectives by algorithm and message size, each tagged attention side or FFN side.

Alpha-beta model over one link: a collective step costs the link's latency `alpha` (latency_s:
one hop incl. the collective's software, an assumption with a range in links.yaml) and moving
B bytes through one GPU's port costs B / (bw_bytes_per_s_per_dir x eff.link_eff). Every GPU
collective is also one kernel and pays the per-kernel floor eff.kernel_s (the op list of
costmodel.work holds no collectives, so this is its only launch cost).

All-reduce of a message of S bytes among g GPUs (every GPU holds S bytes and ends with the sum):
- one-shot: every GPU reads all g-1 peers' whole buffers and reduces locally, one step:
  alpha + (g-1) S / bw. Best for small messages (latency), worst for large (g-1 copies).
- two-shot: reduce-scatter then all-gather, each GPU reading one 1/g chunk from every peer in
  each: 2 alpha + 2 (g-1)/g S / bw.
- nccl: NCCL's ring bandwidth 2 (g-1)/g S / bw with the latency of a double binary tree,
  2 ceil(log2 g) alpha (NCCL picks tree for small, ring for large messages; this takes the better
  term of each, as infersim did before the algorithms were split).
One-shot and two-shot are the engines' custom all-reduce kernels (vLLM custom_all_reduce,
TensorRT-LLM AllReduceStrategy ONESHOT/TWOSHOT, SGLang custom AR): they read peers' memory
directly, so they need a switched scale-up link (NVLink/NVSwitch, xGMI) and a message that fits
their registered buffer, CUSTOM_ALLREDUCE_MAX_BYTES; larger messages and other links use NCCL.
The engines' auto-selection is a size rule; here it is the fastest eligible algorithm. The two
agree: vLLM (csrc/custom_all_reduce.cuh) uses one-shot below 256 KB on 8 GPUs, 512 KB on 4, always
on 2, two-shot above; the min-time rule switches at alpha x bw / ((g-1)(1 - 2/g)): ~240 KB on 8
B200s (nvlink5 at link_eff 0.7), ~840 KB on 4, never on 2 (one-shot always wins).

Fused all-reduce + RMSNorm (TensorRT-LLM AllReduceFusionOp.RESIDUAL_RMS_NORM, vLLM's and SGLang's
FlashInfer fusion): the same all-reduce, and the residual add + norm that follows runs inside it,
saving one kernel launch and one read + write of the hidden state; `fused_all_reduce_rmsnorm`
returns the all-reduce time less that saving.

EP all-to-all (MoE dispatch before the experts, combine after, one phase each): each GPU sends
its tokens' top-k copies to the GPUs holding those experts. Inside one scale-up domain that is
one step over NVLink: alpha + send / bw. A group spanning several domains (wide EP over RDMA NICs)
sends the share addressed to other domains over the scale-out NIC at the same time:
max(local / bw_up, remote / bw_out) (DeepEP's normal kernels overlap the two). Each phase also
pays the link's all_to_all_phase_s (kernel, flag barriers, routing metadata: an assumption in
links.yaml, 15 us in 10-30 us, which `--set LINK.all_to_all_phase_s=S` overrides and `sensitivity`
sweeps), and alpha of the NIC link when it crosses domains.

Checked against published measurements (not fitted to them; reference/serving_facts.md s2.2-2.4,
NVIDIA AIC collector data): one-shot at 8 KiB gives 5.1 us on 8 x B200 (measured 5.6) and 5.2 us
on 8 x H100 (3.5); 128 KiB 6.5 / 7.7 us (6.3 / 6.2); NCCL at 64 MiB 201 us on B200 (278) and
388 us on H100 (325). Mid sizes (1-8 MiB, two-shot) come out 1.5-2x faster than measured (the
custom kernels reach less bandwidth than link_eff says): TP all-reduce at prefill sizes is optimistic.

Sides: the TP all-reduce after attention (or a Mamba mixer) is attention side; the one after a
dense FFN or MoE block and the EP all-to-all are FFN side (AFD drops those when the FFN moves to
other chips); pipeline sends belong to neither.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersim.catalog.hardware import LinkSpec
from infersim.calibration.efficiency import Efficiency
from infersim.costmodel.work import Sharding, StepShape, comm_volumes
from infersim.errors import InputError

ATTENTION, FFN, PIPELINE = "attention", "ffn", "pipeline"
ALL_REDUCE_ALGORITHMS = ("one_shot", "two_shot", "nccl")
# Largest message the engines' custom (one-/two-shot) all-reduce takes; above it they call NCCL.
# vLLM CustomAllreduce max_size default 8 MiB (vllm/distributed/device_communicators/
# custom_all_reduce.py); TensorRT-LLM's AUTO strategy also falls back to NCCL for large messages.
# Assumption range 1-64 MiB (engine versions and workspace settings differ).
CUSTOM_ALLREDUCE_MAX_BYTES = 8 * 1024 * 1024
# Links whose GPUs can read every peer's memory directly (a switch or full mesh): custom kernels run there.
PEER_MEMORY_LINK_KINDS = ("nvlink",)


@dataclass(frozen=True)
class Comm:
    """One kind of collective in a step: `seconds` summed over its `count` calls, its side."""

    name: str
    side: str
    seconds: np.ndarray


def _bw(link: LinkSpec, eff: Efficiency) -> float:
    """Achieved bytes/s through one GPU's port, per direction."""
    return float(link.bw_bytes_per_s_per_dir.value) * np.asarray(eff.link_eff, dtype=float)


def _alpha(link: LinkSpec) -> float:
    return float(link.latency_s.value)


def _tree_steps(group: int) -> float:
    return float(np.ceil(np.log2(group)))


def _launch(eff: Efficiency):
    return np.asarray(eff.kernel_s, dtype=float)


def _custom_ok(link: LinkSpec, message_bytes) -> np.ndarray:
    return (link.kind in PEER_MEMORY_LINK_KINDS) & (np.asarray(message_bytes, dtype=float) <= CUSTOM_ALLREDUCE_MAX_BYTES)


def _scatter_phase(link: LinkSpec, eff: Efficiency, group: int, s, direct):
    """One reduce-scatter or all-gather phase without its launch: (g-1)/g of the message crosses
    each port; one step when GPUs read peers directly, else ceil(log2 g) steps (NCCL)."""
    steps = np.where(_custom_ok(link, s) if direct is None else direct, 1.0, _tree_steps(group))
    return steps * _alpha(link) + (group - 1) / group * s / _bw(link, eff)


def reduce_scatter(link: LinkSpec, eff: Efficiency, group: int, message_bytes, direct=None):
    """Seconds of one reduce-scatter of `message_bytes` (the whole vector) among `group` GPUs, one
    kernel; `direct` None: peers read directly where the link and size allow the custom kernels."""
    s = np.asarray(message_bytes, dtype=float)
    if group <= 1:
        return 0.0 * s
    return _launch(eff) + _scatter_phase(link, eff, group, s, direct)


def all_gather(link: LinkSpec, eff: Efficiency, group: int, message_bytes, direct=None):
    """Seconds of one all-gather ending with `message_bytes` on every GPU: the mirror of a
    reduce-scatter (same bytes through each port, same steps)."""
    return reduce_scatter(link, eff, group, message_bytes, direct)


def all_reduce_times(link: LinkSpec, eff: Efficiency, group: int, message_bytes) -> dict[str, np.ndarray]:
    """Seconds of one all-reduce of `message_bytes` among `group` GPUs by every algorithm; an
    algorithm the link or size rules out is inf (see the module docstring)."""
    s = np.asarray(message_bytes, dtype=float)
    if group <= 1:
        return {a: 0.0 * s for a in ALL_REDUCE_ALGORITHMS}
    custom = _custom_ok(link, s)
    launch = _launch(eff)
    one_shot = launch + _alpha(link) + (group - 1) * s / _bw(link, eff)
    two_shot = launch + 2 * _scatter_phase(link, eff, group, s, True)
    nccl = launch + 2 * _scatter_phase(link, eff, group, s, False)
    return {"one_shot": np.where(custom, one_shot, np.inf), "two_shot": np.where(custom, two_shot, np.inf),
            "nccl": nccl}


def scheduled_all_reduce(link: LinkSpec, eff: Efficiency, group: int, message_bytes):
    """Seconds of one all-reduce among `group` chips of a compiler-scheduled chip-to-chip network
    (LPU C2C: every chip is an endpoint and a switch, transfers are planned at compile time, no
    collective engine and no software stack in the path): a reduce-scatter and an all-gather, one
    hop each, 2 alpha + 2 (g-1)/g S / bw (the two-shot form without a kernel launch). Groq's
    8-TSP all-reduce is quoted at 2.1 us (reference/serving_facts.md s5.2, second-hand), which two
    hops at groq-c2c-v1's assumed 1 us reproduce; NCCL's tree latency (2 ceil(log2 g) hops) would
    give 6 us."""
    s = np.asarray(message_bytes, dtype=float)
    if group <= 1:
        return 0.0 * s
    return 2 * _scatter_phase(link, eff, group, s, True)


def all_reduce_algorithm(link: LinkSpec, eff: Efficiency, group: int, message_bytes) -> np.ndarray:
    """The algorithm the auto-selection picks per message size (names, arrays broadcast)."""
    times = all_reduce_times(link, eff, group, message_bytes)
    return np.asarray(ALL_REDUCE_ALGORITHMS)[np.argmin(np.stack([times[a] for a in ALL_REDUCE_ALGORITHMS]), axis=0)]


def all_reduce(link: LinkSpec, eff: Efficiency, group: int, message_bytes, count=1.0):
    """Seconds of `count` all-reduces of `message_bytes` each, by the fastest eligible algorithm."""
    times = all_reduce_times(link, eff, group, message_bytes)
    return count * np.minimum(np.minimum(times["one_shot"], times["two_shot"]), times["nccl"])


def fused_all_reduce_rmsnorm(link: LinkSpec, eff: Efficiency, group: int, message_bytes, count, norm_pass_s):
    """Seconds of `count` all-reduces fused with the residual add + RMSNorm after them, counted
    against the unfused pair: the all-reduce time less the saved kernel launch (eff.kernel_s) and
    the saved pass over the hidden state (`norm_pass_s`, seconds of one read + write of it, which
    the caller times with the chip's memory bandwidth). Never below zero."""
    saved = count * (np.asarray(eff.kernel_s, dtype=float) + np.asarray(norm_pass_s, dtype=float))
    return np.maximum(all_reduce(link, eff, group, message_bytes, count) - saved, 0.0)


def all_to_all(scale_up: LinkSpec, eff: Efficiency, group: int, send_bytes, count=1.0, domain: int | None = None,
               scale_out: LinkSpec | None = None):
    """Seconds of `count` all-to-all phases among `group` GPUs, each GPU sending `send_bytes` to
    its peers (spread evenly; its own share already left out). With `domain` < group the peers
    outside a GPU's scale-up domain are reached over `scale_out` at the same time."""
    s = np.asarray(send_bytes, dtype=float)
    if group <= 1:
        return 0.0 * s
    domain = min(domain or group, group)
    phase = all_to_all_phase_s(scale_up)
    if domain >= group or scale_out is None:
        return count * (phase + s / _bw(scale_up, eff))
    local = s * (domain - 1) / (group - 1)
    remote = s - local
    return count * (phase + _alpha(scale_out)
                    + np.maximum(local / _bw(scale_up, eff), remote / _bw(scale_out, eff)))


def all_to_all_phase_s(link: LinkSpec) -> float:
    """The fixed seconds of one all-to-all phase over `link` (its catalog assumption)."""
    q = link.all_to_all_phase_s
    if q is None or q.value is None:
        raise InputError(f"link '{link.name}' has no all_to_all_phase_s, the fixed cost of one MoE all-to-all phase; "
                         f"expert parallelism over it needs one: --set {link.name}.all_to_all_phase_s=1.5e-5 (seconds), "
                         "or add it to the link in your --hardware file")
    return float(q.value)


def p2p(link: LinkSpec, eff: Efficiency, message_bytes, count=1.0, with_latency: bool = True):
    """Seconds of `count` point-to-point sends moving `message_bytes` in total (one hop each);
    without latency: the link's occupancy only."""
    return np.asarray(message_bytes, dtype=float) / _bw(link, eff) + count * (_alpha(link) if with_latency else 0.0)


def step_collectives(dep, sh: Sharding, micro: StepShape, imbalance=1.0) -> list[Comm]:
    """The collectives of one engine step of GPU deployment `dep` (a mapping.Deployment) with
    sharding `sh`, for one micro-batch `micro` passing through every pipeline stage; `imbalance`
    scales the busiest attention rank's messages (work.dp_rank_imbalance). Seconds over all layers."""
    par, eff = dep.par, dep.eff
    vol = comm_volumes(dep.model, micro, sh, dep.plan, imbalance)
    out: list[Comm] = []
    if par.tp > 1:
        link, msg = dep.link_for(par.tp), vol["tp_message_bytes"]
        out.append(Comm("tp_all_reduce.attention", ATTENTION, all_reduce(link, eff, par.tp, msg, vol["tp_attention_count"])))
        out.append(Comm("tp_all_reduce.ffn", FFN, all_reduce(link, eff, par.tp, msg, vol["tp_ffn_allreduce_count"])
                        + vol["tp_ffn_allgather_count"] * all_gather(link, eff, par.tp, msg)))
    if par.ep > 1:
        group = par.tp * par.ep
        up = dep.scale_up or dep.scale_out
        out.append(Comm("ep_all_to_all", FFN, all_to_all(up, eff, group, vol["ep_send_bytes"], vol["ep_phase_count"],
                                                         dep.system.scale_up_domain, dep.scale_out)))
    if par.pp > 1:
        link = dep.link_for(dep.chips_per_replica)
        out.append(Comm("pp_send", PIPELINE, p2p(link, eff, vol["pp_bytes"], vol["pp_count"])))
    return out
