"""The parts of a GPU engine step outside the op rooflines and collectives: kernel launches (or
CUDA-graph replay) and the engine's host work, each tagged attention-side, FFN-side or step-level.

Kernels per layer come from the layer's kinds (`layer_kernels`), counted as a serving engine with
fused norms runs them (not one kernel per op by fiat):
- every block (mixer, FFN) starts with one fused residual-add + RMSNorm kernel;
- GQA/MHA attention: QKV GEMM, RoPE, KV-cache write, attention, output GEMM = 5 (+1 for q/k norms);
- MLA: TRT-LLM's min-latency module list for DeepSeek-R1 (blog1, serving_facts 2.1): fused-A GEMM,
  2 RMSNorms, UQ_QR GEMM, UK batched GEMM, concat-KV + RoPE, attention, UV GEMM, WO GEMM = 9;
- Mamba-2: in-projection, causal conv1d, state update / chunked scan, gated RMSNorm, out-projection = 5;
- dense FFN: gate-up GEMM, activation, down GEMM = 3;
- MoE: router GEMM, top-k, token permute, expert GEMM 1, activation, expert GEMM 2, unpermute-reduce
  = 7, +3 for shared experts (one fused MLP), +2 for latent projections (Nemotron LatentMoE);
- per step: embedding gather, final norm, LM head, sampling (2) = 5 (step-level).
Collective kernels are timed with the collectives (costmodel.execution.collective_time).

A kernel in a replayed CUDA graph costs the chip's GPU-side gap (calibration kernel_s, from the H100
graph-mode decode steps); launched eagerly it also costs the engine's exposed launch time
(eager_launch_s). Decode and verification steps of at most graph_max_batch sequences replay a
graph (`graphed`); prefill and mixed steps and larger batches run eagerly. The engine's host work (host_step_s + host_seq_s x
sequences, times the fitted host_scale; launch costs are measured and not scaled) overlaps the GPU timeline when the engine has an overlap
scheduler (step = max(GPU, host)) and adds to it otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from infersim.catalog.engines import EngineSpec, engine as engine_named
from infersim.catalog.models import AttentionSpec, DenseFFNSpec, LayerSpec, MambaSpec, ModelArch, MoESpec

SIDES = ("attention", "ffn", "step")
NORM_KERNELS = 1          # fused residual-add + RMSNorm before each block
GQA_KERNELS = 5
QK_NORM_KERNELS = 1
MLA_KERNELS = 9
MAMBA_KERNELS = 5
DENSE_FFN_KERNELS = 3
MOE_KERNELS = 7
MOE_SHARED_KERNELS = 3
MOE_LATENT_KERNELS = 2
STEP_KERNELS = 5          # embedding, final norm, LM head, 2 sampling kernels
# Engines capture speculative verification steps (each sequence adds its k drafted tokens + 1) in
# CUDA graphs too (SGLang's target-verify graphs, TensorRT-LLM's MTP generation steps); a step
# whose extra tokens stay within this many per sequence counts as a decode step for graphing.
GRAPH_TOKENS_PER_SEQ = 8


def mixer_kernels(mixer) -> int:
    """Kernels of one attention or Mamba block, its norm included (attention side)."""
    if mixer is None:
        return 0
    if isinstance(mixer, MambaSpec):
        return NORM_KERNELS + MAMBA_KERNELS
    assert isinstance(mixer, AttentionSpec)
    if mixer.kind == "mla":
        return NORM_KERNELS + MLA_KERNELS
    return NORM_KERNELS + GQA_KERNELS + (QK_NORM_KERNELS if mixer.qk_norm else 0)


def ffn_kernels(ffn) -> int:
    """Kernels of one dense FFN or MoE block, its norm included (FFN side)."""
    if ffn is None:
        return 0
    if isinstance(ffn, DenseFFNSpec):
        return NORM_KERNELS + DENSE_FFN_KERNELS
    assert isinstance(ffn, MoESpec)
    return (NORM_KERNELS + MOE_KERNELS + (MOE_SHARED_KERNELS if ffn.n_shared else 0)
            + (MOE_LATENT_KERNELS if ffn.latent_size else 0))


def layer_kernels(layer: LayerSpec) -> dict[str, int]:
    return {"attention": mixer_kernels(layer.mixer), "ffn": ffn_kernels(layer.ffn)}


def model_kernels(arch: ModelArch) -> dict[str, float]:
    """Kernels of one step of the whole model by side: attention (mixers), ffn (dense FFN / MoE),
    step (embedding, LM head, sampling; none when the model has no vocabulary, e.g. an FFN part)."""
    out = {"attention": 0.0, "ffn": 0.0, "step": float(STEP_KERNELS if arch.vocab else 0)}
    for layer, count in arch.layer_groups():
        for side, k in layer_kernels(layer).items():
            out[side] += k * count
    return out


def host_seconds(engine: EngineSpec, host_scale, seqs):
    """The engine's host work per step, seconds (0 when another step's iteration pays it)."""
    if engine.shares_host:
        return 0.0 * np.asarray(seqs, dtype=float)
    return np.asarray(host_scale, dtype=float) * (engine.host_step_s + engine.host_seq_s * np.asarray(seqs, dtype=float))


def graphed(engine: EngineSpec, seqs, prefill_tokens):
    """Whether each step replays a CUDA graph: a decode (or speculative verification) step of at
    most graph_max_batch sequences. Multi-token steps are told apart from prefill chunks by their
    tokens per sequence (GRAPH_TOKENS_PER_SEQ): an approximation for mixed steps whose prefill
    chunk is small next to many decodes."""
    if not engine.cuda_graphs:
        return np.zeros(np.shape(seqs), dtype=bool)
    seqs = np.asarray(seqs, dtype=float)
    return (np.asarray(prefill_tokens, dtype=float) <= GRAPH_TOKENS_PER_SEQ * seqs) & (seqs <= engine.graph_max_batch)


@dataclass(frozen=True)
class StepOverhead:
    """Launch and host parts of one replica's step: `kernels` by side, the engine, the chip's
    per-kernel GPU gap `kernel_s` and the fitted `host_scale` (either may be an array over
    parameter sets). `sides` are the ones this GPU runs (AFD: attention and step only)."""

    kernels: dict[str, float]
    engine: EngineSpec
    kernel_s: object
    host_scale: object
    sides: tuple[str, ...] = SIDES
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)  # see _fixed

    @property
    def n_kernels(self) -> float:
        return sum(self.kernels[s] for s in self.sides)

    def launch_seconds(self, seqs, prefill_tokens):
        """GPU timeline spent on kernel boundaries (graph gaps, plus eager launches when not graphed)."""
        eager = self.engine.eager_launch_s
        per_kernel = np.asarray(self.kernel_s, dtype=float) + np.where(graphed(self.engine, seqs, prefill_tokens), 0.0, eager)
        return self.n_kernels * per_kernel

    def parts(self, seqs, prefill_tokens, busy) -> dict[str, np.ndarray]:
        """Seconds: `launch` (on the GPU timeline), `host` (the engine's CPU work) and `exposed`
        (the host time the step waits for: all of it without overlap, else what exceeds the GPU
        timeline `busy` + launch). The step takes busy + launch + exposed."""
        launch = self.launch_seconds(seqs, prefill_tokens)
        host = host_seconds(self.engine, self.host_scale, seqs)
        gpu = np.asarray(busy, dtype=float) + launch
        exposed = np.maximum(host - gpu, 0.0) if self.engine.overlap else host + 0.0 * gpu
        return {"launch": launch, "host": host, "exposed": exposed}

    def step_seconds(self, seqs, prefill_tokens, busy):
        """Step time given the GPU's busy time (ops and collectives): busy + launch + exposed, as
        `parts` computes them (launch and host remembered per scalar step, see `_fixed`)."""
        launch, host = self._fixed(seqs, prefill_tokens)
        if isinstance(busy, float) and isinstance(launch, float) and isinstance(host, float):
            # one step: the same float operations on numbers (np.maximum of two floats is max)
            gpu = busy + launch
            exposed = max(host - gpu, 0.0) if self.engine.overlap else host + 0.0 * gpu
            return np.float64(busy + launch + exposed)
        busy = np.asarray(busy, dtype=float)
        gpu = busy + launch
        exposed = np.maximum(host - gpu, 0.0) if self.engine.overlap else host + 0.0 * gpu
        return busy + launch + exposed

    def _fixed(self, seqs, prefill_tokens):
        """(launch, host) seconds of a step, which depend on its sequences and prefill tokens only;
        remembered per scalar pair, as the simulator repeats batch sizes."""
        if not (isinstance(seqs, float) or np.ndim(seqs) == 0) or not (isinstance(prefill_tokens, float)
                                                                   or np.ndim(prefill_tokens) == 0):
            return self.launch_seconds(seqs, prefill_tokens), host_seconds(self.engine, self.host_scale, seqs)
        key = (float(seqs), float(prefill_tokens))
        hit = self._memo.get(key)
        if hit is None:
            launch = self.launch_seconds(seqs, prefill_tokens)
            host = host_seconds(self.engine, self.host_scale, seqs)
            # one number each (no parameter-set axis): kept as np.float64, a float
            hit = self._memo[key] = tuple(np.float64(v) if np.ndim(v) == 0 else v for v in (launch, host))
        return hit


def step_overhead(arch: ModelArch, engine: EngineSpec | None, eff, sides: tuple[str, ...] = SIDES) -> StepOverhead:
    return StepOverhead(model_kernels(arch), engine or engine_named(None), eff.kernel_s, eff.host_scale, sides)
