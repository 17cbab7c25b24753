"""Array versions of a replica's two per-request loops, used when the batch is large.

A replica composing a step walks its running requests one by one (`Replica._compose`), and a
step's end walks the step's requests one by one (`Replica.step_end`). With thousands of running
requests (an offline benchmark at TensorRT-LLM's max batch of 2048) those scalar loops are where
simulation time goes. The functions below compute the same thing with numpy over the whole batch
and write the results back into the per-request lists; they decline (return None) whenever the
scalar loop would do something order-dependent they do not reproduce (a preemption), so the
replica falls back to its loop. Results are identical to the loops', not approximately equal
(tests/test_serving_batched.py runs both on the same workloads).

Multi-token replicas (speculative decoding: a decode step verifies decode_width tokens and keeps
the accepted ones) take this path too: a decoding request's KV blocks cover its verify width, and
its accepted tokens come from the same per-request credit accumulator as `Replica._accepted`.
"""
from __future__ import annotations

import weakref
from collections import deque
from itertools import repeat

import numpy as np

# Below this many requests the scalar loops are faster than numpy's per-call overhead (measured
# on the validate set: the break-even is around 20 to 40 requests; the choice changes speed only).
MIN_BATCH = 32

# input and output lengths never change during a simulation: one array copy per RequestState
_static: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _gather(values: list, rids: list[int], dtype=np.int64) -> np.ndarray:
    """values[rid] for each rid, as an array (int64 unless told otherwise)."""
    return np.fromiter(map(values.__getitem__, rids), dtype=dtype, count=len(rids))


def _scatter(values: list, rids: list[int], new_values) -> None:
    """values[rid] = v for each (rid, v) pair, in order (a loop run by map, not by the interpreter)."""
    deque(map(values.__setitem__, rids, new_values), maxlen=0)


def _lengths(st) -> tuple[np.ndarray, np.ndarray]:
    """(input, output) tokens of every request of the simulation, as arrays."""
    cached = _static.get(st)
    if cached is None or cached[0] is not st.inp or cached[1] is not st.out:
        cached = (st.inp, st.out, np.asarray(st.inp, dtype=np.int64), np.asarray(st.out, dtype=np.int64))
        _static[st] = cached
    return cached[2], cached[3]


def output_lengths(st) -> np.ndarray:
    """Output tokens of every request of the simulation, as an array (indexed by request id)."""
    return _lengths(st)[1]


def compose_running(replica) -> tuple[list[int], list[int], int, int] | None:
    """The running requests' part of a step, as `Replica._compose`'s loop over `running` builds
    it: (request ids, new tokens each, prefill entries, token budget left), with their KV blocks
    allocated. None, touching nothing, when the loop would preempt (the blocks the step needs
    exceed the free ones)."""
    st, kv, cfg = replica.st, replica.kv, replica.cfg
    running = replica.running
    index = np.fromiter(running, dtype=np.int64, count=len(running))
    gen = _gather(st.gen, running)
    past = _gather(st.past, running)
    target = _lengths(st)[0][index] + gen
    left = target - past  # >= 1 for every running request
    # in order, each takes min(left, chunk) tokens of the step's budget while budget remains
    wanted = np.minimum(left, cfg.chunk)
    budget_before = cfg.max_tokens_per_step - (np.cumsum(wanted) - wanted)
    new = np.minimum(wanted, np.maximum(budget_before, 0))
    taken = new > 0
    decoding = (gen > 0) & (left == 1)
    width = new
    if replica.decode_width != 1:  # a verify can keep up to decode_width tokens, never past the output
        width = np.where(decoding, np.minimum(replica.decode_width, _lengths(st)[1][index] - gen), new)
    need = kv.blocks_for_array(past + width) - _gather(st.held, running)
    need[~taken | (need < 0)] = 0
    total = int(need.sum())
    if total > kv.free:
        return None
    if total:
        kv.allocate(total)  # at once: the same blocks, and the same LRU evictions, as one by one
        held = st.held
        for i in np.flatnonzero(need).tolist():
            held[running[i]] += int(need[i])
    if taken.all():
        rids = list(running)
    else:
        idx = np.flatnonzero(taken)
        rids = [running[i] for i in idx.tolist()]
        index, gen, past, target, new, decoding = index[idx], gen[idx], past[idx], target[idx], new[idx], decoding[idx]
    # the step's requests continue this list (admissions append to it); their state stays as it
    # is until the step ends, so finish_step reuses these arrays for its leading entries
    replica.batched_arrays = (rids, index, gen, past, target, new, decoding)
    return rids, new.tolist(), int(np.count_nonzero(~decoding)), cfg.max_tokens_per_step - int(new.sum())


