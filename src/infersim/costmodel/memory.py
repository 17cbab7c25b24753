"""Memory fit per chip: weights + KV cache / SSM state + activations + runtime reserve.

GPU layouts: dense weights (attention, dense FFN, shared experts) split tp x pp ways and
replicated over the ep attention data-parallel ranks; routed experts spread over tp x ep (whole
experts per GPU when ep > 1, whole per moe_ep group at ep 1: expert_slot_share) and pp; KV heads split by tp up to the number of KV heads
(beyond that they replicate; MLA's latent cache replicates); each rank holds the KV cache of its
own sequences (1/ep of them). LPU/wafer: all weights and KV spread
evenly over the replica's chips (SRAM), as a compiler places them.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import math

import numpy as np

from infersim.catalog.models import AttentionSpec, MambaSpec, MoESpec
from infersim.costmodel.work import SSM_STATE_BYTES
from infersim.mapping.deployment import Deployment, routed_expert_params, weight_bytes_total
from infersim.mapping.engine import MAX_TOKENS_PER_STEP

# Activation working set per token in flight, in hidden-sized tensors (residual, norm output,
# attention output, projections; the FFN intermediate is counted separately).
ACT_HIDDEN_TENSORS = 4
# Engines prefill long prompts in chunks; the activation peak is bounded by the largest step
# (mapping/engine.py: the engines' common 8192 tokens per step).


@dataclass
class MemoryFit:
    capacity: float
    reserve: float
    weights: np.ndarray | float
    kv: np.ndarray | float
    activations: np.ndarray | float

    @property
    def used(self):
        return self.weights + self.kv + self.activations + self.reserve

    @property
    def free(self):
        return self.capacity - self.used

    def as_dict(self) -> dict[str, float]:
        return {"capacity_bytes": float(self.capacity), "weights_bytes": float(np.max(self.weights)),
                "kv_cache_bytes": float(np.max(self.kv)), "activations_bytes": float(np.max(self.activations)),
                "reserve_bytes": float(self.reserve), "free_bytes": float(np.min(self.free))}


def kv_bytes_per_seq(dep: Deployment, context) -> np.ndarray:
    """KV-cache + SSM-state bytes one sequence of `context` tokens holds in the whole replica."""
    ctx = np.asarray(context, dtype=float)
    m = dep.model
    total = 0.0 * ctx
    for layer, n in m.layer_groups():
        if isinstance(layer.mixer, AttentionSpec):
            w = layer.mixer.window or layer.mixer.chunk
            toks = np.minimum(ctx, w) if w else ctx
            total = total + n * toks * layer.mixer.kv_cache_elems_per_token() * dep.plan.kv_bytes
        elif isinstance(layer.mixer, MambaSpec):
            total = total + n * layer.mixer.state_elems_per_seq() * SSM_STATE_BYTES
    return total


def kv_block_bytes(dep: Deployment, block_tokens: int) -> float:
    """Bytes of one paged-KV block (replica-wide): `block_tokens` tokens of every attention layer's
    cache. Bounded per-sequence state (sliding windows, SSM state) is charged through
    kv_bytes_per_seq's block table; a model with no attention cache counts one block's worth of it."""
    per_token = dep.model.kv_cache_elems_per_token
    full = float(kv_bytes_per_seq(dep, block_tokens)) if per_token == 0 else block_tokens * per_token * dep.plan.kv_bytes
    return max(full, 1.0)


def kv_chip_share(dep: Deployment) -> float:
    """The fraction of one sequence's (replica-wide) KV cache and state that one chip holds:
    an even spread over an SRAM pipeline's chips; on GPUs split by the KV-head / stage layout, and
    only the sequences of one of the ep attention-data-parallel groups sit on a chip."""
    if dep.dataflow:
        return 1.0 / dep.chips_per_replica
    return 1.0 / (dep.par.ep * _kv_split(dep))


def _kv_split(dep: Deployment) -> float:
    """How many ways one sequence's KV cache is split across a GPU replica's chips."""
    attn = [l.mixer for l, _ in dep.model.layer_groups() if isinstance(l.mixer, AttentionSpec)]
    if not attn:
        return dep.par.tp * dep.par.pp
    a = attn[0]
    heads_split = 1 if a.kind == "mla" else min(dep.par.tp, a.n_kv_heads)
    return heads_split * dep.par.pp


def expert_slot_share(dep: Deployment) -> float:
    """The fraction of the routed experts' weights one GPU holds: 1/(tp x ep) of every expert when
    they are tensor-sharded (one group); placed whole over G groups (Parallelism.expert_parallel:
    every GPU with DP attention, moe_ep groups of tp / moe_ep GPUs without), a group holds
    ceil(E / G) of the E experts per MoE layer (G not dividing E leaves spare slots, which EPLB
    fills with redundant copies), tensor-sharded over the group's GPUs, so the GPUs together hold
    each expert at least once."""
    par = dep.par
    chips = par.tp * par.ep
    groups = par.expert_parallel
    if groups <= 1:
        return 1.0 / chips
    experts = [l.ffn.n_routed for l, _ in dep.model.layer_groups() if isinstance(l.ffn, MoESpec)]
    per_group = chips / groups  # GPUs sharing one group's experts
    if not experts:
        return 1.0 / chips
    e = max(experts)
    return float(np.ceil(e / groups)) / e / per_group


def memory_fit(dep: Deployment, seqs, context, step_tokens) -> MemoryFit:
    """Per-chip memory for `seqs` sequences of `context` tokens each, with `step_tokens` tokens
    in the largest engine step (capped at MAX_TOKENS_PER_STEP)."""
    chip, m, par, plan = dep.chip, dep.model, dep.par, dep.plan
    cap = float(chip.mem_bytes.value)
    reserve = cap * dep.eff.mem_reserve
    seqs = np.asarray(seqs, dtype=float)
    tokens = np.minimum(np.asarray(step_tokens, dtype=float), MAX_TOKENS_PER_STEP)
    max_inter = max([getattr(l.ffn, "intermediate", 0) or getattr(l.ffn, "expert_intermediate", 0)
                     for l, _ in m.layer_groups() if l.ffn is not None] or [0])
    if dep.dataflow:
        n = dep.chips_per_replica
        weights = weight_bytes_total(m, plan) / n
        kv = seqs * kv_bytes_per_seq(dep, context) * kv_chip_share(dep)
        acts = tokens * (ACT_HIDDEN_TENSORS * m.hidden + 2 * max_inter) * plan.act_bytes / n
        return MemoryFit(cap, reserve, weights, kv, acts)
    routed = routed_expert_params(m)
    embed = m.embedding_params + (0 if m.tie_embeddings else m.lm_head_params)
    dense = m.total_params - routed - embed
    weights = (dense * plan.weight_bytes / (par.tp * par.pp) + routed * plan.expert_weight_bytes * expert_slot_share(dep) / par.pp
               + embed * plan.weight_bytes / par.tp)
    kv = seqs * kv_bytes_per_seq(dep, context) * kv_chip_share(dep)
    acts = (tokens / par.ep) * (ACT_HIDDEN_TENSORS * m.hidden + 2 * max_inter / par.tp) * plan.act_bytes \
        + (seqs / par.ep) * m.vocab * 4.0 / par.tp
    return MemoryFit(cap, reserve, weights, kv, acts)


def max_sequences(dep: Deployment, context, prompt_tokens) -> int:
    """Largest batch of sequences of `context` tokens that fits (at most 2**24), with the same
    accounting as the memory check (step tokens = batch x prompt_tokens, capped; a logits buffer
    per sequence)."""
    prompt = float(np.max(prompt_tokens))

    def free(batches: list[int]) -> list[float]:
        """Free bytes (the tightest parameter set's) at each batch size: one memory fit over all of
        them when nothing but the batch varies (no parameter-set axis), else one fit per batch; the
        same float operations per batch either way."""
        if len(batches) > 1:
            x = np.array(batches, dtype=float)
            fit = memory_fit(dep, x, context, x * prompt)
            if np.ndim(fit.reserve) == 0 and np.ndim(fit.weights) == 0 and np.shape(fit.free) == x.shape:
                return fit.free.tolist()
        return [float(np.min(memory_fit(dep, b, context, b * prompt).free)) for b in batches]
    top = 1 << 24
    lo, hi = 0, top + 1  # the largest batch known to fit (0: none yet); the smallest known not to (or past the cap)

    def probe(batches: list[int]) -> list[float]:
        nonlocal lo, hi
        values = free(batches)
        for b, f in zip(batches, values):
            if f >= 0:
                lo = max(lo, b)
            else:
                hi = min(hi, b)
        return values
    f1, f2 = probe([1, 2])
    if f1 < 0:
        return 0
    # Every term of the used memory grows with the batch (and float sums of growing terms grow),
    # so fits(b) holds exactly up to the answer, whichever batches are probed. Free memory is
    # piecewise linear in the batch (its slope drops once the step's tokens are capped): aim secant
    # steps at where it runs out, probing the guess and its neighbours together, then bisect what
    # is left. Same answer as bisecting from 1, in a few memory fits instead of ~25.
    a, fa, b, fb = 1, f1, 2, f2
    for _ in range(6):
        slope = (fa - fb) / (b - a)
        if not slope > 0 or hi - lo <= 1:
            break
        g = min(max(b + math.floor(fb / slope), lo + 1), hi - 1)
        around = sorted({min(max(x, lo + 1), hi - 1) for x in (g - 1, g, g + 1)})
        values = probe(around)
        if len(around) < 2:
            break
        a, fa, b, fb = around[0], values[0], around[-1], values[-1]
    step = 1
    while hi == top + 1 and lo < top:  # nothing seen that does not fit: widen upwards
        probe([min(lo + step, top)])
        step *= 2
    while hi - lo > 1:
        probe([(lo + hi) // 2])
    return lo


def min_chips_for_context(dep: Deployment, context: int, seqs: int = 1) -> int:
    """Fewest chips of an SRAM layer pipeline (LPU / wafer) holding the weights, `seqs`
    sequences of `context` tokens of KV cache and state, and their prefill activations."""
    usable = float(dep.chip.mem_bytes.value) * (1 - dep.eff.mem_reserve)
    need = weight_bytes_total(dep.model, dep.plan) + seqs * float(kv_bytes_per_seq(dep, context))
    n = max(1, int(np.ceil(need / usable)))
    while float(np.min(memory_fit(replace(dep, chips_per_replica=n), seqs, context, seqs * context).free)) < 0:
        n += 1  # activations are a small per-chip share: a few more chips at most
    return n
