"""Interactivity bands: the ranges of tokens/s per user in which the industry reads its throughput
against interactivity chart (GPUs win the low end, LPUs and wafers exist for the high end).
`validate` groups its InferenceX errors by them and `frontier` gives a verdict per band: one
definition for both."""
from __future__ import annotations

# (label, lowest tok/s per user, inclusive); each band ends where the next begins. The top edge,
# 1,000 tok/s per user, is the per-user speed NVIDIA targets with Vera Rubin + LPX (vendor claim,
# ../shared/reference/hardware_and_models.md: "target ~1000 tok/s/user"): above it a verdict
# compares only what serves that fast (LPX, CS-3), instead of lumping them with GPU + MTP at 500.
BANDS = (("<50", 0.0), ("50-150", 50.0), ("150-400", 150.0), ("400-1000", 400.0), (">1000", 1000.0))
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
