"""Dataset-length workloads: the per-sample (input, output) token lengths of the MLPerf LLM datasets
(shipped in `infersim/datasets/calibration/mlperf_datasets/`, sources in its README), replayed as a
workload whose output mean matches a measured run's own mean.

A measurement row names its dataset in its notes (`dataset=mlperf-openorca`, ...). `length_mix(key,
model, output_mean)` returns the `LengthMix` for it, or raises `InputError` with the reason when the
dataset has no per-sample lengths for that model. Per dataset (what each file's output column is):

* `mlperf-openorca` (Llama-2-70B): the file's output column is the dataset's GPT-4 answer length
  (mean 218.9), not Llama-2's generation (reference mean 294.45, per-sample lengths unpublished).
  **Assumption** (the README's suggestion): the real inputs paired with the GPT-4 answer lengths
  rescaled to the row's mean.
* `mlperf-mixtral-15k`, `mlperf-llama3.1-405b`: reference generation lengths, rescaled to the row's mean.
* `mlperf-deepseek-r1`: reference generation, uncapped in the file; capped at the benchmark's 20,000
  output tokens first (mean then 3886.23, the accuracy target), then rescaled.
* `mlperf-cnndm` with Llama-3.1-8B: inputs only; outputs are capped at 128 tokens and most reach it,
  so **every output is assumed to be the row's mean** (128 without one).
* `mlperf-cnndm` with GPT-J: no token lengths published; not replayable (the error says so).

Rescaling (`rescaled`): output_i = clip(round(o_i * s), 1, cap), the benchmark's max output applied
before and after, with s found so that the mean is the target (to well under a token).
A row without an output mean keeps the dataset's reference mean (said in the assumption).
`LengthMix.sample(n, seed)` replays n requests: a seeded permutation of the dataset, cycled when
n exceeds its size (every sample used once before any repeats). `LengthMix.cells()` is a compact
quadrature of the mix for closed-form models: nested strata (inputs cut at quantiles CELL_EDGES,
each part's outputs cut again), each cell its mean lengths and its share of the samples.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from infersim.datasets import CALIBRATION_DIR
from infersim.errors import InputError

MLPERF_DIR = CALIBRATION_DIR / "mlperf_datasets"
# Quantile edges of the strata `LengthMix.cells` cuts inputs and outputs at: narrower at the top,
# where the long requests whose cost is most non-linear sit. With these 16 cells the closed-form
# MLPerf predictions are within 1.6% (mean 0.35%) of a 20 x 20 equal-count quadrature (25 cells cut
# at 0.4/0.7/0.9/0.98: 0.8%, at 1.6x the fit's time; 3 x 3 equal cells: 8.5%; one cell at the
# mean lengths: 23%).
CELL_EDGES = (0.0, 0.5, 0.8, 0.95, 1.0)


@dataclass(frozen=True)
class DatasetLengths:
    """One dataset's length file and how its output column is to be read."""

    key: str                      # as in a measurement row's notes: dataset=KEY
    model_match: str              # lower-case substring of the model repo id whose tokenizer counted the tokens
    file: str
    output_column: str | None     # None: the file has no output lengths
    output_cap: int | None        # the benchmark's max output tokens, applied before rescaling
    reference_output_mean: float  # the benchmark's published mean output (accuracy target)
    output_note: str              # what the output lengths are, for the row's assumptions


DATASETS = (
    DatasetLengths("mlperf-openorca", "llama-2-70b", "llama2-70b-openorca.csv", "gt_answer_length", 1024, 294.45,
                   "outputs = the dataset's GPT-4 answer lengths rescaled (Llama-2-70B's own generation lengths "
                   "are unpublished; reference mean 294.45)"),
    DatasetLengths("mlperf-mixtral-15k", "mixtral-8x7b", "mixtral-8x7b-15k.csv", "output_length", 1024, 144.84,
                   "outputs = the reference generation lengths rescaled"),
    DatasetLengths("mlperf-llama3.1-405b", "llama-3.1-405b", "llama3.1-405b.csv", "output_length", None, 684.68,
                   "outputs = the reference generation lengths rescaled"),
    DatasetLengths("mlperf-deepseek-r1", "deepseek-r1", "deepseek-r1.csv", "output_length", 20000, 3886.23,
                   "outputs = the reference generation lengths capped at the benchmark's 20,000 tokens, rescaled"),
    DatasetLengths("mlperf-cnndm", "llama-3.1-8b", "llama3.1-8b-cnndm.csv", None, 128, 128.0,
                   "output lengths unpublished (capped at 128, most reach it): every output assumed = the mean"),
)
# Datasets known to have no per-sample token lengths (the README of mlperf_datasets says why).
UNAVAILABLE = {("mlperf-cnndm", "gpt-j"): "GPT-J's CNN/DailyMail token lengths are not published (inputs truncated "
                                         "at 1,919 tokens, outputs 30-128 with beam 4); give the row an input_len"}


