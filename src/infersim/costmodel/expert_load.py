"""How many experts a step touches, and how much of that lands on the busiest expert group.

Pure arithmetic on routing statistics; no hardware rates. Assumptions, stated once here:
- Routing is uniform and independent: each token picks top_k of the E experts, every expert
  equally likely, tokens independent of each other.
- Expert groups: with expert parallelism the experts of a MoE layer are placed whole over G
  groups (each GPU with DP attention + EP; moe_ep groups of GPUs with the engines' EP without DP
  attention), ceil(E / G) per group. A step waits for its busiest group, so the weight bytes and
  the FLOPs of the routed experts go with the expected maximum over the groups, not the mean.
  The groups' loads are treated as independent (they are weakly negatively correlated: a token
  copy that lands on one group does not land on another), which slightly overstates the maximum.
- Real routers are skewed (hot experts persist for tens to hundreds of decode iterations and
  differ per layer and dataset: NVIDIA's GB200 wide-EP measurements, reference/serving_facts.md
  s4.2), and EPLB replicates hot experts to even the load out. No published figure sizes the
  imbalance that remains, so no skew factor is applied: the uniform-routing maximum is a floor
  on the real busiest group's load, EPLB's work a reason it may be close to it.
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

# Above this many trials the binomial maximum is taken from its normal approximation (the exact
# sum would need a log-factorial table of that size; at this size the binomial is close to normal:
# mean >= 2^16 / 256 = 256 copies for any group count up to the largest expert count shipped).
EXACT_MAX_TRIALS = 1 << 16
# The exact sum runs over mean +- this many standard deviations (the rest of the CDF is 0 or 1
# to float precision; the maximum of up to a few hundred groups sits within 4 sd of the mean).
TAIL_SD = 12.0


def expected_distinct_experts(n_experts: int, top_k: int, tokens):
    """Expected number of distinct experts touched when `tokens` tokens each pick top_k of
    n_experts uniformly: E * (1 - (1 - k/E)^T). Real routers are skewed, which touches fewer."""
    t = np.asarray(tokens, dtype=float)
    return n_experts * (1.0 - (1.0 - top_k / n_experts) ** t)


@lru_cache(maxsize=8)
def _log_factorials(size: int) -> np.ndarray:
    """log(k!) for k = 0 .. size - 1."""
    table = np.zeros(size)
    np.cumsum(np.log(np.arange(1, size, dtype=float)), out=table[1:])
    return table


@lru_cache(maxsize=512)
def expected_max_std_normal(groups: int) -> float:
    """E[max of `groups` independent standard normals] by quadrature of
    int_0^inf (1 - Phi^g) dx - int_-inf^0 Phi^g dx (0 for one group)."""
    if groups <= 1:
        return 0.0
    x = np.linspace(-12.0, 12.0, 24001)
    phi = 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))
    power = phi ** groups
    integrand = np.where(x >= 0, 1.0 - power, -power)
    return float(np.sum((integrand[1:] + integrand[:-1]) * 0.5 * np.diff(x)))


def expected_max_binomial(n: int, p: float, groups: int) -> float:
    """E[max of `groups` independent Binomial(n, p)] = sum_{x=0}^{n-1} (1 - F(x)^groups), F the
    binomial CDF (exact; the terms outside mean +- TAIL_SD standard deviations are 1 below and 0
    above to float precision). Above EXACT_MAX_TRIALS trials: mean + sd x E[max of `groups`
    standard normals]. Never below the mean n p (which a maximum cannot be)."""
    n = int(n)
    if n <= 0 or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return float(n)
    mean, sd = n * p, math.sqrt(n * p * (1.0 - p))
    if groups <= 1:
        return mean
    if n > EXACT_MAX_TRIALS:
        return min(float(n), mean + sd * expected_max_std_normal(groups))
    lo = max(0, int(math.floor(mean - TAIL_SD * sd)) - 1)
    hi = min(n - 1, int(math.ceil(mean + TAIL_SD * sd)) + 1)
    x = np.arange(lo, hi + 1)
    logf = _log_factorials(1 << max(4, n.bit_length()))  # sizes > n, in powers of two
    log_pmf = logf[n] - logf[x] - logf[n - x] + x * math.log(p) + (n - x) * math.log1p(-p)
    cdf = np.minimum(np.cumsum(np.exp(log_pmf)), 1.0)  # the mass below lo is 0 to float precision
    above = -np.expm1(groups * np.log(np.maximum(cdf, 1e-300)))  # 1 - F^g without cancellation
    return max(mean, lo + float(above.sum()))


def _max_binomial_real(n: float, p: float, groups: int) -> float:
    """expected_max_binomial for a real trial count: linear between its floor and ceiling (a step
    split into micro-batches has fractional token counts)."""
    low = math.floor(n)
    frac = n - low
    value = expected_max_binomial(low, p, groups)
    return value if frac == 0 else (1 - frac) * value + frac * expected_max_binomial(low + 1, p, groups)


@lru_cache(maxsize=1 << 15)
def _busiest_group_scalar(n_experts: int, top_k: int, groups: int, tokens: float) -> tuple[float, float]:
    if groups <= 1:
        return float(expected_distinct_experts(n_experts, top_k, tokens)), tokens * top_k
    touched = float(expected_distinct_experts(n_experts, top_k, tokens)) / n_experts  # P(an expert is touched)
    experts = expected_max_binomial(math.ceil(n_experts / groups), touched, groups)
    copies = _max_binomial_real(tokens * top_k, 1.0 / groups, groups)
    return experts, copies


def busiest_group_load(n_experts: int, top_k: int, groups: int, tokens) -> tuple:
    """(touched experts, routed token copies) of the busiest of `groups` expert groups, expected
    values, for a step of `tokens` tokens (arrays broadcast; see the module docstring):
    experts: E[max over groups of Binomial(ceil(E / G), p)], p = 1 - (1 - k/E)^T the chance an
    expert is touched; copies: E[max over groups of Binomial(T k, 1 / G)]. One group: the
    distinct experts and all T k copies. Both tend to the mean group's as tokens grow."""
    t = np.asarray(tokens, dtype=float)
    if t.ndim == 0:
        e, c = _busiest_group_scalar(n_experts, top_k, groups, float(t))
        return np.float64(e), np.float64(c)
    values, inverse = np.unique(t, return_inverse=True)
    pairs = np.array([_busiest_group_scalar(n_experts, top_k, groups, float(v)) for v in values]).reshape(-1, 2)
    return pairs[inverse, 0].reshape(t.shape), pairs[inverse, 1].reshape(t.shape)
