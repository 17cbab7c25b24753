"""The discrete-event loop: events, the router and prefill/decode hand-offs across replicas.

Events leave a heap in (time, sequence) order, so ties are deterministic (first pushed, first
handled). One class per event:
- `Arrival`: a request reaches the router, which picks a replica (of the prefill pool when
  disaggregated) and queues it there.
- `StepStart`: a replica composes its next step. Starting is an event of its own, pushed behind
  anything already due at the same time, so requests arriving at the instant a step ends (a
  closed-loop client's next request, a burst of same-timestamp arrivals) join that step.
- `StepEnd`: a replica's step (or closed-form run of decode steps) ends; tokens are emitted.
- `KVArrival`: a disaggregated request's KV cache has crossed the link to its decode replica; the
  client's first token is timed here (it streams from the decode worker).
"""
from __future__ import annotations

import heapq
import itertools
import math

import numpy as np

from infersim.serving.metrics import LatencyHistogram
from infersim.serving.policies import ROUTERS

ITL_FLUSH = 8192  # buffered inter-token samples before folding them into the histogram


class RequestState:
    """Per-request mutable state as plain lists (fast scalar access in the scheduler)."""

    def __init__(self, n: int):
        nan = math.nan
        self.inp = [0] * n
        self.out = [0] * n
        self.arrival = [nan] * n
        self.ids: list[tuple] = [()] * n
        self.priority = [0] * n  # lower = more urgent (policies.py)
        self.past = [0] * n
        self.gen = [0] * n
        self.held = [0] * n
        self.pinned: list[tuple] = [()] * n
        self.first = [nan] * n
        self.last_token = [nan] * n  # time of the latest generated token
        self.token_credit = [0.0] * n  # multi-token decode steps: fractional tokens carried over
        self.done = [nan] * n
        self.replica_of = [-1] * n
        self.prefill_replica = [-1] * n
        self.cached = [0] * n
        self.preemptions = [0] * n


class Arrival:
    __slots__ = ("rid",)

    def __init__(self, rid: int):
        self.rid = rid

    def handle(self, sim: "Simulation", t: float) -> None:
        sim.route(self.rid, t)


class StepStart:
    __slots__ = ("replica",)

    def __init__(self, replica):
        self.replica = replica

    def handle(self, sim: "Simulation", t: float) -> None:
        self.replica.start(t)


class StepEnd:
    __slots__ = ("replica", "version")

    def __init__(self, replica, version: int):
        self.replica, self.version = replica, version

    def handle(self, sim: "Simulation", t: float) -> None:
        self.replica.step_end(t, self.version)


class KVArrival:
    __slots__ = ("rid", "replica")

    def __init__(self, rid: int, replica):
        self.rid, self.replica = rid, replica

    def handle(self, sim: "Simulation", t: float) -> None:
        # The client's stream comes from the decode worker (SGLang's PD router returns the decode
        # server's stream; Dynamo's and TensorRT-LLM's disaggregated servers the generation
        # worker's), which holds the prefill's token once the KV cache has arrived: the client sees
        # the first token no earlier than that (a lower bound: admission on the decode worker may add more).
        sim.state.first[self.rid] = t
        self.replica.enqueue(self.rid, t)