@lru_cache(maxsize=None)
def _read(file: str, output_column: str | None) -> tuple[np.ndarray, np.ndarray | None]:
    path = MLPERF_DIR / file
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
    except OSError as e:
        raise InputError(f"cannot read the dataset lengths '{path}': {e.strerror}; reinstall infersim") from None
    try:
        inp = np.array([int(r["input_length"]) for r in rows], dtype=np.int64)
        out = None if output_column is None else np.array([int(r[output_column]) for r in rows], dtype=np.int64)
    except (KeyError, ValueError, TypeError) as e:
        raise InputError(f"{path}: malformed length column ({e}); reinstall infersim") from None
    if len(inp) == 0 or np.any(inp < 1) or (out is not None and np.any(out < 1)):
        raise InputError(f"{path}: empty, or a length below 1; reinstall infersim")
    return inp, out


def rescaled(lengths: np.ndarray, mean: float, cap: int | None = None) -> np.ndarray:
    """`lengths` capped at `cap`, scaled by the factor s whose clip(round(l * s), 1, cap) has mean
    `mean` (found by bisection: the mean rises with s); int64. A target above the cap gives all `cap`."""
    raw = np.minimum(lengths, cap) if cap is not None else np.asarray(lengths)
    hi_len = cap if cap is not None else np.inf

    def scaled(s: float) -> np.ndarray:
        return np.clip(np.round(raw * s), 1, hi_len)
    lo, hi = 0.0, mean / raw.mean()
    while scaled(hi).mean() < mean and hi < 1e9 and (cap is None or mean < cap):
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if scaled(mid).mean() < mean else (lo, mid)
    return scaled(hi).astype(np.int64)


@dataclass(frozen=True)
class LengthMix:
    """A dataset's (input, output) pairs with outputs rescaled to `output_mean` (tokens)."""

    dataset: DatasetLengths
    output_mean: float

    def pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(input, output) token lengths of every sample, in file order (int64 arrays)."""
        inp, raw = _read(self.dataset.file, self.dataset.output_column)
        if raw is None:
            return inp, np.full(len(inp), max(1, int(round(self.output_mean))), dtype=np.int64)
        return inp, rescaled(raw, self.output_mean, self.dataset.output_cap)

    def sample(self, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """n requests' (input, output) lengths: a seeded permutation of the samples, cycled."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise InputError(f"n {n!r} must be a positive integer; give the number of requests")
        inp, out = self.pairs()
        order = np.random.default_rng(seed).permutation(len(inp))
        idx = order[np.arange(int(n)) % len(inp)]
        return inp[idx], out[idx]

    def cells(self, edges: tuple[float, ...] = CELL_EDGES) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean input, mean output, weight) of nested strata: the samples sorted by input and cut at
        the `edges` quantiles, each part sorted by output and cut again; weights sum to 1."""
        inp, out = self.pairs()
        ins, outs, weights = [], [], []

        def parts(order: np.ndarray):
            cuts = np.round(np.asarray(edges) * len(order)).astype(int)
            return [order[a:b] for a, b in zip(cuts[:-1], cuts[1:]) if b > a]
        for group in parts(np.argsort(inp, kind="stable")):
            for cell in parts(group[np.argsort(out[group], kind="stable")]):
                ins.append(inp[cell].mean())
                outs.append(out[cell].mean())
                weights.append(len(cell) / len(inp))
        return np.array(ins), np.array(outs), np.array(weights)

    def describe(self) -> str:
        inp, out = self.pairs()
        return (f"lengths: {self.dataset.key} ({self.dataset.file}, {len(inp):,} samples, mean input "
                f"{inp.mean():.1f}, output mean {out.mean():.1f}); {self.dataset.output_note}")


def length_mix(key: str, model: str, output_mean: float | None) -> tuple[LengthMix, list[str]]:
    """The length mix of dataset `key` for `model` (a repo id), outputs rescaled to `output_mean`
    (None: the benchmark's reference mean), with the assumptions it makes, one line each."""
    name = model.lower()
    for (k, match), why in UNAVAILABLE.items():
        if k == key and match in name:
            raise InputError(why)
    found = [d for d in DATASETS if d.key == key]
    spec = next((d for d in found if d.model_match in name), None)
    if spec is None:
        if found:
            raise InputError(f"dataset {key} has per-sample lengths only for {', '.join(d.model_match for d in found)}"
                             f" (token counts are tokenizer-specific), not for {model}")
        raise InputError(f"no per-sample lengths for dataset {key}; known: "
                         f"{', '.join(sorted({d.key for d in DATASETS}))}")
    assumptions = []
    if output_mean is None:
        output_mean = spec.reference_output_mean
        assumptions.append(f"output mean unpublished: the benchmark's reference {output_mean:g} tokens")
    mix = LengthMix(spec, float(output_mean))
    assumptions.insert(0, mix.describe())
    return mix, assumptions
