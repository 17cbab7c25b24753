"""One serving replica: a continuous-batching scheduler over a paged KV cache (vLLM v1 style).

Each engine step (`_compose`):
1. Running requests first, in admission order: a decoding request adds 1 token, a prefilling one
   its next chunk (min of what is left, the step's remaining token budget and the chunk size).
   Each needs KV blocks for its new context; when the cache is full the most recently admitted
   running request is preempted (blocks freed, recomputed from scratch later: vLLM's default
   recompute policy), possibly the requester itself.
2. Then, unless something was preempted, waiting requests in arrival order (FIFO, head-of-line)
   while the batch has room (max_batch), budget is left and their first chunk's blocks fit (with
   admission "reserve": blocks for their whole context, TensorRT-LLM style, never preempting). A
   request's cached prompt prefix (prefix cache) is not prefilled again.
The step's time comes from the cost model for the exact composition (`StepCost`).

Token accounting per request: `past` tokens are in the KV cache, `gen` tokens were generated.
Every step brings a request to past = input + gen and samples one token. A fresh request first
prefills its prompt (in chunks); after a preemption it recomputes prompt plus the tokens it already
produced. Afterwards each decode step feeds the last sampled token (one new token: while decoding
past = input + gen - 1) and samples the next.

Fast path: when a step holds only decoding requests and nothing can join before a completion
(no waiting request admissible, no prefill in flight), the following steps differ only in
context lengths. The replica then plans a run of K steps in one go, K = steps until the first
completion (bounded by the KV blocks left and max_run_steps), timing all K steps with one
vectorised cost-model call. An arrival during a run cuts it at the next step boundary, so the
result equals stepping one iteration at a time (tested).
"""
from __future__ import annotations

from collections import deque

import numpy as np

from infersim.costmodel.specdec import SpecStepCost
from infersim.costmodel.step import StepCost
from infersim.costmodel.work import decode_run_shape, sequences_shape
from infersim.serving import batched
from infersim.serving.config import EngineConfig
from infersim.serving.kvcache import KVCache