class Simulation:
    def __init__(self, state: RequestState, pools: list[list], router: str, transfer_seconds,
                 closed_loop: int | None, progress=None, debug: bool = False):
        self.state = state
        self.pools = pools               # [replicas] aggregated, or [prefill replicas, decode replicas]
        self.router = ROUTERS.check(router)  # a name in the ROUTERS registry
        # disaggregated pools: request id -> seconds its KV cache takes over the link (FIFO per
        # decode replica); None when aggregated
        self.transfer_seconds = transfer_seconds
        self.closed_loop = closed_loop
        self.progress = progress
        self.debug = debug  # check the cheap invariants after every step (tests; slower)
        self._heap: list = []
        self._seq = itertools.count()
        self.now = 0.0
        self._router = None  # the router policy (policies.py), built from `router` on first use
        self._next_rid = 0
        self.completed = 0
        self.itl = LatencyHistogram()
        self._itl_d: list[float] = []  # buffered inter-token gaps (seconds)
        self._itl_w: list[float] = []  # and the weight of each
        self.link_free = {}
        self.link_busy_s = 0.0
        self.transfers = 0
        self.events = 0

    # -- event plumbing ------------------------------------------------------------------------
    def push(self, t: float, event) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), event))

    def schedule_start(self, replica, t: float) -> None:
        """Start the replica's next step once everything due at time t has been handled. When
        nothing else is due at t, that is now: starting at once equals queueing a StepStart,
        which would be the next event popped, and saves the heap round trip."""
        if self._heap and self._heap[0][0] <= t:
            self.push(t, StepStart(replica))
        else:
            replica.start(t)

    def schedule_step_end(self, replica, t: float) -> None:
        self.push(t, StepEnd(replica, replica.version))

    def run(self, n_requests: int) -> float:
        n_open = n_requests if self.closed_loop is None else min(self.closed_loop, n_requests)
        for rid in range(n_open):
            self.push(self.state.arrival[rid], Arrival(rid))
        self._next_rid = n_open
        heap = self._heap
        pop = heapq.heappop
        while heap:
            t, _, ev = pop(heap)
            if t < self.now:
                raise AssertionError(f"clock went backwards: {t} < {self.now}")
            self.now = t
            self.events += 1
            ev.handle(self, t)
        self._flush_itl()
        return self.now

    # -- routing -------------------------------------------------------------------------------
    def _pick(self, pool_index: int, rid: int):
        pool = self.pools[pool_index]
        if len(pool) == 1:
            return pool[0]
        if self._router is None:  # built on first use: the pools are complete by then
            self._router = ROUTERS[self.router](self.state, self.pools)
        return self._router.pick(pool_index, rid)

    def _load(self, rid: int, role: str) -> int:
        """Tokens a request adds to a replica's outstanding work: prompt on a prefill replica,
        output on a decode replica, both when aggregated."""
        st = self.state
        return {"prefill": st.inp[rid], "decode": st.out[rid]}.get(role, st.inp[rid] + st.out[rid])

    def route(self, rid: int, t: float) -> None:
        st = self.state
        replica = self._pick(0, rid)
        replica.outstanding += self._load(rid, replica.role)
        if replica.role == "prefill":
            st.prefill_replica[rid] = replica.index
        replica.enqueue(rid, t)

    def hand_off(self, rid: int, src, t: float) -> None:
        """Prefill finished on a prefill replica (its `past` is the prompt, one token sampled):
        move the KV cache to a decode replica, where decoding resumes."""
        src.outstanding -= self._load(rid, src.role)
        dst = self._pick(1, rid)
        dst.outstanding += self._load(rid, dst.role)
        start = max(t, self.link_free.get(dst.index, 0.0))
        dur = self.transfer_seconds(rid)
        self.link_free[dst.index] = start + dur
        self.link_busy_s += dur
        self.transfers += 1
        self.push(start + dur, KVArrival(rid, dst))

    def complete(self, rid: int, replica, t: float) -> None:
        st = self.state
        st.done[rid] = t
        replica.outstanding -= self._load(rid, replica.role)
        self.completed += 1
        if self.progress is not None and (self.completed & 1023) == 0:
            self.progress(self.completed)
        if self.closed_loop is not None and self._next_rid < len(st.inp):
            nxt = self._next_rid
            self._next_rid += 1
            st.arrival[nxt] = t
            self.push(t, Arrival(nxt))

    # -- inter-token latencies -----------------------------------------------------------------
    def record_itl(self, durations, weight: int) -> None:
        """Buffer inter-token gaps (seconds: an array, or one float), each of this weight."""
        if isinstance(durations, float):
            self._itl_d.append(durations)
            self._itl_w.append(float(weight))
        else:
            self._itl_d.extend(durations.tolist())
            self._itl_w.extend([float(weight)] * durations.size)
        if len(self._itl_d) >= ITL_FLUSH:
            self._flush_itl()

    def _flush_itl(self) -> None:
        if self._itl_d:
            self.itl.add(np.array(self._itl_d), np.array(self._itl_w))
            self._itl_d, self._itl_w = [], []
