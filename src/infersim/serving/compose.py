"""Composing one engine step of a replica (the scheduler's part of `Replica.start`, see replica.py's
module docstring for the rules): running requests first, preempting for KV blocks when the cache is
full, then waiting requests in queue order while the batch, the token budget and the admission
policy allow.
"""
from __future__ import annotations

from infersim.serving import batched


def compose(replica):
    """This step's (request ids, new tokens), number of prefill entries, whether anything was
    preempted, and whether a waiting request was left out for lack of room."""
    st, kv, cfg = replica.st, replica.kv, replica.cfg
    budget = cfg.max_tokens_per_step
    chunk = cfg.chunk
    rids: list[int] = []
    news: list[int] = []
    n_prefill = 0
    preempted = False
    running = replica.running
    inp, out, gen, past, held, blocks_for = st.inp, st.out, st.gen, st.past, st.held, kv.blocks_for
    decode_width = replica.decode_width
    i = 0
    if len(running) >= batched.MIN_BATCH:  # the loop below, as arrays
        composed = batched.compose_running(replica)
        if composed is not None:
            rids, news, n_prefill, budget = composed
            i = len(running)
    while i < len(running):
        rid = running[i]
        left = inp[rid] + gen[rid] - past[rid]  # >= 1 for every running request
        n = min(left, budget, chunk)
        if n <= 0:
            i += 1
            continue
        decoding = gen[rid] > 0 and left == 1
        # a speculative verify can keep up to k + 1 tokens, never more than the request has left
        width = min(decode_width, out[rid] - gen[rid]) if decoding else n
        need = blocks_for(past[rid] + width) - held[rid]
        while need > kv.free:
            j = replica.victim.pick(running)
            victim = running[j]
            if j < i:  # scheduled earlier in this step: take it out of the step again
                k = rids.index(victim)
                n_prefill -= not (gen[victim] > 0 and inp[victim] + gen[victim] - past[victim] == 1)
                budget += news[k]
                del rids[k], news[k]
                i -= 1
            replica._preempt(victim)
            preempted = True
            if victim == rid:
                break
        else:
            if need > 0:
                kv.allocate(need)
                held[rid] += need
            rids.append(rid)
            news.append(n)
            n_prefill += not decoding
            budget -= n
            i += 1
    blocked = False
    replica._blocked_hit_blocks = 0
    if not preempted:
        while replica.waiting:
            if len(running) >= cfg.max_batch or budget <= 0:
                blocked = True
                break
            rid = replica.waiting[0]
            pinned: tuple = ()
            target = st.inp[rid] + st.gen[rid]
            free_before = kv.free
            if st.past[rid] == 0 and st.ids[rid]:
                pinned = tuple(kv.match(st.ids[rid], target - 1))
                st.past[rid] = kv.prefix_tokens(len(pinned))
            left = target - st.past[rid]
            n = min(left, budget, chunk)
            pinned_blocks = kv.prefix_blocks(len(pinned))
            # a request handed over to decode verifies up to k + 1 tokens in its first step too
            decoding = st.gen[rid] > 0 and left == 1
            width = min(replica.decode_width, st.out[rid] - st.gen[rid]) if decoding else n
            context = replica.admission.context(rid, st.past[rid] + width)
            need = max(0, kv.blocks_for(context) - pinned_blocks)
            if need > kv.free:
                # blocks the match took out of the evictable cache (unpinned they are the LRU's
                # most recent): a decode run must not evict them (see start)
                replica._blocked_hit_blocks = free_before - kv.free
                kv.unpin(pinned)
                if pinned:
                    st.past[rid] = 0
                blocked = True
                break
            replica.waiting.popleft()
            kv.allocate(need)
            st.held[rid] = need + pinned_blocks
            st.pinned[rid] = pinned
            st.cached[rid] += kv.prefix_tokens(len(pinned))
            if st.replica_of[rid] < 0 or replica.role != "prefill":
                st.replica_of[rid] = replica.index
            running.append(rid)
            rids.append(rid)
            news.append(n)
            n_prefill += not decoding
            budget -= n
    return rids, news, n_prefill, preempted, blocked
