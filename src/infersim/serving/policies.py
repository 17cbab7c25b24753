"""Scheduling and routing policies of the serving simulator: small classes registered by name.

Four kinds, one registry each (the name is what `--queue-order`, `--preemption`, `--admission`,
`--router` and a deployment file's `engine:` section take):
- `QUEUE_ORDERS`: the order in which a replica admits its waiting requests;
- `PREEMPTION_VICTIMS`: which running request gives up its KV blocks when a step runs out of them;
- `ADMISSIONS`: how many KV blocks a waiting request must find free to be admitted;
- `ROUTERS`: which replica of a pool an arriving request (or a finished prefill) goes to.

Priorities: a request's priority is an integer, lower = more urgent (vLLM's convention); a workload
without priorities has every request at 0. Policies read the per-request state (`RequestState` in
engine.py: `inp`, `out`, `past`, `priority`, `ids`, ...) and the replicas' `outstanding` tokens.

Add a policy: subclass the kind's base class here (or in any module imported before the run) and
decorate it with the registry's `register("name")`. The name is then accepted by the CLI and YAML
(both validate against the registries), and the property tests in tests/test_serving_sim.py run over
every registered name, so the new policy is checked against the simulator's invariants unchanged.
"""
from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Iterator, Mapping

from infersim.errors import InputError


