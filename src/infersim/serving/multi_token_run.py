"""Closed-form runs of multi-token decode steps (speculative verification: MTP, EAGLE, drafts).

When a replica's step holds only decoding requests and nothing can join before a completion, the
following steps repeat it with longer contexts, and the replica plans them as one run (replica.py's
fast path). With one token per step every context grows by one per step and the run has a closed
form (`StepTimer.decode_run_seconds`). A multi-token step keeps a varying number of tokens per
request (the accepted drafts, handed out by the per-request credit accumulator of
`Replica._accepted`), so here the run is planned by running that accumulator for the whole batch,
step after step, with numpy over the requests: the same float operations in the same order as the
per-request loop, so every step keeps the same tokens. Every step of the run is then timed at once
(`StepTimer.multi_token_run_seconds`), equal to timing the steps one by one up to float rounding
(tests/test_serving_batched.py).

A run ends with the step in which the first request completes, at `max_steps`, or before a step
whose KV blocks would exceed `room` (there the step-by-step scheduler would preempt).
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat

import numpy as np

from infersim.serving.batched import _gather, _scatter, output_lengths

# A run keeps four (steps x requests) arrays; it is cut at this many entries (at 8 bytes each,
# 32 MiB at most). Changes speed only: a shorter run is followed by another one.
MAX_ENTRIES = 1 << 20


@dataclass
class MultiTokenRun:
    """A planned run: per step (rows) and request (columns, in `rids` order) the cached and
    generated tokens before the step, the tokens the step keeps and the credit left after it."""

    rids: list[int]
    past: np.ndarray
    gen: np.ndarray
    kept: np.ndarray
    credit: np.ndarray

    def __len__(self) -> int:
        return len(self.past)


def plan_run(replica, rids: list[int], max_steps: int, room: int, arrays=None) -> MultiTokenRun | None:
    """The run of up to `max_steps` pure verify steps of the decoding requests `rids` (step 0's
    KV blocks already allocated), whose steps 1.. add at most `room` KV blocks; None when the
    first step may complete a request. `arrays`: the step's (request index, gen, past, ...) from
    batched.step_arrays when the caller has them."""
    st, kv = replica.st, replica.kv
    width, per_step = replica.decode_width, replica.cost.tokens_per_decode_step
    if arrays is None:
        past, gen, out = _gather(st.past, rids), _gather(st.gen, rids), _gather(st.out, rids)
    else:
        past, gen, out = arrays[2], arrays[1], output_lengths(st)[arrays[0]]
    if int((out - gen).min()) <= width:
        return None  # the first step may complete a request: it runs alone (the same result, planned for less)
    credit = _gather(st.token_credit, rids, np.float64)
    held = _gather(st.held, rids)
    max_steps = max(1, min(max_steps, MAX_ENTRIES // max(1, len(rids))))
    rows: list[tuple] = []
    for step in range(max_steps):
        if step:  # the blocks this step's verify needs, beyond what the requests hold
            need = np.maximum(kv.blocks_for_array(past + np.minimum(width, out - gen)) - held, 0)
            if int(need.sum()) > room:
                break
        acc = credit + per_step
        whole = acc.astype(np.int64)  # int() of a non-negative float: its floor
        credit = acc - whole
        kept = np.maximum(1, np.minimum(np.minimum(whole, width), out - gen))
        rows.append((past, gen, kept, credit))
        past, gen = past + kept, gen + kept
        if np.any(gen >= out):
            break
    past_rows, gen_rows, kept_rows, credit_rows = (np.stack(c) for c in zip(*rows))
    return MultiTokenRun(rids, past_rows, gen_rows, kept_rows, credit_rows)


def finish_run(replica, run: MultiTokenRun, steps: int, t: float, finished: list[int]) -> None:
    """Advance the run's requests by its first `steps` steps (ended at time t), as stepping one at
    a time would: tokens kept, credits, the KV blocks of the last step's verify, completions
    appended to `finished` in request order."""
    st, kv = replica.st, replica.kv
    rids, last = run.rids, steps - 1
    replica.batched_arrays = None  # the arrays of the run's first step are stale now
    past = run.past[last] + run.kept[last]
    gen = run.gen[last] + run.kept[last]
    out = _gather(st.out, rids)
    held = _gather(st.held, rids)
    # each step's verify held blocks for its width; contexts only grow, so the last step's count
    grow = np.maximum(kv.blocks_for_array(run.past[last] + np.minimum(replica.decode_width, out - run.gen[last]))
                      - held, 0)
    for values, new in ((st.past, past), (st.gen, gen), (st.token_credit, run.credit[last]), (st.held, held + grow)):
        _scatter(values, rids, new.tolist())
    _scatter(st.last_token, rids, repeat(t))
    total = int(grow.sum())
    if total:
        kv.allocate(total)  # at once: the same blocks, and the same LRU evictions, as one by one
    finished.extend(rids[i] for i in np.flatnonzero(gen >= out).tolist())
