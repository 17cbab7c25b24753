"""Engine settings of a simulated replica and the KV-cache capacity they leave.

Defaults follow vLLM v1 (max_num_seqs 256, max_num_batched_tokens 8192, block size 16, chunked
prefill and prefix caching on); every one is a user-overridable assumption.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from infersim.costmodel.memory import kv_block_bytes, kv_bytes_per_seq, kv_chip_share, memory_fit
from infersim.mapping.deployment import Deployment
from infersim.mapping.engine import BLOCK_TOKENS, MAX_BATCH, MAX_TOKENS_PER_STEP, rank_prefill_chunk
from infersim.errors import InputError
from infersim.serving.kvcache import KVCache
from infersim.serving.policies import ADMISSIONS, PREEMPTION_VICTIMS, QUEUE_ORDERS, ROUTERS

ADMISSION = ADMISSIONS  # the registered names (policies.py); kept under the old name for callers
__all__ = ["ADMISSION", "ROUTERS", "EngineConfig", "kv_cache_for"]


@dataclass(frozen=True)
class EngineConfig:
    """max_batch: sequences per step (vLLM max_num_seqs); max_tokens_per_step: token budget of a
    step, decode tokens + prefill chunks (max_num_batched_tokens); chunk_tokens: largest prefill
    chunk of one request (None = the whole budget); block_tokens: KV block size in tokens;
    prefix_caching: reuse cached prompt blocks; admission: "eager" admits a request when its first
    chunk's blocks fit and preempts when decodes run out of blocks (vLLM), "reserve" admits only
    when blocks for its whole context (input + output) fit, so nothing is ever preempted
    (TensorRT-LLM's default GUARANTEED_NO_EVICT capacity scheduler); queue_order: the order waiting
    requests are admitted in ("fcfs", "priority", "shortest-prompt"); preemption: the running
    request preempted when blocks run out ("newest", "fewest-tokens", "lowest-priority"); the
    choices are the registered names of policies.py; fast_path: advance runs of pure-decode steps in
    closed form (exactly equal to stepping; off only for the equivalence test);
    max_run_steps: longest closed-form run (bounds array sizes)."""

    max_batch: int = MAX_BATCH
    max_tokens_per_step: int = MAX_TOKENS_PER_STEP
    chunk_tokens: int | None = None
    block_tokens: int = BLOCK_TOKENS
    prefix_caching: bool = True
    admission: str = "eager"
    queue_order: str = "fcfs"
    preemption: str = "newest"
    fast_path: bool = True
    max_run_steps: int = 4096

    def __post_init__(self):
        for name in ("max_batch", "max_tokens_per_step", "block_tokens", "max_run_steps"):
            if getattr(self, name) < 1:
                raise InputError(f"engine setting {name} must be at least 1, got {getattr(self, name)}")
        ADMISSIONS.check(self.admission)
        QUEUE_ORDERS.check(self.queue_order)
        PREEMPTION_VICTIMS.check(self.preemption)
        if self.chunk_tokens is not None and self.chunk_tokens < 1:
            raise InputError(f"--chunk-tokens must be at least 1, got {self.chunk_tokens}")

    @property
    def chunk(self) -> int:
        return min(self.chunk_tokens or self.max_tokens_per_step, self.max_tokens_per_step)

    def for_deployment(self, dep: Deployment) -> "EngineConfig":
        """These settings on one replica of `dep`: under DP attention each prompt is prefilled in
        chunks of the budget split over the attention ranks (mapping.engine.rank_prefill_chunk), so
        the ranks prefill different prompts side by side; unchanged otherwise."""
        dp = 1 if dep.dataflow else dep.par.ep
        if dp <= 1:
            return self
        return replace(self, chunk_tokens=min(self.chunk, rank_prefill_chunk(self.max_tokens_per_step, dp)))


def kv_cache_for(dep: Deployment, cfg: EngineConfig, max_context: int, prefix_block_tokens: int) -> KVCache:
    """The KV cache one replica of `dep` has room for under `cfg`, with a block table covering
    sequences up to `max_context` tokens."""
    b = cfg.block_tokens
    # Free memory per chip with no KV at all but a full batch's logits buffers and the largest step.
    fit = memory_fit(dep, cfg.max_batch, 0, cfg.max_tokens_per_step)
    free_per_chip = float(np.min(fit.free + fit.kv))
    if free_per_chip <= 0:
        raise InputError(f"{dep.model.name} leaves no room for a KV cache on {dep.chip.name} x{dep.chips_per_replica} "
                         f"per replica ({-free_per_chip / 1e9:.1f} GB short per chip with a batch of {cfg.max_batch}); "
                         "use more chips per replica (--tp/--ep), a lower --precision, or a smaller --max-batch")
    capacity_bytes = free_per_chip / kv_chip_share(dep)  # replica-wide KV bytes that fit
    block_bytes = kv_block_bytes(dep, b)
    n_blocks = int(capacity_bytes // block_bytes)
    tokens = np.arange(-(-max_context // b) + 1, dtype=float) * b
    table = np.ceil(kv_bytes_per_seq(dep, tokens) / block_bytes - 1e-9).astype(np.int64)
    return KVCache(n_blocks, b, table, prefix_block_tokens, cfg.prefix_caching)
