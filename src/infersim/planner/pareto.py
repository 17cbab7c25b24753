"""Pareto frontiers: the points no other point beats on every objective at once."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, TypeVar

T = TypeVar("T")
Sense = Literal["max", "min"]


def pareto_front(points: Sequence[T], objectives: Sequence[tuple[Callable[[T], float], Sense]]) -> list[T]:
    """The points of `points` that no other point dominates, in input order. `objectives` are
    (value of a point, "max" or "min"); a point dominates another when it is at least as good on
    every objective and strictly better on one. Of several points with identical values the first
    is kept. Points whose value is None for an objective are left out (not comparable).
    O(n^2): the frontier's input is one family's points (hundreds), not the whole sweep."""
    signs = [1.0 if sense == "max" else -1.0 for _, sense in objectives]
    keyed = []
    for p in points:
        vals = [f(p) for f, _ in objectives]
        if any(v is None for v in vals):
            continue
        keyed.append((p, tuple(s * float(v) for s, v in zip(signs, vals))))
    front: list[T] = []
    kept: set[tuple] = set()
    for i, (p, a) in enumerate(keyed):
        dominated = any(all(x >= y for x, y in zip(b, a)) and b != a for j, (_, b) in enumerate(keyed) if j != i)
        if not dominated and a not in kept:
            kept.add(a)
            front.append(p)
    return front
