"""One serving replica: a continuous-batching scheduler over a paged KV cache (vLLM v1 style).

Each engine step (`_compose`, in serving/compose.py):
1. Running requests first, in admission order: a decoding request adds 1 token, a prefilling one
   its next chunk (min of what is left, the step's remaining token budget and the chunk size).
   Each needs KV blocks for its new context; when the cache is full the preemption policy's
   victim is preempted (default: the most recently admitted; blocks freed, recomputed from scratch
   later: vLLM's default recompute policy), possibly the requester itself.
2. Then, unless something was preempted, waiting requests in the queue order (default FIFO;
   head-of-line) while the batch has room (max_batch), budget is left and the admission policy's
   blocks fit (eager: the first chunk's; reserve: the whole context's, TensorRT-LLM style, never
   preempting). A request's cached prompt prefix (prefix cache) is not prefilled again.
The policies are small classes in policies.py, chosen by name in EngineConfig.
The step's time comes from the cost model for the exact composition (`StepCost`).

Token accounting per request: `past` tokens are in the KV cache, `gen` tokens were generated.
Every step brings a request to past = input + gen and samples one token. A fresh request first
prefills its prompt (in chunks); after a preemption it recomputes prompt plus the tokens it already
produced. Afterwards each decode step feeds the last sampled token (one new token: while decoding
past = input + gen - 1) and samples the next.

Scheduling ahead (`schedules_ahead`, engines with an overlap scheduler: SGLang's zero-overhead
scheduler, vLLM's async scheduling, TensorRT-LLM's overlap scheduler, catalog/data/engines.yaml
`overlap`): the CPU composes step n+1 while the GPU runs step n (reference/serving_facts.md s2.5),
so a request that reaches a busy replica after step n was composed, i.e. after the previous step
started, can join only the step after next. Such requests wait beside the queue (`_late`) until a
composition may see them; a replica that would otherwise run nothing takes them at once (its CPU
is idle, polling for requests). A closed-loop client's next request, sent when a step's last token
completes its predecessor, thus waits one more step than without overlap.

Fast path: when a step holds only decoding requests and nothing can join before a completion
(no waiting request admissible, no prefill in flight), the following steps differ only in
context lengths. The replica then plans a run of K steps in one go, K = steps until the first
completion (bounded by the KV blocks left and max_run_steps), timing all K steps with one
vectorised cost-model call. An arrival during a run cuts it at the next step boundary, so the
result equals stepping one iteration at a time (tested). Multi-token replicas (speculative
verification) plan such runs too, from the tokens each step keeps (serving/multi_token_run.py).
"""
from __future__ import annotations

import numpy as np

from infersim.costmodel.timer import StepTimer
from infersim.serving import batched, multi_token_run
from infersim.serving.compose import compose
from infersim.serving.config import EngineConfig
from infersim.serving.kvcache import KVCache
from infersim.serving.policies import ADMISSIONS, PREEMPTION_VICTIMS, QUEUE_ORDERS