class Replica:
    def __init__(self, index: int, role: str, cost: StepCost, kv: KVCache, cfg: EngineConfig, sim):
        self.index = index
        self.role = role  # "both" (aggregated), "prefill" or "decode" (disaggregated pools)
        self.cost = cost
        self.windows = cost.windows
        self.kv = kv
        self.cfg = cfg
        self.reserve = cfg.admission == "reserve"
        # speculative decoding: a decode step verifies k + 1 drafted tokens and keeps the accepted ones
        self.spec = cost if isinstance(cost, SpecStepCost) else None
        self.decode_width = self.spec.k + 1 if self.spec else 1
        self.sim = sim
        self.st = sim.state
        self.waiting: deque[int] = deque()
        self.running: list[int] = []
        self.busy = False        # a step or run is in flight
        self.start_pending = False
        self.version = 0         # invalidates a StepEnd event when a run is cut short
        self.outstanding = 0     # tokens of assigned, unfinished requests (router signal)
        # the step or run in flight
        self._t0 = 0.0
        self._ends: np.ndarray | None = None
        self._rids: list[int] = []
        self._news: list[int] = []
        self._run = False
        self.batched_arrays = None  # serving/batched.py: the last composed batch's arrays
        # statistics
        self.busy_s = 0.0
        self.steps = 0
        self.kv_block_seconds = 0.0
        self.kv_peak = 0

    # -- arrivals ------------------------------------------------------------------------------
    def enqueue(self, rid: int, t: float) -> None:
        self.waiting.append(rid)
        if not self.busy:
            self.request_start(t)
        elif self._run and self._ends is not None and len(self._ends) > 1:
            self._cut(t)

    def request_start(self, t: float) -> None:
        if not self.start_pending:
            self.start_pending = True
            self.sim.schedule_start(self, t)

    def _cut(self, t: float) -> None:
        """End the run at the first step boundary at or after t (the step in flight finishes)."""
        k = int(self._ends.searchsorted(t, side="left")) + 1
        if k < len(self._ends):
            self._ends = self._ends[:k]
            self.version += 1
            self.sim.schedule_step_end(self, float(self._ends[-1]))

    # -- steps ---------------------------------------------------------------------------------
    def start(self, t: float) -> None:
        self.start_pending = False
        if self.busy:
            return
        rids, news, n_prefill, preempted, admission_blocked = self._compose()
        if not rids:
            return  # idle until the next arrival
        st = self.st
        if (self.cfg.fast_path and self.spec is None and n_prefill == 0 and not preempted
                and (admission_blocked or not self.waiting)):
            steps = min(min(st.out[r] - st.gen[r] for r in rids), self.cfg.max_run_steps)
            steps = self._block_safe_steps(rids, steps)
        else:
            steps = 1
        past = np.array([st.past[r] for r in rids], dtype=float)
        if steps > 1:
            past.sort()
            times = self.cost.total(decode_run_shape(past, steps, self.windows))
            ends = np.concatenate(([t], times)).cumsum()[1:]
        elif self.spec is not None:
            decoding = np.array([st.gen[r] > 0 and st.inp[r] + st.gen[r] - st.past[r] == 1 for r in rids])
            widths = np.where(decoding, self.decode_width, np.array(news, dtype=float))
            ends = np.array([t + self.spec.step_total(past, widths, decoding)])
        else:
            ends = np.array([t + float(self.cost.total(sequences_shape(past, np.array(news, dtype=float),
                                                                       self.windows)))])
        self._t0 = t
        self._ends = ends
        self._rids, self._news, self._run = rids, news, steps > 1
        self.busy = True
        self.sim.schedule_step_end(self, float(self._ends[-1]))

    def _accepted(self, rid: int) -> int:
        """Tokens a speculative verification keeps for this request: E on average (the expected
        accepted drafts plus the target's token), handed out deterministically by an accumulator,
        at most k + 1 and never past the request's output."""
        st = self.st
        acc = st.spec_credit[rid] + self.spec.expected
        a = int(acc)
        st.spec_credit[rid] = acc - a
        return max(1, min(a, self.decode_width, st.out[rid] - st.gen[rid]))

    def _block_safe_steps(self, rids: list[int], steps: int) -> int:
        """Largest k <= steps such that every step of a k-step decode run finds its KV blocks."""
        st, kv = self.st, self.kv
        if steps <= 1:
            return steps
        # Quick sufficient test: each request holds the blocks of step 0 (past + 1 tokens); over the
        # k - 1 tokens after those it crosses at most ceil((k - 1) / block_tokens) block boundaries,
        # each adding at most max_block_step blocks.
        if len(rids) * -(-(steps - 1) // kv.block_tokens) * kv.max_block_step <= kv.free:
            return steps
        past = np.array([st.past[r] for r in rids], dtype=np.int64)
        held = sum([st.held[r] for r in rids])

        def fits(k: int) -> bool:  # step k-1 (0-based) needs blocks for past + k tokens
            return int(kv.blocks_for_array(past + k).sum()) - held <= kv.free
        if fits(steps):
            return steps
        lo, hi = 1, steps  # fits(1) holds: step 0's blocks are already allocated
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return lo

    def step_end(self, t: float, version: int) -> None:
        if version != self.version:
            return  # this run was cut; a later event carries its new end
        ends, rids, news = self._ends, self._rids, self._news
        k = len(ends)
        st, kv = self.st, self.kv
        busy = float(ends[-1]) - self._t0
        self.busy_s += busy
        self.steps += k
        durations = ends.copy()
        durations[1:] -= ends[:-1]
        durations[0] -= self._t0
        used_before = kv.used
        n_decode = 0
        finished: list[int] = []
        handoff: list[int] = []
        if self._run:
            n_decode = len(rids)
            past, gen, held, out, last_token, blocks_for = st.past, st.gen, st.held, st.out, st.last_token, kv.blocks_for
            grown = 0
            for rid in rids:
                past[rid] += k
                gen[rid] += k
                last_token[rid] = t
                grow = blocks_for(past[rid]) - held[rid]
                if grow > 0:
                    held[rid] += grow
                    grown += grow
                if gen[rid] >= out[rid]:
                    finished.append(rid)
            if grown:
                kv.allocate(grown)  # at once: the same blocks, and the same LRU evictions, as one by one
        elif self.spec is None and len(rids) >= batched.MIN_BATCH:
            n_decode = batched.finish_step(self, t, rids, news, finished, handoff)  # the loop below, as arrays
        else:
            inp, out, past, gen, first, last_token = st.inp, st.out, st.past, st.gen, st.first, st.last_token
            spec, prefill_role = self.spec, self.role == "prefill"
            for rid, n in zip(rids, news):
                target = inp[rid] + gen[rid]
                decoding = gen[rid] > 0 and target - past[rid] == 1
                if decoding and spec is not None:
                    n = self._accepted(rid)
                past[rid] += n
                if past[rid] < target:
                    continue  # more prefill chunks to go
                gen[rid] += n if decoding else 1  # the step reached the target: it samples a token
                if decoding:
                    n_decode += 1
                elif first[rid] != first[rid]:  # NaN: this is the request's first token
                    first[rid] = t
                else:  # the token after a preemption: its gap spans the wait and the recompute
                    self.sim.record_itl(np.array([t - last_token[rid]]), 1)
                last_token[rid] = t
                if prefill_role and gen[rid] < out[rid]:
                    handoff.append(rid)
                elif gen[rid] >= out[rid]:
                    finished.append(rid)
        if n_decode:
            self.sim.record_itl(durations, n_decode)
        self.kv_block_seconds += 0.5 * (used_before + kv.used) * busy
        self.kv_peak = max(self.kv_peak, kv.used)
        for rid in finished:
            self._leave(rid)
            self.sim.complete(rid, self, t)
        for rid in handoff:
            self._leave(rid)
            self.sim.hand_off(rid, self, t)
        if self.sim.debug:
            self.check()
        self.busy = False
        self._ends = None
        self.request_start(t)

    def check(self) -> None:
        """Debug-mode invariants of this replica (see docs: simulator invariants)."""
        st, kv = self.st, self.kv
        owned = sum(st.held[r] - len(st.pinned[r]) * kv.blocks_per_id for r in self.running)
        kv.check(owned)
        for r in self.running:
            if st.held[r] < kv.blocks_for(st.past[r]) and not st.pinned[r]:
                raise AssertionError(f"request {r} holds {st.held[r]} blocks for {st.past[r]} cached tokens")
            if not 0 <= st.gen[r] <= st.out[r] or st.past[r] > st.inp[r] + st.gen[r]:
                raise AssertionError(f"request {r} token counts out of range: past {st.past[r]}, gen {st.gen[r]}")
        if len(self.running) > self.cfg.max_batch:
            raise AssertionError(f"{len(self.running)} running requests exceed max_batch {self.cfg.max_batch}")

    def _leave(self, rid: int) -> None:
        """Free a request's blocks and keep its prompt blocks as cached prefixes."""
        st, kv = self.st, self.kv
        self._free_blocks(rid)
        ids = st.ids[rid]
        if ids:
            kv.insert(ids[: st.inp[rid] // kv.prefix_block_tokens])

    def _free_blocks(self, rid: int) -> None:
        st, kv = self.st, self.kv
        self.running.remove(rid)
        pinned = st.pinned[rid]
        kv.release(st.held[rid] - len(pinned) * kv.blocks_per_id)
        kv.unpin(pinned)
        st.held[rid] = 0
        st.pinned[rid] = ()

    def _preempt(self, rid: int) -> None:
        st = self.st
        self._free_blocks(rid)
        st.past[rid] = 0
        st.preemptions[rid] += 1
        self.waiting.appendleft(rid)

    def _compose(self):
        """This step's (request ids, new tokens), number of prefill entries, whether anything was
        preempted, and whether a waiting request was left out for lack of room."""
        st, kv, cfg = self.st, self.kv, self.cfg
        budget = cfg.max_tokens_per_step
        chunk = cfg.chunk
        rids: list[int] = []
        news: list[int] = []
        n_prefill = 0
        preempted = False
        running = self.running
        inp, out, gen, past, held, blocks_for = st.inp, st.out, st.gen, st.past, st.held, kv.blocks_for
        decode_width = self.decode_width
        i = 0
        if self.spec is None and len(running) >= batched.MIN_BATCH:  # the loop below, as arrays
            composed = batched.compose_running(self)
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
                victim = running[-1]
                self._preempt(victim)
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
        if not preempted:
            while self.waiting:
                if len(running) >= cfg.max_batch or budget <= 0:
                    blocked = True
                    break
                rid = self.waiting[0]
                pinned: tuple = ()
                target = st.inp[rid] + st.gen[rid]
                if st.past[rid] == 0 and st.ids[rid]:
                    pinned = tuple(kv.match(st.ids[rid], target - 1))
                    st.past[rid] = len(pinned) * kv.prefix_block_tokens
                left = target - st.past[rid]
                n = min(left, budget, chunk)
                pinned_blocks = len(pinned) * kv.blocks_per_id
                # "reserve" takes blocks for the whole context up front, so it never preempts
                context = st.inp[rid] + st.out[rid] if self.reserve else st.past[rid] + n
                need = max(0, kv.blocks_for(context) - pinned_blocks)
                if need > kv.free:
                    kv.unpin(pinned)
                    if pinned:
                        st.past[rid] = 0
                    blocked = True
                    break
                self.waiting.popleft()
                kv.allocate(need)
                st.held[rid] = need + pinned_blocks
                st.pinned[rid] = pinned
                st.cached[rid] += len(pinned) * kv.prefix_block_tokens
                if st.replica_of[rid] < 0 or self.role != "prefill":
                    st.replica_of[rid] = self.index
                running.append(rid)
                rids.append(rid)
                news.append(n)
                n_prefill += not (st.gen[rid] > 0 and left == 1)
                budget -= n
        return rids, news, n_prefill, preempted, blocked
