"""Interactivity bands: the ranges of tokens/s per user in which the industry reads its throughput
against interactivity chart (GPUs win the low end, LPUs and wafers exist for the high end).
`validate` groups its InferenceX errors by them and `frontier` gives a verdict per band: one
definition for both."""
from __future__ import annotations

# (label, lowest tok/s per user, inclusive); each band ends where the next begins
BANDS = (("<50", 0.0), ("50-150", 50.0), ("150-400", 150.0), (">400", 400.0))
BAND_NAMES = tuple(name for name, _ in BANDS)


def band_of(tok_s_per_user: float | None) -> str:
    """The band of a per-user speed ('unknown' for None)."""
    if tok_s_per_user is None:
        return "unknown"
    label = BANDS[0][0]
    for name, low in BANDS:
        if tok_s_per_user >= low:
            label = name
    return label
