"""Step shapes of the simulator's integer token counts, built exactly and cheaply.

The simulator composes steps of whole tokens. Sums of integers below 2**53 are exact in any order,
so the shapes below equal `work.sequences_shape` / `work.decode_run_shape` of the same steps
exactly (tests/test_speed_paths.py) while skipping their per-sequence arrays; `step_key` doubles as
a memo key for a step's time (`timer.ShapeTimer.composed_step_seconds`).
"""
from __future__ import annotations

import numpy as np

from infersim.costmodel.work import AttnSums, StepShape, attended_keys, decode_run_shape


def step_key(pasts: list[int], news: list[int], windows) -> tuple:
    """`sequences_shape(pasts, news, windows)`'s sums as exact Python ints, for integer token counts
    (every new count >= 1): (sequences, decode tokens, prefill tokens, then per window decode pairs,
    prefill pairs, KV tokens read). Sums of integers below 2**53 are exact in any order, so
    `key_shape` of the result equals sequences_shape's shape exactly; the tuple also serves as a
    memo key for the step's time (a step's time depends on its shape alone)."""
    n = len(news)
    tokens = sum(news)
    prefill = () if tokens == n else [i for i, x in enumerate(news) if x > 1]  # decode: new <= 1
    n_decode = n - len(prefill)
    decode_tokens = n_decode  # one new token each
    key = [n, decode_tokens, tokens - decode_tokens]
    for w in windows:
        # a decode token attends min(past + 1, window) keys (attended_keys with q = 1)
        if w is None:
            pd = sum(pasts) + n - sum(pasts[i] + 1 for i in prefill)
        elif prefill:
            pd = sum(min(pasts[i] + 1, w) for i in range(n) if news[i] <= 1)
        else:
            pd = sum(min(p + 1, w) for p in pasts)
        pf = sum(attended_keys(pasts[i], news[i], w) for i in prefill)
        kv = sum(pasts[i] + news[i] if w is None else min(pasts[i] + news[i], w) for i in prefill)
        key += [pd, pf, pd + kv]
    return tuple(key)


def key_shape(key: tuple, windows) -> StepShape:
    """The StepShape of a `step_key`."""
    f = np.float64
    return StepShape(f(key[0]), f(key[1]), f(key[2]),
                     {w: AttnSums(f(key[3 + 3 * i]), f(key[4 + 3 * i]), f(key[5 + 3 * i])) for i, w in enumerate(windows)})


_STEP_NUMBERS = np.arange(4096, dtype=float) + 1  # k + 1 for the steps of a run (a read-only view is handed out)
_STEP_NUMBERS.flags.writeable = False


def composed_run_shape(pasts: list[int], steps: int, windows) -> StepShape:
    """decode_run_shape for integer contexts in any order (the simulator's): with full attention
    only their sum matters, exact as an integer, so nothing is sorted; equal to decode_run_shape
    of the sorted contexts."""
    if any(w is not None for w in windows):
        return decode_run_shape(np.sort(np.array(pasts, dtype=float)), steps, windows)
    k1 = _STEP_NUMBERS[:steps] if steps <= len(_STEP_NUMBERS) else np.arange(steps, dtype=float) + 1
    s = float(len(pasts))
    keys = np.float64(sum(pasts)) + s * k1
    return StepShape(s, s, 0.0, {w: AttnSums(keys, 0.0 * keys, keys) for w in windows})