class Replica:
    def __init__(self, index: int, role: str, cost: StepTimer, kv: KVCache, cfg: EngineConfig, sim,
                 schedules_ahead: bool = False):
        self.index = index
        self.schedules_ahead = schedules_ahead  # the CPU composes step n+1 while step n runs (module docstring)
        self._late: list[tuple[float, int]] = []  # (enqueue time, request) not yet visible to the scheduler
        self._prev_step = (-np.inf, -np.inf)  # (start, end) of the last step that ended
        self.role = role  # "both" (aggregated), "prefill" or "decode" (disaggregated pools)
        self.cost = cost
        self.windows = cost.windows
        self.kv = kv
        self.cfg = cfg
        self.admission = ADMISSIONS[cfg.admission](sim.state)
        self.victim = PREEMPTION_VICTIMS[cfg.preemption](sim.state)
        # a decode step feeds decode_width tokens per sequence (k + 1 when verifying drafts) and keeps
        # tokens_per_decode_step of them on average (the accepted drafts plus the target's own)
        self.decode_width = cost.decode_width
        self.multi_token = cost.tokens_per_decode_step != 1.0
        self.sim = sim
        self.st = sim.state
        self.waiting = QUEUE_ORDERS[cfg.queue_order](sim.state).new_queue()  # deque protocol
        self.running: list[int] = []
        self.busy = False        # a step or run is in flight
        self.start_pending = False
        self.version = 0         # invalidates a StepEnd event when a run is cut short
        self.outstanding = 0     # tokens of assigned, unfinished requests (router signal)
        # the step or run in flight
        self._t0 = 0.0
        self._ends: np.ndarray | list[float] | None = None  # step ends: an array for a run, [end] for one step
        self._rids: list[int] = []
        self._news: list[int] = []
        self._run = False
        self._multi_run = None  # serving/multi_token_run.py: the multi-token run in flight
        self._blocked_hit_blocks = 0  # see _compose
        self.batched_arrays = None  # serving/batched.py: the last composed batch's arrays
        # statistics
        self.busy_s = 0.0
        self.steps = 0
        self.kv_block_seconds = 0.0
        self.kv_peak = 0

    # -- arrivals ------------------------------------------------------------------------------
    def enqueue(self, rid: int, t: float) -> None:
        if self.schedules_ahead:
            self._late.append((t, rid))
        else:
            self.waiting.append(rid)
        if not self.busy:
            self.request_start(t)
        elif self._run and self._ends is not None and len(self._ends) > 1:
            self._cut(t)

    @property
    def queued(self) -> int:
        """Requests assigned here and not yet admitted (the queue and those not yet visible)."""
        return len(self.waiting) + len(self._late)

    def _reveal(self, t: float, everything: bool = False) -> None:
        """Move the late requests a composition at time t sees into the queue, in arrival order:
        those enqueued before the previous step started (the CPU composed this step during it) or
        after it ended (the replica was idle; its CPU takes a request as it comes); all of them
        when `everything`."""
        start, end = self._prev_step
        keep = []
        for entry in self._late:
            if everything or entry[0] <= start or entry[0] > end:
                self.waiting.append(entry[1])
            else:
                keep.append(entry)
        self._late = keep

    def request_start(self, t: float) -> None:
        if not self.start_pending:
            self.start_pending = True
            self.sim.schedule_start(self, t)

    def _cut(self, t: float) -> None:
        """End the run at the first step boundary at or after t (the step in flight finishes)."""
        k = int(self._ends.searchsorted(t, side="left")) + 1
        if self.schedules_ahead:
            k += 1  # the step after the one in flight was composed without the request
        if k < len(self._ends):
            self._ends = self._ends[:k]
            self.version += 1
            self.sim.schedule_step_end(self, float(self._ends[-1]))

    # -- steps ---------------------------------------------------------------------------------
    def start(self, t: float) -> None:
        self.start_pending = False
        if self.busy:
            return
        if self._late:
            self._reveal(t)
        rids, news, n_prefill, preempted, admission_blocked = self._compose()
        if not rids and self._late:  # nothing to run: the idle CPU takes the late requests now
            self._reveal(t, everything=True)
            rids, news, n_prefill, preempted, admission_blocked = self._compose()
        if not rids:
            return  # idle until the next arrival
        st = self.st
        # large batches: the step's requests as arrays (serving/batched.py), kept for step_end
        arrays = batched.step_arrays(self, rids, news) if len(rids) >= batched.MIN_BATCH else None
        steps, run = 1, None
        if (self.cfg.fast_path and n_prefill == 0 and not preempted and (admission_blocked or not self.waiting)
                and not self._late):
            # a run's block growth must neither preempt nor evict the cached prefix a blocked
            # request matched: evicting it shortens the match, which can make that request
            # admissible (its first chunk needs fewer blocks than pinning the whole prefix did)
            room = self.kv.free - self._blocked_hit_blocks
            if self.cost.decode_runs:
                if arrays is None:
                    steps = min(st.out[r] - st.gen[r] for r in rids)
                else:
                    steps = int((batched.output_lengths(st)[arrays[0]] - arrays[1]).min())
                steps = self._block_safe_steps(rids, min(steps, self.cfg.max_run_steps), room)
            elif self.cost.multi_token_runs:
                run = multi_token_run.plan_run(self, rids, self.cfg.max_run_steps, room, arrays)
                steps = 1 if run is None else len(run)
        if steps > 1 and run is not None:
            ends = np.concatenate(([t], self.cost.multi_token_run_seconds(run.past))).cumsum()[1:]
        elif steps > 1:
            pasts = arrays[2].tolist() if arrays is not None else [st.past[r] for r in rids]
            times = self.cost.composed_run_seconds(pasts, steps)
            ends = np.concatenate(([t], times)).cumsum()[1:]
        elif self.decode_width != 1:
            if arrays is not None:
                past, new, decoding = arrays[2].astype(float), arrays[4], arrays[5]
            else:
                past = np.array([st.past[r] for r in rids], dtype=float)
                decoding = np.array([st.gen[r] > 0 and st.inp[r] + st.gen[r] - st.past[r] == 1 for r in rids])
                new = np.array(news, dtype=float)
            widths = np.where(decoding, self.decode_width, new.astype(float))
            ends = [t + self.cost.step_seconds(past, widths, decoding)]
        else:
            pasts = arrays[2].tolist() if arrays is not None else [st.past[r] for r in rids]
            ends = [t + self.cost.composed_step_seconds(pasts, news)]
        self._t0 = t
        self._ends = ends
        self._rids, self._news, self._run = rids, news, steps > 1
        self._multi_run = run if steps > 1 else None
        self.busy = True
        self.sim.schedule_step_end(self, float(self._ends[-1]))

    def _accepted(self, rid: int) -> int:
        """Tokens a multi-token decode step (a speculative verification) keeps for this request:
        the timer's mean on average, handed out deterministically by an accumulator, at most
        decode_width and never past the request's output."""
        st = self.st
        acc = st.token_credit[rid] + self.cost.tokens_per_decode_step
        a = int(acc)
        st.token_credit[rid] = acc - a
        return max(1, min(a, self.decode_width, st.out[rid] - st.gen[rid]))

    def _block_safe_steps(self, rids: list[int], steps: int, room: int) -> int:
        """Largest k <= steps such that the blocks steps 1 .. k-1 of a decode run add fit in
        `room` blocks (at least 1: step 0's blocks are allocated)."""
        st, kv = self.st, self.kv
        if steps <= 1:
            return steps
        # Quick sufficient test: each request holds the blocks of step 0 (past + 1 tokens); over the
        # k - 1 tokens after those it crosses at most ceil((k - 1) / block_tokens) block boundaries,
        # each adding at most max_block_step blocks.
        if len(rids) * -(-(steps - 1) // kv.block_tokens) * kv.max_block_step <= room:
            return steps
        past = np.array([st.past[r] for r in rids], dtype=np.int64)
        held = np.array([st.held[r] for r in rids], dtype=np.int64)

        def fits(k: int) -> bool:  # step k-1 (0-based) needs blocks for past + k tokens
            # per request, as step_end allocates: one holding more than it needs frees nothing
            return int(np.maximum(kv.blocks_for_array(past + k) - held, 0).sum()) <= room
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
        end = float(ends[-1])
        busy = end - self._t0
        self._prev_step = (float(ends[-2]) if k > 1 else self._t0, end)
        self.busy_s += busy
        self.steps += k
        if k > 1:
            durations = ends.copy()
            durations[1:] -= ends[:-1]
            durations[0] -= self._t0
        else:
            durations = busy
        used_before = kv.used
        n_decode = 0
        finished: list[int] = []
        handoff: list[int] = []
        if self._multi_run is not None:
            n_decode = len(rids)
            multi_token_run.finish_run(self, self._multi_run, k, t, finished)
            self._multi_run = None
        elif self._run and len(rids) >= batched.MIN_BATCH:
            n_decode = len(rids)
            batched.finish_run(self, t, rids, news, k, finished)  # the loop below, as arrays
        elif self._run:
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
        elif len(rids) >= batched.MIN_BATCH:
            n_decode = batched.finish_step(self, t, rids, news, finished, handoff)  # the loop below, as arrays
        else:
            inp, out, past, gen, first, last_token = st.inp, st.out, st.past, st.gen, st.first, st.last_token
            multi, prefill_role = self.multi_token, self.role == "prefill"
            for rid, n in zip(rids, news):
                target = inp[rid] + gen[rid]
                decoding = gen[rid] > 0 and target - past[rid] == 1
                if decoding and multi:
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
                    self.sim.record_itl(t - last_token[rid], 1)
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
        owned = sum(st.held[r] - kv.prefix_blocks(len(st.pinned[r])) for r in self.running)
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
        kv.release(st.held[rid] - kv.prefix_blocks(len(pinned)))
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
        preempted, and whether a waiting request was left out for lack of room (serving/compose.py)."""
        return compose(self)