def step_arrays(replica, rids: list[int], news: list[int]):
    """(request index, gen, past, target, new tokens, decoding) of a step's requests: the arrays
    compose_running kept for its leading entries, gathered for the rest. The step's requests keep
    their state until the step ends, so the result is kept for finish_step too."""
    st = replica.st
    kept = replica.batched_arrays
    if kept is not None and kept[0] is rids and len(kept[1]) == len(rids):
        return kept[1:]
    k = len(kept[1]) if kept is not None and kept[0] is rids else 0
    rest = rids[k:]
    index = np.fromiter(rest, dtype=np.int64, count=len(rest))
    gen = _gather(st.gen, rest)
    past = _gather(st.past, rest)
    target = _lengths(st)[0][index] + gen
    new = np.asarray(news[k:], dtype=np.int64)
    decoding = (gen > 0) & (target - past == 1)
    arrays = (index, gen, past, target, new, decoding)
    if k:
        arrays = tuple(np.concatenate((a, b)) for a, b in zip(kept[1:], arrays))
    replica.batched_arrays = (rids,) + arrays
    return arrays


def finish_step(replica, t: float, rids: list[int], news: list[int], finished: list[int],
                handoff: list[int]) -> int:
    """Advance the requests of a single step that ended at time t, as `Replica.step_end`'s loop
    does: tokens into the KV cache, a sampled token for each request that
    reached its target, first-token times, the inter-token gap of a request recomputed after a
    preemption; appends to `finished` and `handoff` in step order. Returns the decode entries."""
    st = replica.st
    index, gen, past, target, new, decoding = step_arrays(replica, rids, news)
    replica.batched_arrays = None
    if replica.multi_token:
        new = _accepted(replica, index, gen, new, decoding)
    past = past + new
    reached = past >= target
    # the step reached the target: it samples a token (a decode step keeps its new tokens: one, or
    # the accepted ones of a verify)
    gen = gen + np.where(decoding, new, 1) * reached
    _scatter(st.past, rids, past.tolist())
    idx = np.flatnonzero(reached)
    first, last_token = st.first, st.last_token
    for i in idx[~decoding[idx]].tolist():
        rid = rids[i]
        if first[rid] != first[rid]:  # NaN: this is the request's first token
            first[rid] = t
        else:  # the token after a preemption: its gap spans the wait and the recompute
            replica.sim.record_itl(t - last_token[rid], 1)
    reached_rids = rids if len(idx) == len(rids) else [rids[i] for i in idx.tolist()]
    _scatter(st.gen, reached_rids, gen[idx].tolist())
    _scatter(last_token, reached_rids, repeat(t))
    done = reached & (gen >= _lengths(st)[1][index])
    finished.extend(rids[i] for i in np.flatnonzero(done).tolist())
    if replica.role == "prefill":
        handoff.extend(rids[i] for i in np.flatnonzero(reached & ~done).tolist())
    return int(np.count_nonzero(reached & decoding))


def _accepted(replica, index: np.ndarray, gen: np.ndarray, new: np.ndarray, decoding: np.ndarray) -> np.ndarray:
    """`new` with each decoding request's entry replaced by the tokens its verify keeps, as
    `Replica._accepted` hands them out (credit += tokens per step; keep its whole part, at least 1,
    at most decode_width and what is left of the output; carry the fraction). Updates the credits."""
    dec = np.flatnonzero(decoding)
    if not len(dec):
        return new
    st = replica.st
    rids = index[dec].tolist()
    acc = _gather(st.token_credit, rids, np.float64) + replica.cost.tokens_per_decode_step
    whole = acc.astype(np.int64)  # int() of a non-negative float: its floor
    _scatter(st.token_credit, rids, (acc - whole).tolist())
    left = _lengths(st)[1][index[dec]] - gen[dec]
    new = new.copy()
    new[dec] = np.maximum(1, np.minimum(np.minimum(whole, replica.decode_width), left))
    return new


def finish_run(replica, t: float, rids: list[int], news: list[int], steps: int, finished: list[int]) -> None:
    """Advance the requests of a closed-form run of `steps` one-token decode steps that ended at
    time t, as `Replica.step_end`'s loop over a run does: `steps` tokens each, the KV blocks of
    the new context, completions appended to `finished` in step order."""
    st, kv = replica.st, replica.kv
    index, gen, past = step_arrays(replica, rids, news)[:3]  # as the run started
    replica.batched_arrays = None
    past, gen = past + steps, gen + steps
    held = _gather(st.held, rids)
    grow = np.maximum(kv.blocks_for_array(past) - held, 0)
    _scatter(st.past, rids, past.tolist())
    _scatter(st.gen, rids, gen.tolist())
    _scatter(st.last_token, rids, repeat(t))
    grown = int(grow.sum())
    if grown:
        _scatter(st.held, rids, (held + grow).tolist())
        kv.allocate(grown)  # at once: the same blocks, and the same LRU evictions, as one by one
    finished.extend(rids[i] for i in np.flatnonzero(gen >= _lengths(st)[1][index]).tolist())