class Registry(Mapping):
    """Policy classes of one kind by name, in registration order (iterating yields the names)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._classes: dict[str, type] = {}

    def register(self, name: str):
        """Class decorator: make the class selectable as `name`."""
        def add(cls: type) -> type:
            if name in self._classes:
                raise ValueError(f"{self.kind} '{name}' is registered twice")
            self._classes[name] = cls
            cls.name = name
            return cls
        return add

    def __getitem__(self, name: str) -> type:
        try:
            return self._classes[name]
        except (KeyError, TypeError):
            raise InputError(f"unknown {self.kind} '{name}'; choose one of {', '.join(self._classes)}") from None

    def check(self, name: str) -> str:
        """`name` if registered, else the InputError listing the known names."""
        self[name]
        return name

    def __iter__(self) -> Iterator[str]:
        return iter(self._classes)

    def __len__(self) -> int:
        return len(self._classes)

    def __contains__(self, name: object) -> bool:
        return name in self._classes

    def __repr__(self) -> str:
        return f"Registry({self.kind}: {', '.join(self._classes)})"


QUEUE_ORDERS = Registry("queue order")
PREEMPTION_VICTIMS = Registry("preemption policy")
ADMISSIONS = Registry("admission policy")
ROUTERS = Registry("router")


# ----------------------------------------------------------------------------- queue order

class QueueOrder:
    """Makes a replica's waiting queue. The scheduler uses the deque protocol: `append(rid)` when a
    request arrives, `appendleft(rid)` when a running request is preempted, `q[0]` for the next
    request to admit and `popleft()` to admit it. Admission is head-of-line: when the next request
    does not fit, nothing behind it is admitted in that step."""

    name = ""

    def __init__(self, state):
        self.state = state

    def new_queue(self):
        raise NotImplementedError


class KeyedQueue:
    """A waiting queue ordered by key(rid), ties by request id (= arrival order at the system). A
    preempted request re-enters at its key, so it goes before later arrivals of its class."""

    __slots__ = ("_heap", "_key")

    def __init__(self, key):
        self._heap: list = []
        self._key = key

    def append(self, rid: int) -> None:
        heapq.heappush(self._heap, (self._key(rid), rid))

    appendleft = append

    def __getitem__(self, i: int) -> int:
        if i != 0:
            raise IndexError("a keyed waiting queue exposes its head only")
        return self._heap[0][1]

    def popleft(self) -> int:
        return heapq.heappop(self._heap)[1]

    def __len__(self) -> int:
        return len(self._heap)

    def __iter__(self):
        return (rid for _, rid in sorted(self._heap))


@QUEUE_ORDERS.register("fcfs")
class FirstComeFirstServed(QueueOrder):
    """Arrival order; a preempted request goes back to the head of the queue (vLLM's default)."""

    def new_queue(self):
        return deque()


@QUEUE_ORDERS.register("priority")
class ByPriority(QueueOrder):
    """Most urgent priority first (lowest number), first come first served within a priority (vLLM's
    `--scheduling-policy priority`)."""

    def new_queue(self):
        return KeyedQueue(self.state.priority.__getitem__)


@QUEUE_ORDERS.register("shortest-prompt")
class ShortestPromptFirst(QueueOrder):
    """Fewest prompt tokens first, first come first served among equal prompts: short requests stop
    waiting behind long prefills (lower mean TTFT; long prompts can starve under sustained load)."""

    def new_queue(self):
        return KeyedQueue(self.state.inp.__getitem__)


# ----------------------------------------------------------------------------- preemption victim

class PreemptionVictim:
    """Chooses the running request to preempt when a step's requests need more KV blocks than are
    free (eager admission). The victim's blocks are freed and it is recomputed from scratch later
    (vLLM's recompute policy); the scheduler repeats until the blocks fit or the requester itself
    was chosen. A victim already scheduled in this step is taken out of the step again."""

    name = ""

    def __init__(self, state):
        self.state = state

    def pick(self, running: list[int]) -> int:
        """Index into `running` (admission order, never empty) of the request to preempt."""
        raise NotImplementedError


@PREEMPTION_VICTIMS.register("newest")
class NewestFirst(PreemptionVictim):
    """The most recently admitted running request (vLLM's default)."""

    def pick(self, running: list[int]) -> int:
        return len(running) - 1


@PREEMPTION_VICTIMS.register("fewest-tokens")
class FewestTokens(PreemptionVictim):
    """The request with the fewest tokens in its KV cache: the least work to recompute. Ties go to
    the most recently admitted."""

    def pick(self, running: list[int]) -> int:
        past = self.state.past
        best = len(running) - 1
        for j in range(best - 1, -1, -1):
            if past[running[j]] < past[running[best]]:
                best = j
        return best


@PREEMPTION_VICTIMS.register("lowest-priority")
class LowestPriority(PreemptionVictim):
    """The least urgent request (highest priority number), the most recently admitted among those
    (vLLM's priority scheduling)."""

    def pick(self, running: list[int]) -> int:
        prio = self.state.priority
        best = len(running) - 1
        for j in range(best - 1, -1, -1):
            if prio[running[j]] > prio[running[best]]:
                best = j
        return best


# ----------------------------------------------------------------------------- admission

class Admission:
    """How much KV room a waiting request needs to be admitted."""

    name = ""

    def __init__(self, state):
        self.state = state

    def context(self, rid: int, first_chunk_end: int) -> int:
        """Tokens of context whose KV blocks the request must get at admission; `first_chunk_end`
        is its cached tokens plus this step's chunk."""
        raise NotImplementedError


@ADMISSIONS.register("eager")
class Eager(Admission):
    """Admit when the first chunk's blocks fit; later growth may preempt (vLLM)."""

    def context(self, rid: int, first_chunk_end: int) -> int:
        return first_chunk_end


@ADMISSIONS.register("reserve")
class Reserve(Admission):
    """Admit only when blocks for the whole context (input + output) fit, so nothing is ever
    preempted (TensorRT-LLM's default GUARANTEED_NO_EVICT capacity scheduler)."""

    def context(self, rid: int, first_chunk_end: int) -> int:
        st = self.state
        return st.inp[rid] + st.out[rid]


# ----------------------------------------------------------------------------- routers

# Assumption: prefix affinity yields to load balance beyond 2x the least-loaded replica's work.
AFFINITY_IMBALANCE = 2.0


def least_outstanding(replicas):
    """The replica with the fewest outstanding tokens, the lowest index among equals."""
    return min(replicas, key=lambda r: (r.outstanding, r.index))


class Router:
    """Picks the replica of a pool that a request goes to. One instance per simulation, so a router
    may keep state (a round-robin position, a routing table). `pools` are [replicas] when
    aggregated, [prefill replicas, decode replicas] when disaggregated; a replica's `outstanding`
    is the tokens of its assigned, unfinished requests."""

    name = ""

    def __init__(self, state, pools: list[list]):
        self.state = state
        self.pools = pools

    def pick(self, pool_index: int, rid: int):
        """The replica of pools[pool_index] (which has at least two) for request rid."""
        raise NotImplementedError


@ROUTERS.register("least-outstanding")
class LeastOutstanding(Router):
    """The replica with the fewest outstanding tokens (ties: lowest index)."""

    def pick(self, pool_index: int, rid: int):
        return least_outstanding(self.pools[pool_index])


@ROUTERS.register("round-robin")
class RoundRobin(Router):
    """Each pool's replicas in turn."""

    def __init__(self, state, pools):
        super().__init__(state, pools)
        self._next = [0] * len(pools)

    def pick(self, pool_index: int, rid: int):
        pool = self.pools[pool_index]
        r = pool[self._next[pool_index] % len(pool)]
        self._next[pool_index] += 1
        return r


@ROUTERS.register("prefix-affinity")
class PrefixAffinity(Router):
    """Follow the replica last sent the deepest known block of this prompt (block ids chain, so that
    is the longest shared prefix); requests without prefix ids go least-outstanding. A routing table,
    as KV-aware routers keep; it does not peek into replicas' caches. Like SGLang's cache-aware router
    it gives up affinity when that replica is overloaded: more than AFFINITY_IMBALANCE x the least
    loaded one's outstanding tokens plus this prompt."""

    def __init__(self, state, pools):
        super().__init__(state, pools)
        self._owner: dict = {}  # prefix block id -> replica its prompt was last routed to

    def pick(self, pool_index: int, rid: int):
        pool = self.pools[pool_index]
        ids = self.state.ids[rid]
        least = least_outstanding(pool)
        if not ids:
            return least
        owner = None
        for hid in ids:
            o = self._owner.get(hid)
            if o is None:
                break
            owner = o
        fair = AFFINITY_IMBALANCE * least.outstanding + self.state.inp[rid]
        choice = owner if owner is not None and owner in pool and owner.outstanding <= fair else least
        for hid in ids:
            self._owner[hid] = choice
        return choice


@ROUTERS.register("slo-class")
class SLOClass(Router):
    """Premium requests on a reserved share of each pool, the others on the rest, least-outstanding
    within each part.

    Premium = the most urgent priority of a workload with two or more priorities; with one (or no
    priorities) every request is standard and all replicas serve it. Reserved replicas: each pool's
    first ceil(premium share x replicas), at least one and leaving at least one for the rest, where
    the premium share is the premium requests' share of the workload's tokens (input + output):
    capacity in proportion to demand, rounded in the premium class's favour, so premium requests
    never queue behind standard ones."""

    def __init__(self, state, pools):
        super().__init__(state, pools)
        prio = state.priority
        classes = set(prio)
        self.premium = min(classes) if len(classes) > 1 else None
        self._parts = []  # per pool: (premium replicas, standard replicas)
        if self.premium is None:
            self._parts = [(pool, pool) for pool in pools]
            return
        tokens = [i + o for i, o in zip(state.inp, state.out)]
        share = sum(t for t, p in zip(tokens, prio) if p == self.premium) / max(sum(tokens), 1)
        for pool in pools:
            n = min(max(math.ceil(share * len(pool)), 1), len(pool) - 1) if len(pool) > 1 else 1
            self._parts.append((pool[:n], pool[n:] or pool))

    def pick(self, pool_index: int, rid: int):
        premium, standard = self._parts[pool_index]
        return least_outstanding(premium if self.state.priority[rid] == self.premium else standard)
