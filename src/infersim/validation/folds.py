"""Cross-validation folds for `infersim calibrate`, and grid-edge flags for fitted parameters.

Two ways to hold rows out, both reported:
* row folds (`row_folds`): rows dealt at random into K folds. Rows from one source (one sweep, one
  submission) then sit on both sides of a split, so a held-out row has its siblings in training:
  the figure is optimistic.
* source-grouped folds (`source_folds`): leave-one-source-out. Every source group is held out in
  turn and predicted by the fit on all the other groups, so a fold never splits a group. No seed
  (nothing is drawn), and the groups are few enough (~45) that one fit per group is cheap (a fit
  is an argmin over a precomputed rows x grid matrix).

`source_group(source)` normalises the measurement CSV's `source` column so that one document (or
one sweep) is one group:
* MLPerf results (`github.com/mlcommons/inference_results_vX.Y : closed/SUBMITTER/...`): one group
  per round, division and submitter (`mlperf vX.Y closed/SUBMITTER`): one team's tuned submission
  shares its software, tuning and reporting across its systems and scenarios.
* anything else: the text before the first " (" (remarks) and before " @" (a commit pin), without
  the URL scheme and "www.", lower-cased, trailing "/" removed; so every row of one document (the
  TensorRT-LLM perf-overview sweep, the NIM benchmark page, ...) is one group.
"""
from __future__ import annotations

import re

import numpy as np

_MLPERF = re.compile(r"mlcommons/inference_results_(v[\d.]+)\s*:\s*(closed|open)/([^/\s]+)/", re.IGNORECASE)


def source_group(source: str) -> str:
    """The group key of a row's `source` text (see the module docstring)."""
    m = _MLPERF.search(source)
    if m:
        return f"mlperf {m.group(1)} {m.group(2).lower()}/{m.group(3)}"
    text = source.split(" (", 1)[0].split(" @", 1)[0].strip()
    text = re.sub(r"^https?://", "", text, flags=re.IGNORECASE)
    text = re.sub(r"^www\.", "", text, flags=re.IGNORECASE)
    return text.rstrip("/").lower() or "(no source)"


def row_folds(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index per row: a random permutation dealt into k folds (sizes differ by at most 1)."""
    return rng.permutation(n) % k if k > 1 else np.zeros(n, dtype=int)


def source_folds(groups: list[str]) -> np.ndarray:
    """Fold index per row for leave-one-source-out: one fold per distinct group (sorted by name),
    so rows of one group always share a fold."""
    names = sorted(set(groups))
    index = {g: i for i, g in enumerate(names)}
    return np.array([index[g] for g in groups], dtype=int)


def grid_edges(values: dict[str, float], grid: dict[str, np.ndarray]) -> dict[str, str]:
    """{parameter: "lower edge (v)" / "upper edge (v)"} for every fitted value sitting on the first
    or last point of its grid (a grid of one point is a fixed value, not fitted, and never flagged):
    the fit might have gone further, so the value is a bound, not an estimate."""
    flags = {}
    for name, v in values.items():
        g = np.asarray(grid.get(name, []), dtype=float)
        if g.size < 2:
            continue
        lo, hi = float(np.min(g)), float(np.max(g))
        if np.isclose(v, lo, rtol=1e-9, atol=0.0) or v == lo:
            flags[name] = f"lower edge ({lo:g})"
        elif np.isclose(v, hi, rtol=1e-9, atol=0.0):
            flags[name] = f"upper edge ({hi:g})"
    return flags


def fold_range(value: dict[str, float], fold_values: list[dict[str, float]], grid: dict[str, np.ndarray]
               ) -> dict[str, dict]:
    """{parameter: {"low", "high", "folds", "basis"}}: the range of a fitted value over the fits of a
    cross-validation's folds (how far dropping one group of the data moves it). When every fold
    agrees, the range is the grid points beside the value (the fit cannot resolve finer)."""
    out = {}
    for name, v in value.items():
        g = np.sort(np.asarray(grid.get(name, []), dtype=float))
        if g.size < 2:
            continue
        seen = [float(f[name]) for f in fold_values if name in f] + [float(v)]
        low, high = min(seen), max(seen)
        basis = f"range over {len(seen) - 1} leave-one-group-out fits"
        if low == high:
            i = int(np.argmin(np.abs(g - v)))
            low, high = float(g[max(i - 1, 0)]), float(g[min(i + 1, g.size - 1)])
            basis += " (all equal: the neighbouring grid points)"
        out[name] = {"low": low, "high": high, "folds": len(seen) - 1, "basis": basis}
    return out


# A row rests on a fitted parameter when moving that parameter alone moves the row's prediction by
# more than this (relative): the rows that constrain it, as opposed to rows the fit merely includes.
RESTS_ON_CHANGE = 0.05


def rows_resting_on(logerr: np.ndarray, pts: dict[str, np.ndarray], values: dict[str, float],
                    ids: list[str | None]) -> dict[str, dict]:
    """{parameter: {"rows": n, "ids": [...], "basis": ...}} over the fit's rows (`logerr`: rows x grid
    points of log(pred / measured), `pts`: each parameter's value per grid point): the rows whose
    prediction moves by more than RESTS_ON_CHANGE when that parameter alone goes to the grid
    points beside its fitted value (halving or doubling where the grid allows, the others held).
    Rows whose id is None (InferenceX points) are counted, not listed."""
    at = np.ones(logerr.shape[1], dtype=bool)
    for k, v in values.items():
        at &= np.isclose(pts[k], v)
    g0 = int(np.argmax(at))
    out = {}
    for name, v in values.items():
        others = np.ones(logerr.shape[1], dtype=bool)
        for k, w in values.items():
            if k != name:
                others &= np.isclose(pts[k], w)
        near = np.flatnonzero(others & (pts[name] >= v / 2) & (pts[name] <= max(2 * v, 1e-300)))
        if v == 0:  # a zero value: its nearest non-zero neighbour
            nonzero = np.flatnonzero(others & (pts[name] > 0))
            near = nonzero[np.argsort(pts[name][nonzero])[:1]]
        near = [g for g in near if g != g0]
        if not near:
            continue
        moved = np.max(np.abs(np.expm1(logerr[:, near] - logerr[:, [g0]])), axis=1)
        hit = [i for i, m in zip(ids, moved) if m > RESTS_ON_CHANGE]
        lo, hi = float(np.min(pts[name][near + [g0]])), float(np.max(pts[name][near + [g0]]))
        out[name] = {"rows": len(hit), "ids": [i for i in hit if i is not None],
                     "basis": f"rows whose prediction moves by more than {RESTS_ON_CHANGE:.0%} with {name} alone "
                              f"between {lo:g} and {hi:g} (its grid points beside the fit, within x0.5-x2)"}
    return out
