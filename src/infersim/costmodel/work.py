"""Per-layer operator work: FLOPs and bytes each chip must process in one engine step.

Everything here is pure arithmetic on the model architecture; no hardware rates appear.
All inputs may be numpy arrays (they broadcast), so one call evaluates a whole grid of
batch sizes and context lengths.

Conventions (per chip, per step):
- `flops`: floating-point operations (a multiply-add is 2).
- `bytes`: bytes the op must move through device memory: weights read once per step,
  KV-cache / SSM-state reads and writes, and activation inputs/outputs.
- `m`: rows of the matrix product (tokens) for GEMM ops — the shape that decides how close a
  GEMM gets to peak; None for non-GEMM ops.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from infersim.catalog.models import AttentionSpec, DenseFFNSpec, LayerSpec, MambaSpec, ModelArch, MoESpec
from infersim.costmodel.expert_load import busiest_group_load, expected_distinct_experts
from infersim.mapping.deployment import whole_expert_groups
from infersim.mapping.precision import PrecisionPlan

# Mamba-2 SSD chunk length used by the chunked scan in prefill (NemotronH config `chunk_size`,
# Mamba-2 default); the chunk length sets the intra-chunk attention-like work per token.
MAMBA_SCAN_CHUNK = 128
# SSM state is kept in fp32 (NemotronH `mamba_ssm_cache_dtype: float32`).
SSM_STATE_BYTES = 4.0
# Elementwise passes over the hidden state per layer: norm read+write, residual add read x2 +
# write, i.e. about 6 hidden-sized activation tensors move per token per layer.
ELEMENTWISE_PASSES = 6


@dataclass(frozen=True)
class Sharding:
    """How a replica splits its work over tp x ep x pp chips: `ep` attention data-parallel ranks
    (DP attention: each rank runs attention, dense layers, embedding and LM head for its own
    sequences, tp-way tensor parallel inside the rank, so no attention all-reduce at tp 1); the
    routed experts are spread over all tp x ep chips (expert parallel when ep > 1, whole experts
    per chip; at ep 1 tensor-sharded, or whole over `moe_ep` groups of tp / moe_ep chips); pp
    pipeline stages each hold 1/pp of the layers (their cost is accounted per stage by the caller).
    Per-chip work here is the mean attention rank's (the step scales the rank-local ops to the
    busiest rank, `dp_rank_imbalance`); the routed experts' is the busiest expert group's when
    they are placed whole (costmodel.expert_load)."""

    tp: int = 1
    ep: int = 1
    pp: int = 1
    moe_ep: int = 1

    @property
    def expert_groups(self) -> int:
        return whole_expert_groups(self.tp, self.ep, self.moe_ep)


# Ops whose work is spread over all tp x ep chips (every rank's tokens meet there); all other ops
# are local to an attention data-parallel rank.
GLOBAL_OPS = ("moe.experts",)


def dp_rank_imbalance(seqs, dp: int):
    """Work of the busiest of `dp` attention data-parallel ranks over the mean rank's, with `seqs`
    sequences spread as evenly as whole sequences allow: min(ceil(s/dp), s) / (s/dp); 1 when dp is
    1 or there are no sequences. A prefill chunk counts as one sequence (its tokens are assumed
    spread like the sequences; engines schedule each rank's prefill separately)."""
    s = np.asarray(seqs, dtype=float)
    if dp <= 1:
        return 1.0 + 0.0 * s
    mean = s / dp
    return np.where(s > 0, busiest_rank_seqs(s, dp) / np.maximum(mean, 1e-300), 1.0)


def busiest_rank_seqs(seqs, dp: int):
    """Sequences on the busiest of `dp` attention data-parallel ranks, `seqs` spread as evenly as
    whole sequences allow: min(ceil(s/dp), s); s itself when dp is 1. Each rank runs its own
    scheduler and captures its own CUDA graphs (SGLang DP attention: one scheduler process per DP
    rank; TensorRT-LLM attention DP: one executor per rank; vLLM DP: one engine core per rank), so
    per-sequence host work and the graph-size limit go with this count, not the replica's."""
    s = np.asarray(seqs, dtype=float)
    if dp <= 1:
        return s
    return np.minimum(np.ceil(s / dp - 1e-9), s)


@dataclass(frozen=True)
class Batch:
    """One engine step of a replica (arrays broadcast).

    seqs: sequences in the step (whole replica, all ep groups);
    new: new tokens per sequence (1 for decode, the prompt or chunk length for prefill);
    past: tokens already in the KV cache per sequence before this step;
    span: for decode (new == 1) the number of consecutive steps being averaged: the step is
          evaluated at the mean attended context over steps past+1 .. past+span."""

    seqs: np.ndarray
    new: np.ndarray
    past: np.ndarray
    span: np.ndarray | float = 1.0


@dataclass
class Op:
    name: str
    kind: str            # "gemm", "attention", "scan", "memory"
    flops: np.ndarray
    bytes: np.ndarray
    m: np.ndarray | None
    count: int           # identical layers this op stands for


def attended_keys(past, q, window):
    """Sum over queries at positions past+1 .. past+q of the keys each attends (causal):
    sum(min(pos, window)). window None = full attention. Closed form, broadcasts; exact Python
    ints for Python int arguments (every intermediate is an integer: (a + hi) and (hi - a + 1)
    have opposite parity)."""
    if type(past) is int and type(q) is int:
        if window is None:
            return q * past + q * (q + 1) // 2
        a, b = past + 1, past + q
        hi = min(b, window)
        return ((a + hi) * (hi - a + 1) // 2 if hi >= a else 0) + max(0, b - max(a - 1, window)) * window
    past = np.asarray(past, dtype=float)
    q = np.asarray(q, dtype=float)
    if window is None:
        return q * past + q * (q + 1) / 2
    a, b = past + 1, past + q
    hi = np.minimum(b, window)                       # positions a..hi attend pos keys
    tri = np.where(hi >= a, (a + hi) * (hi - a + 1) / 2, 0.0)
    flat = np.maximum(0.0, b - np.maximum(a - 1, window)) * window
    return tri + flat


def attention_window(attn: AttentionSpec) -> int | None:
    """Keys a query can see at most: the sliding window, or the chunk of chunked local attention
    (an upper bound for Llama 4's chunks); None = full attention."""
    return attn.window or attn.chunk


def _decode_keys(window, past, span=1.0):
    """Attention pairs (= KV tokens read) per decode step of a sequence after `past` cached
    tokens, averaged over `span` consecutive steps past+1 .. past+span."""
    span = np.maximum(np.asarray(span, dtype=float), 1.0)
    return attended_keys(past, span, window) / span


def _prefill_keys(window, past, new):
    """(attention pairs, KV tokens read) of a prefill chunk of `new` tokens after `past` cached
    ones: causal pairs, and the whole (windowed) cache read once."""
    total = past + new
    return attended_keys(past, new, window), (np.minimum(total, window) if window else total)


def _keys_per_seq(window, past, new, span=1.0):
    """(decode pairs, prefill pairs, KV tokens read) for one sequence adding `new` tokens after
    `past` cached ones (arrays broadcast); decode when new <= 1."""
    new = np.asarray(new, dtype=float)
    past = np.asarray(past, dtype=float)
    decode = new <= 1
    pairs_decode = _decode_keys(window, past, span)
    pairs_prefill, kv_prefill = _prefill_keys(window, past, new)
    kv_read = np.where(decode, pairs_decode, kv_prefill)
    return np.where(decode, pairs_decode, 0.0), np.where(decode, 0.0, pairs_prefill), kv_read


@dataclass(frozen=True)
class AttnSums:
    """Attention work of one step summed over its sequences, for one window size:
    query-key pairs of decode tokens and of prefill tokens (MLA uses different head dimensions
    for the two), and KV-cache tokens read."""

    pairs_decode: np.ndarray
    pairs_prefill: np.ndarray
    kv_read: np.ndarray


@dataclass(frozen=True)
class StepShape:
    """Everything the per-op work of one engine step depends on, summed over the step's sequences
    (arrays broadcast: one entry per step or per grid point). A step may mix decode sequences
    (one new token each) with prefill chunks, as continuous batching with chunked prefill does.

    seqs: sequences in the step; decode_tokens / prefill_tokens: new tokens of decode sequences /
    of prefill chunks; attn: AttnSums per attention window (key None = full attention)."""

    seqs: np.ndarray
    decode_tokens: np.ndarray
    prefill_tokens: np.ndarray
    attn: dict

    @property
    def tokens(self):
        return self.decode_tokens + self.prefill_tokens

    def distinct_experts(self, n_experts: int, top_k: int):
        return expected_distinct_experts(n_experts, top_k, self.tokens)

    def busiest_group_load(self, n_experts: int, top_k: int, groups: int):
        """(touched experts, routed token copies) of the busiest of `groups` whole-expert groups
        (costmodel.expert_load.busiest_group_load)."""
        return busiest_group_load(n_experts, top_k, groups, self.tokens)

    def scaled(self, k) -> "StepShape":
        """The same step split into 1/k micro-batches (every sum scales; distinct experts are
        recomputed from the smaller token count)."""
        return StepShape(self.seqs * k, self.decode_tokens * k, self.prefill_tokens * k,
                         {w: AttnSums(a.pairs_decode * k, a.pairs_prefill * k, a.kv_read * k) for w, a in self.attn.items()})


def model_windows(arch: ModelArch) -> tuple:
    """The distinct attention windows of a model (None = full attention)."""
    return tuple(dict.fromkeys(attention_window(l.mixer) for l, _ in arch.layer_groups()
                               if isinstance(l.mixer, AttentionSpec)))


def batch_shape(b: Batch, windows) -> StepShape:
    """Shape of a uniform batch: `seqs` sequences each adding `new` tokens after `past`."""
    seqs = np.asarray(b.seqs, dtype=float)
    new = np.asarray(b.new, dtype=float)
    decode = new <= 1
    tokens = seqs * new
    attn = {}
    for w in windows:
        pd, pf, kv = _keys_per_seq(w, b.past, new, b.span)
        attn[w] = AttnSums(seqs * pd, seqs * pf, seqs * kv)
    z = 0.0 * tokens
    return StepShape(seqs + z, np.where(decode, tokens, 0.0), np.where(decode, 0.0, tokens), attn)


def sequences_shape(past, new, windows) -> StepShape:
    """Shape of one mixed step from per-sequence arrays: sequence i adds new[i] tokens after
    past[i] cached ones (decode when new[i] == 1)."""
    past = np.asarray(past, dtype=float)
    new = np.asarray(new, dtype=float)
    decode = new <= 1
    n_decode = np.count_nonzero(decode)
    zero = np.float64(0.0)
    attn = {}
    if n_decode == new.size or n_decode == 0:
        # all decode, or all multi-token (prefill chunks, speculative verifies): the sums below
        # with the empty side left out (its sums are exactly 0)
        for w in windows:
            if n_decode:
                pd = _decode_keys(w, past).sum()
                attn[w] = AttnSums(pd, zero, pd + zero)
            else:
                pf, kv_p = _prefill_keys(w, past, new)
                attn[w] = AttnSums(zero, pf.sum(), zero + kv_p.sum())
        total = new.sum()
        decode_tokens = total if n_decode else zero
        return StepShape(np.float64(new.size), decode_tokens, total - decode_tokens, attn)
    # a step holds few prefill chunks: sum decode and prefill sequences separately
    past_d, past_p, new_p = past[decode], past[~decode], new[~decode]
    for w in windows:
        pd = _decode_keys(w, past_d).sum()
        pf, kv_p = _prefill_keys(w, past_p, new_p)
        attn[w] = AttnSums(pd, pf.sum(), pd + kv_p.sum())
    decode_tokens = new[decode].sum()
    return StepShape(np.float64(new.size), decode_tokens, new.sum() - decode_tokens, attn)


def decode_run_shape(past_sorted, steps, windows) -> StepShape:
    """Shapes of `steps` consecutive pure-decode steps of the same sequences (closed form, no loop
    over sequences): in step k (0-based) sequence i attends past_sorted[i] + k + 1 keys, capped by
    the window. `past_sorted` must be ascending. Equals sequences_shape(past + k, 1, windows).
    The sequence and token counts are the same in every step, so they are scalars; the attention
    sums are arrays over the steps."""
    p = np.asarray(past_sorted, dtype=float)
    k1 = np.arange(steps, dtype=float) + 1  # keys a sequence gains by step k: k + 1
    s = float(p.size)
    prefix = np.zeros(p.size + 1)  # prefix[i] = sum of the i smallest pasts
    p.cumsum(out=prefix[1:])
    attn = {}
    for w in windows:
        if w is None:
            keys = prefix[-1] + s * k1
        else:
            # sequences with past + k + 1 < w attend all their keys, the rest exactly w
            n_below = np.searchsorted(p, w - k1, side="left")
            keys = prefix[n_below] + n_below * k1 + (s - n_below) * w
        attn[w] = AttnSums(keys, 0.0 * keys, keys)
    return StepShape(s, s, 0.0, attn)


def _as_shape(b, windows) -> StepShape:
    return b if isinstance(b, StepShape) else batch_shape(b, windows)


def _gemm(name, params, tokens, shard_div, wbytes, act_bytes, hidden, count):
    """A weight GEMM of `params` weights applied to `tokens` rows, split over `shard_div` chips."""
    flops = 2.0 * params * tokens / shard_div
    # weights once, plus a hidden-sized activation read and written per token (the TP-sharded
    # intermediate is smaller; this is the dominant activation traffic of a projection)
    byt = params * wbytes / shard_div + tokens * 2 * hidden * act_bytes
    return Op(name, "gemm", flops, byt, np.asarray(tokens, dtype=float), count)


def attention_ops(attn: AttentionSpec, arch: ModelArch, b: StepShape | Batch, sh: Sharding, pp: PrecisionPlan,
                  count: int):
    w = attention_window(attn)
    b = _as_shape(b, (w,))
    tokens = b.tokens / sh.ep
    ops = [_gemm("attention.proj", attn.n_params(arch.hidden), tokens, sh.tp, pp.weight_bytes,
                 pp.act_bytes, arch.hidden, count)]
    sums = b.attn[w]
    if attn.kind == "mla":
        # Decode uses the absorbed form (scores and values over the latent cache);
        # prefill the expanded heads. Latent KV is not split by TP (each rank holds all of it).
        dims_decode = attn.kv_lora_rank + attn.qk_rope_head_dim + attn.kv_lora_rank
        dims_prefill = attn.head_dim + attn.v_head_dim
        kv_div = 1.0
    else:
        dims_decode = dims_prefill = attn.head_dim + attn.v_head_dim
        kv_div = min(sh.tp, attn.n_kv_heads)  # KV heads replicate when tp > kv heads
    heads_per_chip = attn.n_heads / sh.tp
    flops = 2.0 * heads_per_chip * (dims_decode * sums.pairs_decode + dims_prefill * sums.pairs_prefill) / sh.ep
    kv_tok = attn.kv_cache_elems_per_token() * pp.kv_bytes / kv_div
    q_dims = (b.decode_tokens * dims_decode + b.prefill_tokens * dims_prefill) / sh.ep
    byt = (sums.kv_read + b.tokens) / sh.ep * kv_tok + heads_per_chip * q_dims * pp.act_bytes * 2
    ops.append(Op("attention.core", "attention", flops, byt, None, count))
    return ops


def mamba_ops(m: MambaSpec, arch: ModelArch, b: StepShape, sh: Sharding, pp: PrecisionPlan, count: int):
    tokens = b.tokens / sh.ep
    seqs = b.seqs / sh.ep
    ops = [_gemm("mamba.proj", m.n_params(arch.hidden), tokens, sh.tp, pp.weight_bytes, pp.act_bytes,
                 arch.hidden, count)]
    d_inner, state = m.d_inner, m.state_size
    # decode: state update per token ~ 6 flops per state element; prefill: SSD chunked scan.
    per_decode_token = 6.0 * d_inner * state
    per_prefill_token = 2.0 * MAMBA_SCAN_CHUNK * (m.n_groups * state + d_inner) + 4.0 * d_inner * state
    flops = (per_decode_token * b.decode_tokens + per_prefill_token * b.prefill_tokens) / sh.ep / sh.tp
    state_bytes = m.state_elems_per_seq() * SSM_STATE_BYTES / sh.tp
    byt = seqs * state_bytes * 2 + tokens * d_inner * 3 * pp.act_bytes / sh.tp
    ops.append(Op("mamba.scan", "scan", flops, byt, None, count))
    return ops


def ffn_ops(f: DenseFFNSpec | MoESpec, arch: ModelArch, b: StepShape, sh: Sharding, pp: PrecisionPlan, count: int):
    tokens = b.tokens / sh.ep
    if isinstance(f, DenseFFNSpec):
        return [_gemm("ffn.dense", f.n_params(arch.hidden), tokens, sh.tp, pp.weight_bytes, pp.act_bytes,
                      arch.hidden, count)]
    ops = []
    routed_all = f.expert_params(arch.hidden) * f.n_routed
    dense_part = f.n_params_total(arch.hidden) - routed_all  # router, shared experts, latent projections
    if dense_part > 0:
        ops.append(_gemm("moe.shared", dense_part, tokens, sh.tp, pp.weight_bytes, pp.act_bytes, arch.hidden, count))
    t_all = b.tokens  # every token of the replica is routed to experts held across tp*ep chips
    e_params = f.expert_params(arch.hidden)
    chips = sh.tp * sh.ep
    groups = sh.expert_groups
    if groups > 1:  # whole experts: the step waits for the busiest group (tensor-sharded within it)
        experts, copies = b.busiest_group_load(f.n_routed, f.top_k, groups)
        share = chips / groups
    else:
        experts, copies = b.distinct_experts(f.n_routed, f.top_k), t_all * f.top_k
        share = chips
    flops = 2.0 * e_params * copies / share
    dim = f.latent_size or arch.hidden
    byt = (experts * e_params * pp.expert_weight_bytes + copies * 4 * dim * pp.act_bytes) / share
    m_rows = copies / np.maximum(experts, 1e-9)
    ops.append(Op("moe.experts", "gemm", flops, byt, m_rows, count))
    return ops


def layer_ops(layer: LayerSpec, arch: ModelArch, b: StepShape, sh: Sharding, pp: PrecisionPlan, count: int) -> list[Op]:
    ops: list[Op] = []
    if isinstance(layer.mixer, AttentionSpec):
        ops += attention_ops(layer.mixer, arch, b, sh, pp, count)
    elif isinstance(layer.mixer, MambaSpec):
        ops += mamba_ops(layer.mixer, arch, b, sh, pp, count)
    if layer.ffn is not None:
        ops += ffn_ops(layer.ffn, arch, b, sh, pp, count)
    tokens = b.tokens / sh.ep
    ops.append(Op("elementwise", "memory", 0.0 * tokens, tokens * arch.hidden * pp.act_bytes * ELEMENTWISE_PASSES,
                  None, count))
    return ops


def model_ops(arch: ModelArch, b: StepShape | Batch, sh: Sharding, pp: PrecisionPlan) -> list[Op]:
    """All ops of one step of the whole model (every layer group once, with its count), plus the
    embedding gather and the LM head (logits for the last new token of each sequence only)."""
    b = _as_shape(b, model_windows(arch))
    ops: list[Op] = []
    for layer, count in arch.layer_groups():
        ops += layer_ops(layer, arch, b, sh, pp, count)
    tokens = b.tokens / sh.ep
    ops.append(Op("embedding", "memory", 0.0 * tokens, tokens * arch.hidden * pp.weight_bytes, None, 1))
    ops.append(_gemm("lm_head", arch.vocab * arch.hidden, b.seqs / sh.ep, sh.tp, pp.weight_bytes, pp.act_bytes,
                     arch.hidden, 1))
    return ops


def comm_volumes(arch: ModelArch, b: StepShape, sh: Sharding, pp: PrecisionPlan, imbalance=1.0) -> dict[str, np.ndarray]:
    """Collective messages of one step per chip, for the busiest attention rank (`imbalance`,
    see dp_rank_imbalance); sizes in bytes, counts per step over all layers.

    tp_message_bytes: the rank's hidden states, the message of each TP collective;
    tp_attention_count: all-reduces after the mixers (Megatron TP; none at tp 1);
    tp_ffn_allreduce_count: all-reduces after dense FFNs, and after MoE blocks whose experts are
      tensor-sharded (ep 1);
    tp_ffn_allgather_count: with expert parallelism (ep > 1) at tp > 1 each chip of a rank
      dispatches 1/tp of the rank's tokens and gathers the combined outputs back (all-gather);
    ep_send_bytes: MoE dispatch (= combine) bytes each chip sends per phase: its tokens' top-k
      copies, less the share for experts on the chip itself; ep_phase_count: 2 per MoE layer;
    pp_bytes: hidden states crossing the pipeline-stage boundaries."""
    tokens = b.tokens / sh.ep * imbalance
    message = tokens * arch.hidden * pp.act_bytes
    groups = arch.layer_groups()
    n_mixers = sum(count for layer, count in groups if layer.mixer is not None)
    n_moe = sum(count for layer, count in groups if isinstance(layer.ffn, MoESpec))
    n_dense = sum(count for layer, count in groups if layer.ffn is not None) - n_moe
    top_k = max((layer.ffn.top_k for layer, _ in groups if isinstance(layer.ffn, MoESpec)), default=0)
    tp, ep = sh.tp > 1, sh.ep > 1
    expert_chips = sh.tp * sh.ep
    return {
        "tp_message_bytes": message,
        "tp_attention_count": float(n_mixers if tp else 0),
        "tp_ffn_allreduce_count": float(n_dense + (0 if ep else n_moe) if tp else 0),
        "tp_ffn_allgather_count": float(n_moe if tp and ep else 0),
        "ep_send_bytes": message / sh.tp * top_k * (expert_chips - 1) / expert_chips if ep else 0.0 * message,
        "ep_phase_count": float(2 * n_moe if ep else 0),
        "pp_bytes": message * (sh.pp - 1),
        "pp_count": float(sh.pp - 1),
    }
