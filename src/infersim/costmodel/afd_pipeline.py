"""The per-layer AFD exchange as a pipeline of micro-batches: where GPU attention, the GPU<->LPU link
and the LPU FFN stages overlap, and where each waits. `costmodel/afd.py` bounds the step in closed
form; this schedules the same parts (`AFDStepCost.parts`), layer by layer.

One attention replica with m micro-batches; per step and per FFN layer l each micro-batch runs
  attention on the replica's GPU   A / L            (assumption: the attention part, with its
                                                     embedding, LM head and step-level kernels,
                                                     spread evenly over the L FFN layers)
  link up                           X / 2L, of which X_bw / 2L occupies the link (the rest is its
                                                     latency); one path carries both directions, as
                                                     the closed form's link bound counts it
  the LPU stage of layer l          F_busy / L busy, then (F - F_busy) / L of pipeline and hop latency
                                                     that keeps the stage free
  link down                         as link up.
The stage of layer l is shared by G attention replicas (G = R / u): after each of this replica's
micro-batches it is held (G - 1) F_busy / L for the others' (assumption: round robin, the other
replicas in step with this one; with G < 1 nothing is held, the micro-batch still takes the stage).
The engine's host work O per step runs on the host: with an overlap scheduler beside the previous
step (at most one step ahead: once the step before that has ended), without one after the previous step ends and before this one's GPU work.
Every resource serves its ready work first come, first served (ties: earlier step, layer, micro-batch).
Steps repeat: the step time is the steady-state period, measured over steps that have steps after them.
"""
from __future__ import annotations

import heapq
from dataclasses import asdict, dataclass

KINDS = ("attention", "up", "ffn", "down")
STEPS = 16       # steps simulated; the reported step has TAIL steps after it (the last steps run
TAIL = 3         # without the next step's traffic on the link and stages); the step times up to it
MAX_STEPS = 256  # must repeat with some cycle (else twice the steps are simulated, up to MAX_STEPS)


@dataclass(frozen=True)
class Slot:
    """One task of the steady-state step, seconds from that step's first attention: when its inputs
    were ready, when it started and ended (end includes latency after the busy time), the wait for
    its resource (start - ready) and how long the resource sat idle just before it."""

    kind: str
    micro_batch: int
    layer: int
    ready_s: float
    start_s: float
    end_s: float
    queue_s: float
    resource_idle_s: float


@dataclass(frozen=True)
class AFDPipeline:
    """The schedule of one steady-state step. step_s: its period; bounds_s: the closed-form bounds;
    strict_sum_s: every part end to end (host work, every micro-batch's chain and the other replicas'
    share of the stages); busy_s / idle_s: per resource ('host', 'gpu', 'link', 'lpu stage' = the
    busiest stage), seconds per step; layers[l]: the slots of layer l; host: the host work's slot."""

    step_s: float
    micro_batches: int
    layers_n: int
    replicas_per_pool: float
    bounds_s: dict[str, float]
    strict_sum_s: float
    busy_s: dict[str, float]
    idle_s: dict[str, float]
    queue_s: dict[str, float]
    host: Slot
    layers: list[list[Slot]]

    def as_dict(self) -> dict:
        return asdict(self)


