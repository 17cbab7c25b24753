"""Model catalog: parse Hugging Face ``config.json`` files into a compact architecture description.

The catalog index is ``data/models/models.yaml``; each entry points at a vendored ``config.json``
(copied from the project's shared ``reference/configs``). :func:`load_model` accepts a catalog name, an alias,
an HF repo id (case-insensitive, ``/`` or ``__``), or a path to a ``config.json`` (or a folder holding one).

Parameter counting conventions (weights only):

* ``total_params`` = input embedding + every decoder layer + final norm + lm_head (unless tied).
  Text model only (no vision tower), multi-token-prediction (MTP) modules excluded.
* ``active_params`` = per-token active weights *excluding the input embedding* (the OpenAI / NVIDIA
  convention); keeps the lm_head (also when it is tied to the embedding, because the shared matrix is
  read as the lm_head for every token). MoE layers count top-k routed experts + shared experts +
  router + latent projections. For dense untied models it equals ``total_params - embedding_params``.
  Meta, Mistral, Qwen and DeepSeek quote active figures *with* the embedding; add
  ``embedding_params`` to compare with those.
* ``LayerSpec.n_norms`` counts norm *vectors* of size ``hidden``: an RMSNorm is 1, a LayerNorm with
  bias is 2 (GPT-J, Falcon).

These are plain frozen dataclasses (not pydantic): the cost model touches them in tight loops.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from infersim.errors import InputError, shown, unknown_name
from infersim.inputs import os_problem, path_kind

DATA_DIR = Path(__file__).resolve().parent / "data" / "models"
INDEX_FILE = DATA_DIR / "models.yaml"

FAMILIES = ("dense", "moe", "mla-moe", "hybrid-mamba-moe", "hybrid-mamba", "nas-dense")


# ----------------------------------------------------------------------------------------------
# Architecture dataclasses
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionSpec:
    kind: str  # "gqa" (MHA/GQA/MQA) or "mla"
    n_heads: int
    n_kv_heads: int
    head_dim: int  # q/k head dim (for MLA: qk_nope + qk_rope)
    v_head_dim: int
    window: int | None = None  # sliding-window size in tokens; None = full attention
    chunk: int | None = None  # chunked local attention size (Llama 4); None = none
    q_lora_rank: int | None = None  # MLA
    kv_lora_rank: int | None = None  # MLA
    qk_rope_head_dim: int | None = None  # MLA
    bias: bool = False  # q/k/v/o projection biases
    sinks: bool = False  # learned attention sinks, one scalar per head (gpt-oss)
    qk_norm: bool = False  # per-head-dim RMSNorm weights on q and k (Qwen3)

    def n_params(self, hidden: int) -> int:
        """Weights of the q/k/v/o projections (+ MLA low-rank projections and norms, biases, sinks, q/k norms)."""
        nh, hd, vhd = self.n_heads, self.head_dim, self.v_head_dim
        if self.kind == "mla":
            kvr = self.kv_lora_rank or 0
            rope = self.qk_rope_head_dim or 0
            nope = hd - rope
            if self.q_lora_rank:
                q = hidden * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * nh * hd
            else:
                q = hidden * nh * hd
            kv = hidden * (kvr + rope) + kvr + kvr * nh * (nope + vhd)
            p = q + kv + nh * vhd * hidden
            if self.bias:
                p += hidden
        else:
            nkv = self.n_kv_heads
            p = hidden * (nh * hd + nkv * hd + nkv * vhd) + nh * vhd * hidden
            if self.bias:
                p += nh * hd + nkv * hd + nkv * vhd + hidden
        if self.sinks:
            p += nh
        if self.qk_norm:
            p += 2 * hd
        return p

    def kv_cache_elems_per_token(self) -> int:
        """K+V elements stored per token for this layer (MLA stores the compressed latent + rope key)."""
        if self.kind == "mla":
            return (self.kv_lora_rank or 0) + (self.qk_rope_head_dim or 0)
        return self.n_kv_heads * (self.head_dim + self.v_head_dim)

    def kv_tokens(self, seq_len: int) -> int:
        """Tokens whose K/V this layer must keep for a sequence of ``seq_len`` tokens."""
        limit = self.window or self.chunk
        return min(seq_len, limit) if limit else seq_len


@dataclass(frozen=True)
class MambaSpec:
    """Mamba-2 mixer (NemotronH layout)."""

    n_heads: int
    head_dim: int
    state_size: int
    n_groups: int
    conv_kernel: int
    d_inner: int
    conv_bias: bool = True
    proj_bias: bool = False

    @property
    def conv_dim(self) -> int:
        return self.d_inner + 2 * self.n_groups * self.state_size

    def n_params(self, hidden: int) -> int:
        """in_proj (z, x, B, C, dt) + conv1d + dt_bias + A_log + D + gated norm + out_proj."""
        in_out = 2 * self.d_inner + 2 * self.n_groups * self.state_size + self.n_heads
        p = hidden * in_out  # in_proj
        p += self.conv_dim * self.conv_kernel + (self.conv_dim if self.conv_bias else 0)
        p += 3 * self.n_heads  # dt_bias, A_log, D
        p += self.d_inner  # gated RMSNorm
        p += self.d_inner * hidden  # out_proj
        if self.proj_bias:
            p += in_out + hidden
        return p

    def state_elems_per_seq(self) -> int:
        """SSM state + convolution state elements held per sequence."""
        return self.n_heads * self.head_dim * self.state_size + self.conv_dim * (self.conv_kernel - 1)


@dataclass(frozen=True)
class DenseFFNSpec:
    intermediate: int
    gated: bool  # SwiGLU: 3 matrices; relu2 / gelu: 2
    bias: bool = False

    def n_params(self, hidden: int) -> int:
        mats = 3 if self.gated else 2
        p = mats * hidden * self.intermediate
        if self.bias:
            p += (2 if self.gated else 1) * self.intermediate + hidden
        return p


@dataclass(frozen=True)
class MoESpec:
    n_routed: int
    top_k: int
    expert_intermediate: int
    gated: bool
    n_shared: int = 0
    shared_intermediate: int = 0  # intermediate size of each shared expert
    latent_size: int | None = None  # Nemotron LatentMoE: routed experts run in this dim
    bias: bool = False  # expert biases (gpt-oss)
    router_bias: bool = False  # router bias / e_score_correction_bias (E extra params)

    def expert_params(self, hidden: int) -> int:
        """One routed expert. With a latent MoE the expert maps latent -> latent."""
        d = self.latent_size or hidden
        p = (3 if self.gated else 2) * d * self.expert_intermediate
        if self.bias:
            p += (2 if self.gated else 1) * self.expert_intermediate + d
        return p

    def shared_params(self, hidden: int) -> int:
        if not self.n_shared:
            return 0
        return self.n_shared * (3 if self.gated else 2) * hidden * self.shared_intermediate

    def router_params(self, hidden: int) -> int:
        return hidden * self.n_routed + (self.n_routed if self.router_bias else 0)

    def latent_proj_params(self, hidden: int) -> int:
        """hidden -> latent down-projection and latent -> hidden up-projection, shared by all experts."""
        return 2 * hidden * self.latent_size if self.latent_size else 0

    def _always_on(self, hidden: int) -> int:
        return self.shared_params(hidden) + self.router_params(hidden) + self.latent_proj_params(hidden)

    def n_params_total(self, hidden: int) -> int:
        return self.n_routed * self.expert_params(hidden) + self._always_on(hidden)

    def n_params_active(self, hidden: int) -> int:
        return self.top_k * self.expert_params(hidden) + self._always_on(hidden)


@dataclass(frozen=True)
class LayerSpec:
    mixer: AttentionSpec | MambaSpec | None
    ffn: DenseFFNSpec | MoESpec | None
    n_norms: int  # norm vectors of size hidden in this layer (RMSNorm = 1, LayerNorm with bias = 2)

    def n_params(self, hidden: int) -> int:
        p = self.n_norms * hidden
        if self.mixer is not None:
            p += self.mixer.n_params(hidden)
        if isinstance(self.ffn, MoESpec):
            p += self.ffn.n_params_total(hidden)
        elif self.ffn is not None:
            p += self.ffn.n_params(hidden)
        return p

    def n_params_active(self, hidden: int) -> int:
        p = self.n_norms * hidden
        if self.mixer is not None:
            p += self.mixer.n_params(hidden)
        if isinstance(self.ffn, MoESpec):
            p += self.ffn.n_params_active(hidden)
        elif self.ffn is not None:
            p += self.ffn.n_params(hidden)
        return p


@dataclass(frozen=True)
class ModelArch:
    name: str
    hf_id: str
    family: str
    hidden: int
    vocab: int
    tie_embeddings: bool
    layers: tuple[LayerSpec, ...]
    max_context: int
    native_dtype: str  # "bf16" / "fp16" / "fp32" / "fp8"
    quantization: str | None  # e.g. "mxfp4-experts" (gpt-oss), "fp8-block" (DeepSeek)
    mtp_layers: int  # multi-token-prediction layers (not counted in params)
    published_total_params: float | None
    published_active_params: float | None
    lm_head_bias: bool = False
    final_norm_vectors: int = 1  # 2 for a LayerNorm with bias

    # -- structure ------------------------------------------------------------------------------
    @cached_property
    def _groups(self) -> tuple[tuple[LayerSpec, int], ...]:
        counts: dict[LayerSpec, int] = {}
        for layer in self.layers:
            counts[layer] = counts.get(layer, 0) + 1
        return tuple(counts.items())

    def layer_groups(self) -> list[tuple[LayerSpec, int]]:
        """Distinct layers with their counts, in order of first appearance."""
        return list(self._groups)

    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @cached_property
    def n_attention_layers(self) -> int:
        return sum(n for l, n in self._groups if isinstance(l.mixer, AttentionSpec))

    @cached_property
    def n_mamba_layers(self) -> int:
        return sum(n for l, n in self._groups if isinstance(l.mixer, MambaSpec))

    @cached_property
    def n_moe_layers(self) -> int:
        return sum(n for l, n in self._groups if isinstance(l.ffn, MoESpec))

    @cached_property
    def n_dense_ffn_layers(self) -> int:
        return sum(n for l, n in self._groups if isinstance(l.ffn, DenseFFNSpec))

    def layer_kinds(self) -> dict[str, int]:
        return {
            "attention": self.n_attention_layers,
            "mamba": self.n_mamba_layers,
            "moe": self.n_moe_layers,
            "dense_ffn": self.n_dense_ffn_layers,
        }

    # -- parameters -----------------------------------------------------------------------------
    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden

    @property
    def lm_head_params(self) -> int:
        """lm_head weights as computed per token (the shared matrix when tied)."""
        return self.vocab * self.hidden + (self.vocab if self.lm_head_bias else 0)

    @cached_property
    def total_params(self) -> int:
        p = self.embedding_params + self.final_norm_vectors * self.hidden
        p += sum(l.n_params(self.hidden) * n for l, n in self._groups)
        if not self.tie_embeddings:
            p += self.lm_head_params
        elif self.lm_head_bias:
            p += self.vocab
        return p

    @cached_property
    def active_params(self) -> int:
        """Per-token active weights excluding the input embedding (keeps lm_head)."""
        p = self.final_norm_vectors * self.hidden + self.lm_head_params
        p += sum(l.n_params_active(self.hidden) * n for l, n in self._groups)
        return p

    # -- memory helpers -------------------------------------------------------------------------
    @cached_property
    def kv_cache_elems_per_token(self) -> int:
        """K/V elements per token summed over attention layers, ignoring windows/chunks."""
        return sum(l.mixer.kv_cache_elems_per_token() * n for l, n in self._groups
                   if isinstance(l.mixer, AttentionSpec))

    def kv_cache_elems(self, seq_len: int) -> int:
        """K/V elements one sequence of ``seq_len`` tokens holds, honouring sliding windows and chunks."""
        return sum(l.mixer.kv_cache_elems_per_token() * l.mixer.kv_tokens(seq_len) * n
                   for l, n in self._groups if isinstance(l.mixer, AttentionSpec))

    @cached_property
    def state_elems_per_seq(self) -> int:
        """Mamba SSM + conv state elements per sequence, summed over Mamba layers."""
        return sum(l.mixer.state_elems_per_seq() * n for l, n in self._groups
                   if isinstance(l.mixer, MambaSpec))


# ----------------------------------------------------------------------------------------------
# config.json parsing
# ----------------------------------------------------------------------------------------------


class _Cfg:
    """Dict wrapper whose lookups raise one-line InputErrors naming the missing field."""

    def __init__(self, d: dict, label: str):
        self.d = d
        self.label = label

    def has(self, key: str) -> bool:
        return self.d.get(key) is not None

    def get(self, key: str, default: Any = None) -> Any:
        v = self.d.get(key)
        return default if v is None else v

    def _err(self, msg: str) -> InputError:
        return InputError(f"config.json for {self.label}: {msg}")

    def req(self, key: str, purpose: str) -> int:
        """A required size: present, an integer, at least 1 (a zero-sized model has nothing to run)."""
        if self.d.get(key) is None:
            raise self._err(f"missing field '{key}' (needed for {purpose}); add it to the config.json")
        v = self.as_int(key, self.d[key])
        if v == 0:
            raise self._err(f"field '{key}' is 0; it must be at least 1 (it sets {purpose}); fix the config.json")
        return v

    def opt_int(self, key: str, default: int | None = None) -> int | None:
        v = self.d.get(key)
        return default if v is None else self.as_int(key, v)

    def as_int(self, key: str, v: Any) -> int:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and not v.is_integer()):
            raise self._err(f"field '{key}' must be an integer, got {v!r}; fix the config.json")
        if v < 0:
            raise self._err(f"field '{key}' must not be negative, got {v!r}; fix the config.json")
        return int(v)

    def flag(self, key: str, default: bool) -> bool:
        v = self.d.get(key)
        return default if v is None else bool(v)


_DTYPES = {"bfloat16": "bf16", "bf16": "bf16", "float16": "fp16", "fp16": "fp16", "half": "fp16",
           "float32": "fp32", "fp32": "fp32", "float": "fp32"}


def _dtype_and_quant(cfg: dict, text: dict) -> tuple[str, str | None]:
    raw = cfg.get("torch_dtype") or cfg.get("dtype") or text.get("torch_dtype") or text.get("dtype") or "bfloat16"
    native = _DTYPES.get(str(raw).lower(), "bf16")
    q = cfg.get("quantization_config") or text.get("quantization_config")
    if not isinstance(q, dict):
        return native, None
    method = str(q.get("quant_method", "")).lower()
    algo = str(q.get("quant_algo", "")).lower()
    if method == "fp8" or algo.startswith("fp8"):
        return "fp8", "fp8-block" if q.get("weight_block_size") else "fp8"
    if method == "mxfp4":
        skip = " ".join(q.get("modules_to_not_convert") or [])
        return native, "mxfp4-experts" if "self_attn" in skip else "mxfp4"
    return native, (method or algo or None)


def _windows(c: _Cfg, n_layers: int, model_type: str) -> list[int | None]:
    """Per-layer sliding-window size (None = full attention)."""
    sw = c.opt_int("sliding_window")
    types = c.get("layer_types")
    if types:
        if len(types) != n_layers:
            raise c._err(f"'layer_types' has {len(types)} entries but the model has {n_layers} layers; fix the config.json")
        if any(t == "sliding_attention" for t in types) and not sw:
            raise c._err("missing field 'sliding_window' (needed for the sliding_attention layers); add it to the config.json")
        return [sw if t == "sliding_attention" else None for t in types]
    if not sw:
        return [None] * n_layers
    if model_type.startswith("qwen"):
        if not c.flag("use_sliding_window", False):
            return [None] * n_layers
        mwl = c.opt_int("max_window_layers", n_layers)
        return [sw if i >= mwl else None for i in range(n_layers)]
    return [sw] * n_layers  # mistral / mixtral style: every layer


def _gqa(c: _Cfg, hidden: int, *, kv_default: bool = True, qk_norm: bool = False, sinks: bool = False,
         window: int | None = None, chunk: int | None = None) -> AttentionSpec:
    nh = c.req("num_attention_heads", "the attention shape")
    if kv_default:
        nkv = c.opt_int("num_key_value_heads", nh)
    else:
        nkv = c.req("num_key_value_heads", "the KV-cache size")
    if nh == 0 or nkv == 0:
        raise c._err("'num_attention_heads' and 'num_key_value_heads' must be positive; fix the config.json")
    hd = c.opt_int("head_dim") or hidden // nh
    return AttentionSpec("gqa", nh, nkv, hd, hd, window=window, chunk=chunk,
                         bias=c.flag("attention_bias", False), sinks=sinks, qk_norm=qk_norm)


def _parse_llama_like(c: _Cfg, mt: str) -> dict:
    H = c.req("hidden_size", "the model width")
    L = c.req("num_hidden_layers", "the layer count")
    I = c.req("intermediate_size", "the MLP size")
    ffn = DenseFFNSpec(I, gated=True, bias=c.flag("mlp_bias", False))
    wins = _windows(c, L, mt)
    layers = tuple(LayerSpec(_gqa(c, H, qk_norm=(mt == "qwen3"), window=w), ffn, 2) for w in wins)
    return dict(hidden=H, layers=layers, family="dense")


def _parse_mixtral(c: _Cfg, mt: str) -> dict:
    H = c.req("hidden_size", "the model width")
    L = c.req("num_hidden_layers", "the layer count")
    moe = MoESpec(c.req("num_local_experts", "the expert count"), c.req("num_experts_per_tok", "top-k routing"),
                  c.req("intermediate_size", "the expert size"), gated=True)
    layers = tuple(LayerSpec(_gqa(c, H, window=w), moe, 2) for w in _windows(c, L, mt))
    return dict(hidden=H, layers=layers, family="moe")


def _parse_qwen3_moe(c: _Cfg, mt: str) -> dict:
    H = c.req("hidden_size", "the model width")
    L = c.req("num_hidden_layers", "the layer count")
    n_exp = c.req("num_experts", "the expert count")
    step = c.opt_int("decoder_sparse_step", 1) or 1
    dense_only = set(c.get("mlp_only_layers", []) or [])
    moe = MoESpec(n_exp, c.req("num_experts_per_tok", "top-k routing"),
                  c.req("moe_intermediate_size", "the expert size"), gated=True)
    dense = None
    layers = []
    for i, w in enumerate(_windows(c, L, mt)):
        if i not in dense_only and n_exp > 0 and (i + 1) % step == 0:
            ffn: DenseFFNSpec | MoESpec = moe
        else:
            dense = dense or DenseFFNSpec(c.req("intermediate_size", "the dense MLP layers"), gated=True)
            ffn = dense
        layers.append(LayerSpec(_gqa(c, H, qk_norm=True, window=w), ffn, 2))
    return dict(hidden=H, layers=tuple(layers), family="moe")


def _parse_deepseek(c: _Cfg, mt: str) -> dict:
    H = c.req("hidden_size", "the model width")
    L = c.req("num_hidden_layers", "the layer count")
    nh = c.req("num_attention_heads", "the attention shape")
    rope = c.req("qk_rope_head_dim", "MLA attention")
    nope = c.req("qk_nope_head_dim", "MLA attention")
    attn = AttentionSpec("mla", nh, nh, nope + rope, c.req("v_head_dim", "MLA attention"),
                         q_lora_rank=c.opt_int("q_lora_rank"), kv_lora_rank=c.req("kv_lora_rank", "MLA attention"),
                         qk_rope_head_dim=rope, bias=c.flag("attention_bias", False))
    n_routed = c.opt_int("n_routed_experts", 0)
    first_k = c.opt_int("first_k_dense_replace", 0)
    freq = c.opt_int("moe_layer_freq", 1) or 1
    moe = None
    if n_routed:
        moe_i = c.req("moe_intermediate_size", "the expert size")
        moe = MoESpec(n_routed, c.req("num_experts_per_tok", "top-k routing"), moe_i, gated=True,
                      n_shared=c.opt_int("n_shared_experts", 0), shared_intermediate=moe_i,
                      router_bias=(c.get("topk_method") == "noaux_tc"))
    dense = None
    layers = []
    for i in range(L):
        if moe is not None and i >= first_k and i % freq == 0:
            layers.append(LayerSpec(attn, moe, 2))
        else:
            dense = dense or DenseFFNSpec(c.req("intermediate_size", "the dense MLP layers"), gated=True)
            layers.append(LayerSpec(attn, dense, 2))
    return dict(hidden=H, layers=tuple(layers), family="mla-moe" if moe else "dense",
                mtp_layers=c.opt_int("num_nextn_predict_layers", 0))


def _parse_gpt_oss(c: _Cfg, mt: str) -> dict:
    H = c.req("hidden_size", "the model width")
    L = c.req("num_hidden_layers", "the layer count")
    top_k = c.opt_int("num_experts_per_tok") or c.req("experts_per_token", "top-k routing")
    moe = MoESpec(c.req("num_local_experts", "the expert count"), top_k,
                  c.req("intermediate_size", "the expert size"), gated=True, bias=True, router_bias=True)
    layers = tuple(LayerSpec(_gqa(c, H, kv_default=False, sinks=True, window=w), moe, 2)
                   for w in _windows(c, L, mt))
    return dict(hidden=H, layers=layers, family="moe")


def _parse_llama4(c: _Cfg, mt: str) -> dict:
    H = c.req("hidden_size", "the model width")
    L = c.req("num_hidden_layers", "the layer count")
    chunk = c.opt_int("attention_chunk_size")
    nope = c.get("no_rope_layers") or [int((i + 1) % 4 != 0) for i in range(L)]  # HF default: every 4th layer NoPE
    if len(nope) != L:
        raise c._err(f"'no_rope_layers' has {len(nope)} entries but the model has {L} layers; fix the config.json")
    n_exp = c.opt_int("num_local_experts", 0)
    moe_layers = c.get("moe_layers")
    if moe_layers is None:
        step = c.opt_int("interleave_moe_layer_step", 1) or 1
        moe_layers = list(range(step - 1, L, step)) if n_exp else []
    moe_layers = set(moe_layers)
    moe = dense = None
    if moe_layers:
        I = c.req("intermediate_size", "the expert size")
        moe = MoESpec(n_exp, c.req("num_experts_per_tok", "top-k routing"), I, gated=True,
                      n_shared=1, shared_intermediate=I)
    if len(moe_layers) < L:
        dense = DenseFFNSpec(c.opt_int("intermediate_size_mlp") or c.req("intermediate_size", "the dense MLP"),
                             gated=True)
    # Llama4's QK-norm is a weightless L2 norm: no parameters.
    att_chunked = _gqa(c, H, chunk=chunk)
    att_global = _gqa(c, H)
    layers = tuple(LayerSpec(att_chunked if nope[i] else att_global, moe if i in moe_layers else dense, 2)
                   for i in range(L))
    return dict(hidden=H, layers=layers, family="moe" if moe else "dense")


_NEMO_KINDS = {"M": "mamba", "E": "moe", "*": "attention", "-": "mlp",
               "mamba": "mamba", "moe": "moe", "attention": "attention", "mlp": "mlp"}


def _parse_nemotron_h(c: _Cfg, mt: str) -> dict:
    H = c.req("hidden_size", "the model width")
    blocks = c.get("layers_block_type")
    pattern = c.get("hybrid_override_pattern")
    if blocks:
        raw = list(blocks)
        src = "layers_block_type"
    elif pattern:
        raw = list(pattern)
        src = "hybrid_override_pattern"
    else:
        raise c._err("missing field 'hybrid_override_pattern' or 'layers_block_type' (needed for the layer layout); "
                     "add one to the config.json")
    bad = sorted({str(k) for k in raw if k not in _NEMO_KINDS})
    if bad:
        raise c._err(f"'{src}' has unknown layer kinds {bad}; use M/E/*/- or mamba/moe/attention/mlp")
    kinds = [_NEMO_KINDS[k] for k in raw]
    L = c.opt_int("num_hidden_layers")
    if L is not None and L != len(kinds):
        raise c._err(f"'num_hidden_layers' is {L} but '{src}' describes {len(kinds)} layers; make them agree")
    specs: dict[str, Any] = {}
    if "mamba" in kinds:
        nh = c.req("mamba_num_heads", "the Mamba layers")
        hd = c.req("mamba_head_dim", "the Mamba layers")
        specs["mamba"] = MambaSpec(nh, hd, c.req("ssm_state_size", "the Mamba layers"),
                                   c.req("n_groups", "the Mamba layers"), c.req("conv_kernel", "the Mamba layers"),
                                   nh * hd, conv_bias=c.flag("use_conv_bias", True),
                                   proj_bias=c.flag("mamba_proj_bias", False))
    if "attention" in kinds:
        specs["attention"] = _gqa(c, H, kv_default=False)
    mlp_bias = c.flag("mlp_bias", False)
    if "moe" in kinds:
        specs["moe"] = MoESpec(c.req("n_routed_experts", "the MoE layers"), c.req("num_experts_per_tok", "the MoE layers"),
                               c.req("moe_intermediate_size", "the MoE layers"), gated=False,
                               n_shared=c.opt_int("n_shared_experts", 0),
                               shared_intermediate=c.opt_int("moe_shared_expert_intermediate_size", 0),
                               latent_size=c.opt_int("moe_latent_size"), bias=mlp_bias, router_bias=True)
    if "mlp" in kinds:
        specs["mlp"] = DenseFFNSpec(c.req("intermediate_size", "the MLP layers"), gated=False, bias=mlp_bias)
    layers = []
    for k in kinds:
        s = specs[k]
        if k in ("mamba", "attention"):
            layers.append(LayerSpec(s, None, 1))
        else:
            layers.append(LayerSpec(None, s, 1))
    mtp = c.opt_int("num_nextn_predict_layers", 0)
    if not mtp and (c.get("mtp_hybrid_override_pattern") or c.get("mtp_layers_block_type")):
        mtp = 1
    fam = "hybrid-mamba-moe" if "moe" in kinds else "hybrid-mamba"
    return dict(hidden=H, layers=tuple(layers), family=fam, mtp_layers=mtp)


def _roundup(x: int, m: int) -> int:
    return -(-x // m) * m


def _parse_nemotron_nas(c: _Cfg, mt: str) -> dict:
    H = c.req("hidden_size", "the model width")
    L = c.req("num_hidden_layers", "the layer count")
    nh = c.req("num_attention_heads", "the attention shape")
    hd = c.opt_int("head_dim") or H // nh
    blocks = c.get("block_configs")
    if not blocks:
        raise c._err("missing field 'block_configs' (needed for the per-layer NAS layout); add it to the config.json")
    if len(blocks) != L:
        raise c._err(f"'block_configs' has {len(blocks)} entries but 'num_hidden_layers' is {L}; make them agree")
    attn_bias = c.flag("attention_bias", False)
    mlp_bias = c.flag("mlp_bias", False)
    layers = []
    for i, b in enumerate(blocks):
        a, f = b.get("attention") or {}, b.get("ffn") or {}
        if a.get("replace_with_linear") or f.get("replace_with_linear"):
            raise c._err(f"block_configs[{i}] uses replace_with_linear, which is not supported; use a model without it")
        mixer = None
        if not a.get("no_op"):
            g = a.get("n_heads_in_group")
            if not g:
                raise c._err(f"block_configs[{i}].attention: missing field 'n_heads_in_group' "
                             "(needed for the KV head count); add it to the config.json")
            mixer = AttentionSpec("gqa", nh, nh // int(g), hd, hd, bias=attn_bias,
                                  window=a.get("window_length") or None)
        ffn = None
        if not f.get("no_op"):
            mult = f.get("ffn_mult")
            if mult is None:
                raise c._err(f"block_configs[{i}].ffn: missing field 'ffn_mult' (needed for the MLP size); "
                             "add it to the config.json")
            ffn = DenseFFNSpec(_roundup(int(2 * mult * H / 3), 256), gated=True, bias=mlp_bias)  # DeciLM rule
        layers.append(LayerSpec(mixer, ffn, int(mixer is not None) + int(ffn is not None)))
    return dict(hidden=H, layers=tuple(layers), family="nas-dense")


def _parse_gptj(c: _Cfg, mt: str) -> dict:
    H = c.req("n_embd", "the model width")
    nh = c.req("n_head", "the attention shape")
    L = c.req("n_layer", "the layer count")
    I = c.opt_int("n_inner") or 4 * H
    attn = AttentionSpec("gqa", nh, nh, H // nh, H // nh)  # q/k/v/out projections have no bias
    ffn = DenseFFNSpec(I, gated=False, bias=True)
    # Parallel attention + MLP sharing one LayerNorm (weight + bias = 2 vectors).
    return dict(hidden=H, layers=(LayerSpec(attn, ffn, 2),) * L, family="dense", lm_head_bias=True,
                final_norm_vectors=2, max_context=c.req("n_positions", "the context length"),
                tie_default=False)


def _parse_falcon(c: _Cfg, mt: str) -> dict:
    H = c.req("hidden_size", "the model width")
    nh = c.req("num_attention_heads", "the attention shape")
    L = c.req("num_hidden_layers", "the layer count")
    new_arch = c.flag("new_decoder_architecture", False)
    if new_arch:
        nkv = c.req("num_kv_heads", "the KV-cache size")
        n_ln = c.opt_int("num_ln_in_parallel_attn", 2)
    else:
        nkv = 1 if c.flag("multi_query", True) else nh
        n_ln = 1 if c.flag("parallel_attn", True) else 2
    bias = c.flag("bias", False)
    hd = c.opt_int("head_dim") or H // nh
    attn = AttentionSpec("gqa", nh, nkv, hd, hd, bias=bias)
    ffn = DenseFFNSpec(c.opt_int("ffn_hidden_size") or 4 * H, gated=False, bias=bias)
    return dict(hidden=H, layers=(LayerSpec(attn, ffn, 2 * n_ln),) * L, family="dense", final_norm_vectors=2,
                max_context=c.opt_int("max_position_embeddings", 2048), tie_default=True)


_PARSERS = {
    "llama": _parse_llama_like,
    "mistral": _parse_llama_like,
    "qwen3": _parse_llama_like,
    "mixtral": _parse_mixtral,
    "qwen3_moe": _parse_qwen3_moe,
    "deepseek_v3": _parse_deepseek,
    "deepseek_v2": _parse_deepseek,
    "gpt_oss": _parse_gpt_oss,
    "llama4": _parse_llama4,
    "llama4_text": _parse_llama4,
    "nemotron_h": _parse_nemotron_h,
    "nemotron-nas": _parse_nemotron_nas,
    "gptj": _parse_gptj,
    "falcon": _parse_falcon,
}
SUPPORTED_MODEL_TYPES = tuple(sorted(_PARSERS))


def parse_hf_config(cfg: dict, name: str = "", hf_id: str = "") -> ModelArch:
    """Parse an HF ``config.json`` dict into a :class:`ModelArch` (text model only)."""
    if not isinstance(cfg, dict):
        raise InputError(f"config.json for {name or hf_id or '<config>'}: expected a JSON object at the top level; "
                         "pass a Hugging Face config.json")
    label = name or hf_id or str(cfg.get("_name_or_path") or "<config>")
    mt = cfg.get("model_type")
    if not mt:
        raise InputError(f"config.json for {label}: missing field 'model_type' (needed to pick the architecture); "
                         "add it to the config.json")
    mt = str(mt)
    parser = _PARSERS.get(mt)
    if parser is None:
        raise InputError(f"config.json for {label}: unsupported model_type '{mt}'; supported: "
                         f"{', '.join(SUPPORTED_MODEL_TYPES)}")
    text = cfg
    if mt == "llama4":
        text = cfg.get("text_config")
        if not isinstance(text, dict):
            raise InputError(f"config.json for {label}: missing field 'text_config' (needed for the llama4 text "
                             "model); add it to the config.json")
    c = _Cfg(text, label)
    out = parser(c, mt)
    if not out["layers"]:  # layer counts are checked as read; this also covers layouts given as lists
        raise c._err("the model has no layers (num_hidden_layers / layer list is empty); fix the config.json")
    tie_default = out.pop("tie_default", False)
    tie = cfg.get("tie_word_embeddings", text.get("tie_word_embeddings"))
    tie = tie_default if tie is None else bool(tie)
    max_ctx = out.pop("max_context", None)
    if max_ctx is None:
        max_ctx = c.req("max_position_embeddings", "the context length")
    native, quant = _dtype_and_quant(cfg, text)
    return ModelArch(
        name=name, hf_id=hf_id, family=out.pop("family"), hidden=out.pop("hidden"),
        vocab=c.req("vocab_size", "the embedding and lm_head"), tie_embeddings=tie, layers=out.pop("layers"),
        max_context=max_ctx, native_dtype=native, quantization=quant, mtp_layers=out.pop("mtp_layers", 0),
        published_total_params=None, published_active_params=None, **out,
    )


# ----------------------------------------------------------------------------------------------
# Catalog
# ----------------------------------------------------------------------------------------------


def _read_json(path: Path, label: str) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read {shown(path)}: {os_problem(e)}; check the path") from None
    except UnicodeDecodeError:
        raise InputError(f"{shown(path)} is not UTF-8 text; pass a Hugging Face config.json") from None
    try:
        return json.loads(text)  # accepts the non-standard Infinity/NaN tokens some configs carry
    except json.JSONDecodeError as e:
        raise InputError(f"malformed JSON in {shown(path)} at line {e.lineno}, column {e.colno}: {e.msg}; "
                         f"fix the file ({label})") from None


@functools.lru_cache(maxsize=1)
def _index() -> tuple[tuple[dict, ...], dict[str, int]]:
    try:
        loader = yaml.CSafeLoader  # type: ignore[attr-defined]
    except AttributeError:  # pragma: no cover
        loader = yaml.SafeLoader
    with open(INDEX_FILE, encoding="utf-8") as f:
        entries = yaml.load(f, Loader=loader)
    lookup: dict[str, int] = {}
    for i, e in enumerate(entries):
        keys = {e["name"], e["hf_id"], *(e.get("aliases") or [])}
        for k in keys:
            k = k.lower()
            if k in lookup and lookup[k] != i:
                raise RuntimeError(f"models.yaml: '{k}' names both {entries[lookup[k]]['name']} and {e['name']}")
            lookup[k] = i
    return tuple(entries), lookup


def catalog_entries() -> list[dict]:
    """The raw models.yaml entries (copies)."""
    return [dict(e) for e in _index()[0]]


def catalog_names() -> list[str]:
    return [e["name"] for e in _index()[0]]


@functools.lru_cache(maxsize=None)
def _load_catalog(idx: int) -> ModelArch:
    e = _index()[0][idx]
    path = DATA_DIR / e["config"] / "config.json"
    arch = parse_hf_config(_read_json(path, e["name"]), name=e["name"], hf_id=e["hf_id"])
    return replace(arch, family=e.get("family") or arch.family,
                   published_total_params=_f(e.get("published_total_params")),
                   published_active_params=_f(e.get("published_active_params")))


def _f(v: Any) -> float | None:
    return None if v is None else float(v)


def resolve_name(spec: str) -> str | None:
    """Catalog name for a name / alias / HF id (case-insensitive, '/' or '__'), or None."""
    entries, lookup = _index()
    key = spec.strip().lower()
    idx = lookup.get(key)
    if idx is None and "__" in key:
        idx = lookup.get(key.replace("__", "/", 1))
    return None if idx is None else entries[idx]["name"]


def load_model(spec: str) -> ModelArch:
    """Load a model by catalog name, alias, HF id, or path to a config.json (or a folder holding one)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError("empty model name; pass a catalog name (see `infersim models`), an HF id or a config.json path")
    entries, lookup = _index()
    key = spec.strip().lower()
    idx = lookup.get(key)
    if idx is None and "__" in key:
        idx = lookup.get(key.replace("__", "/", 1))
    if idx is not None:
        return _load_catalog(idx)
    p = Path(spec).expanduser()
    try:
        kind = path_kind(p, "--model")
    except InputError:  # e.g. a name longer than the file system allows: only a path deserves that answer
        if "/" in spec or spec.endswith(".json"):
            raise
        kind = None
    if kind == "dir":
        if path_kind(p / "config.json", "--model") != "file":
            raise InputError(f"folder {shown(p)} holds no config.json; pass the path of a Hugging Face config.json")
        p, kind = p / "config.json", "file"
    if kind == "file":
        cfg = _read_json(p, spec)
        name = p.parent.name if p.name == "config.json" else p.stem
        hf_id = str(cfg.get("_name_or_path") or "") if isinstance(cfg, dict) else ""
        return parse_hf_config(cfg, name=name or str(p), hf_id=hf_id)
    if spec.endswith(".json"):
        raise InputError(f"config file '{shown(spec)}' not found; check the path")
    known = [e["name"] for e in entries] + [e["hf_id"] for e in entries]
    raise unknown_name("model", spec, known,
                       hint=" (list them with `infersim models`, or pass a path to a config.json)")


def list_models() -> list[dict]:
    """One summary dict per catalog entry."""
    out = []
    for i, e in enumerate(_index()[0]):
        a = _load_catalog(i)
        out.append({
            "name": a.name,
            "hf_id": a.hf_id,
            "family": a.family,
            "total_params": a.total_params,
            "active_params": a.active_params,
            "layers": a.n_layers,
            "layer_kinds": a.layer_kinds(),
            "max_context": a.max_context,
            "native_dtype": a.native_dtype,
            "quantization": a.quantization,
            "published_total_params": a.published_total_params,
            "published_active_params": a.published_active_params,
            "aliases": list(e.get("aliases") or []),
        })
    return out
