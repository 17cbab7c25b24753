"""The step-timer protocol: what the serving simulator and `estimate` need of a step cost.

Every way of running a decode step (one deployment's kernels, attention on GPUs with the FFN on
LPUs, drafting on one pool and verifying on another) is a `StepTimer`. The simulator and the
estimate talk to timers only through this protocol, so they never know which mode they run.

Token accounting: a decode step feeds `decode_width` tokens per decoding sequence (1; k + 1 when
verifying k drafted tokens) and yields `tokens_per_decode_step` tokens per sequence on average
(1; the expected accepted tokens with speculative decoding). Runs of pure-decode steps may be timed
in closed form (`decode_runs`) only when every step yields exactly one token; a multi-token timer
times a run of pure verify steps (`multi_token_runs`) from every step's contexts, which the
simulator works out from the tokens each step keeps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from infersim.costmodel.shape_keys import composed_run_shape, key_shape, step_key
from infersim.costmodel.work import (AttnSums, Batch, StepShape, _decode_keys, _prefill_keys, batch_shape,
                                     decode_run_shape, sequences_shape)

STEP_MEMO_SIZE = 1 << 15  # remembered step shapes per timer (~6 MB at most)


@dataclass(frozen=True)
class DecodeStep:
    """One decode step of `batch` sequences per replica, as the estimate reports it:
    seconds of the step, the shares of the step each chip kind spends per activity
    ({kind: {activity: share}}), and the timer's own details (parts in seconds, bounds, ...)."""

    seconds: float
    shares: dict[str, dict[str, float]]
    details: dict = field(default_factory=dict)


@runtime_checkable
class StepTimer(Protocol):
    windows: tuple
    decode_width: int
    tokens_per_decode_step: float
    decode_runs: bool
    multi_token_runs: bool

    def total(self, shape: StepShape) -> np.ndarray:
        """Seconds of each step in `shape` (arrays of steps broadcast)."""

    def step_seconds(self, past: np.ndarray, new: np.ndarray, decoding: np.ndarray | None) -> float:
        """Seconds of one mixed step: sequence i adds new[i] tokens after past[i] cached ones;
        `decoding` marks decoding sequences (None when the caller did not compute it: plain timers)."""

    def composed_step_seconds(self, pasts: list[int], news: list[int]) -> float:
        """step_seconds(pasts, news, None) for integer token counts (a timer may remember them)."""

    def composed_run_seconds(self, pasts: list[int], steps: int) -> np.ndarray:
        """decode_run_seconds of integer contexts in any order (the simulator's)."""

    def decode_run_seconds(self, past_sorted: np.ndarray, steps: int) -> np.ndarray:
        """Seconds of each of `steps` consecutive pure-decode steps (ascending contexts)."""

    def multi_token_run_seconds(self, pasts: np.ndarray) -> np.ndarray:
        """Seconds of each of consecutive pure-decode steps of a multi-token timer (only when
        `multi_token_runs`): row j of `pasts` (steps x sequences) holds every sequence's cached
        tokens before step j; every sequence feeds decode_width tokens in every step."""

    def decode_step(self, batch: float, past: float, span: float) -> DecodeStep:
        """A uniform decode step of `batch` sequences at context `past`, averaged over `span` steps."""


class ShapeTimer:
    """Shared plumbing for timers whose step time is a function of the step's shape alone."""

    decode_width = 1
    tokens_per_decode_step = 1.0
    decode_runs = True
    multi_token_runs = False
    windows: tuple = ()

    def total(self, shape: StepShape) -> np.ndarray:  # pragma: no cover - every timer defines it
        raise NotImplementedError

    def step_seconds(self, past, new, decoding=None) -> float:
        return float(self.total(sequences_shape(past, new, self.windows)))

    def composed_step_seconds(self, pasts: list[int], news: list[int]) -> float:
        """`step_seconds` of a step of integer token counts (the simulator's), remembered per step
        shape: the shape's sums are exact integers (work.step_key), so a hit returns exactly what
        evaluating the shape again would. Simulations repeat shapes often (a lone prompt's chunks,
        small decode batches); the memo is cleared when it reaches STEP_MEMO_SIZE entries."""
        key = step_key(pasts, news, self.windows)
        memo = self.__dict__.get("_step_memo")
        if memo is None:
            memo = self._step_memo = {}
        seconds = memo.get(key)
        if seconds is None:
            if len(memo) >= STEP_MEMO_SIZE:
                memo.clear()
            seconds = memo[key] = float(self.total(key_shape(key, self.windows)))
        return seconds

    def decode_run_seconds(self, past_sorted, steps: int) -> np.ndarray:
        return self.total(decode_run_shape(past_sorted, steps, self.windows))

    def composed_run_seconds(self, pasts: list[int], steps: int) -> np.ndarray:
        return self.total(composed_run_shape(pasts, steps, self.windows))

    def uniform_decode_shape(self, batch: float, past: float, span: float) -> StepShape:
        return batch_shape(Batch(seqs=np.float64(batch), new=np.float64(1), past=np.float64(past),
                                 span=max(span, 1.0)), self.windows)


def rows_shape(pasts: np.ndarray, new: int, windows) -> StepShape:
    """Shapes of steps in which every sequence adds `new` tokens (decode when new == 1), one step
    per row of `pasts` (steps x sequences, each sequence's cached tokens before that step): row j
    equals sequences_shape(pasts[j], full(new), windows), all rows at once. The sequence and token
    counts are the same in every step, so they are scalars; the attention sums are arrays over the
    steps."""
    pasts = np.asarray(pasts, dtype=float)
    n = float(pasts.shape[1])
    tokens = n * new
    attn = {}
    zero = np.float64(0.0)
    for w in windows:
        if new <= 1:
            pd = _decode_keys(w, pasts).sum(axis=1)
            attn[w] = AttnSums(pd, zero, pd + zero)
        else:
            pf, kv = _prefill_keys(w, pasts, float(new))
            attn[w] = AttnSums(zero, pf.sum(axis=1), zero + kv.sum(axis=1))
    decode_tokens = np.float64(tokens if new <= 1 else 0.0)
    return StepShape(np.float64(n), decode_tokens, np.float64(tokens) - decode_tokens, attn)