def _period(diffs: list[float]) -> float | None:
    """The mean step time over the shortest cycle c with which the later half of the step times
    repeats (each equals the one c steps before it, to 1e-9; c at most a quarter of them), or None
    when they do not repeat yet."""
    half = len(diffs) // 2
    scale = max(max(diffs[half:], default=0.0), 1e-300)
    for c in range(1, len(diffs) // 4 + 1):
        if all(abs(diffs[i] - diffs[i - c]) <= 1e-9 * scale for i in range(half, len(diffs))):
            return sum(diffs[-c:]) / c
    return None


def schedule_afd(parts: dict[str, float], bounds: dict[str, float], replicas_per_pool: float, n_ffn: int,
                 host_overlaps: bool, steps: int = STEPS) -> AFDPipeline:
    """Schedule `steps` decode steps of one attention replica from `AFDStepCost.parts` of one scalar
    step (seconds) and report the last. `bounds` (the closed form's) ride along for the reader."""
    m, L = int(round(parts["m"])), max(int(n_ffn), 1)
    a = parts["attention_s"] / L
    link_busy, link_lat = parts["link_bw_s"] / (2 * L), (parts["link_s"] - parts["link_bw_s"]) / (2 * L)
    f_busy, f_lat = parts["ffn_busy_s"] / L, (parts["ffn_s"] - parts["ffn_busy_s"]) / L
    others = max(replicas_per_pool - 1.0, 0.0) * f_busy
    # task table: (resource, busy, held after, latency after, dependencies)
    res, busy, hold, lat, deps, keys = [], [], [], [], [], []

    def task(resource, b, key, after=(), h=0.0, latency=0.0) -> int:
        res.append(resource), busy.append(b), hold.append(h), lat.append(latency), deps.append(list(after))
        keys.append(key)
        return len(res) - 1

    hosts, ids = [], {}
    for k in range(steps):
        if k == 0:
            after = ()
        elif host_overlaps:   # one step ahead: while step k - 1 runs, once step k - 2 has ended
            after = (hosts[k - 1],) + (tuple(ids[k - 2, "down", j, L - 1] for j in range(m)) if k > 1 else ())
        else:
            after = tuple(ids[k - 1, "down", j, L - 1] for j in range(m))
        hosts.append(task("host", parts["overhead_s"], (k, "host", 0, -1), after))
        for l in range(L):
            for j in range(m):
                first = (hosts[k],) + ((ids[k - 1, "down", j, L - 1],) if k else ())
                prev = first if l == 0 else (ids[k, "down", j, l - 1],)
                at = ids[k, "attention", j, l] = task("gpu", a, (k, "attention", j, l), prev)
                up = ids[k, "up", j, l] = task("link", link_busy, (k, "up", j, l), (at,), latency=link_lat)
                ffn = ids[k, "ffn", j, l] = task(("lpu", l), f_busy, (k, "ffn", j, l), (up,), h=others, latency=f_lat)
                ids[k, "down", j, l] = task("link", link_busy, (k, "down", j, l), (ffn,), latency=link_lat)
    n = len(res)
    succ = [[] for _ in range(n)]
    waiting = [len(d) for d in deps]
    for i, d in enumerate(deps):
        for p in d:
            succ[p].append(i)
    ready, start, end = [0.0] * n, [0.0] * n, [0.0] * n
    idle_before = [0.0] * n
    free: dict = {}
    heap = [(0.0, i) for i in range(n) if not deps[i]]
    while heap:
        t, i = heapq.heappop(heap)
        r = res[i]
        f = free.get(r, 0.0)
        start[i] = max(t, f)
        idle_before[i] = max(0.0, t - f) if r in free else 0.0
        free[r] = start[i] + busy[i] + hold[i]
        end[i] = start[i] + busy[i] + lat[i]
        for s in succ[i]:
            ready[s] = max(ready[s], end[i])
            waiting[s] -= 1
            if not waiting[s]:
                heapq.heappush(heap, (ready[s], s))
    step_end = [max(end[ids[k, "down", j, L - 1]] for j in range(m)) for k in range(steps)]
    last = max(steps - 1 - TAIL, 1)
    period = _period([b - a for a, b in zip(step_end[:last], step_end[1:last + 1])])
    if period is None:   # not periodic yet (a transient still draining): simulate longer
        if steps < MAX_STEPS:
            return schedule_afd(parts, bounds, replicas_per_pool, n_ffn, host_overlaps, 2 * steps)
        period = (step_end[last] - step_end[last // 2]) / (last - last // 2)
    origin = start[ids[last, "attention", 0, 0]]

    def slot(i) -> Slot:
        _, kind, j, l = keys[i]
        return Slot(kind, j, l, ready[i] - origin, start[i] - origin, end[i] - origin, start[i] - ready[i],
                    idle_before[i])

    layers = [[slot(ids[last, kind, j, l]) for j in range(m) for kind in KINDS] for l in range(L)]
    busy_s = {"host": 0.0, "gpu": 0.0, "link": 0.0, "lpu stage": 0.0}
    stages = [0.0] * L
    for i in range(n):   # what the resources are held for in the last step
        if keys[i][0] == last:
            r = res[i]
            if isinstance(r, tuple):
                stages[r[1]] += busy[i] + hold[i]
            else:
                busy_s[r] += busy[i]
    busy_s["lpu stage"] = max(stages)
    idle_s = {k: max(0.0, period - v) for k, v in busy_s.items()}
    queue_s = {"gpu": 0.0, "link": 0.0, "lpu stage": 0.0}
    for row in layers:
        for s in row:
            queue_s[{"attention": "gpu", "ffn": "lpu stage"}.get(s.kind, "link")] += s.queue_s
    strict = parts["overhead_s"] + m * (parts["attention_s"] + parts["ffn_s"] + parts["link_s"] + others * L)
    return AFDPipeline(period, m, L, replicas_per_pool, dict(bounds), strict, busy_s, idle_s, queue_s,
                       slot(hosts[last]), layers)
