"""Speculative decoding: a draft model proposes k tokens, the target verifies them in one step.

With a per-token acceptance probability a (independent tokens, the standard assumption of
Leviathan et al. 2023), a verification step yields on average
    E = (1 - a^(k+1)) / (1 - a)        (E = k + 1 when a = 1)
tokens per sequence: the accepted prefix plus the target's own next token.

One cycle for a batch of B sequences at context c:
    draft:  k sequential decode steps of the draft model (on LPUs: a layer pipeline; on GPUs:
            the same GPUs, one after another with the target);
    link:   when drafting on LPUs, the accepted tokens go GPU -> LPU and the drafts come back:
            two crossings of the GPU<->LPU path per cycle (token ids only: 4 bytes each);
    verify: one target step over k + 1 new tokens per sequence after c cached ones.
Time per output token = cycle / E. Nothing overlaps (drafting for the next cycle needs this
cycle's verdict), which is what systems without pipelined drafting do.
"""
from __future__ import annotations

import numpy as np

from infersim.catalog.hardware import LinkSpec
from infersim.costmodel.execution import collective_time
from infersim.costmodel.step import StepCost
from infersim.costmodel.work import Batch, StepShape, batch_shape, model_windows, sequences_shape
from infersim.mapping.deployment import Deployment
from infersim.errors import InputError

TOKEN_ID_BYTES = 4.0  # a token id crosses the link as an int32 (vocabularies exceed 65,536 entries)


def expected_tokens_per_step(acceptance: float, k: int) -> float:
    """Mean tokens a verification yields (accepted drafts + the target's own token)."""
    if not 0.0 <= acceptance <= 1.0:
        raise InputError(f"acceptance rate {acceptance} is outside [0, 1]; it is the probability a drafted token is accepted")
    if k < 1:
        raise InputError(f"draft length k must be at least 1, got {k}")
    if acceptance == 1.0:
        return float(k + 1)
    return (1.0 - acceptance ** (k + 1)) / (1.0 - acceptance)


class SpecDecodeCost:
    def __init__(self, target: Deployment, draft: Deployment, k: int, acceptance: float, link: LinkSpec | None):
        self.target, self.draft, self.k, self.acceptance, self.link = target, draft, k, acceptance, link
        self.expected = expected_tokens_per_step(acceptance, k)
        self._t = StepCost(target)
        self._d = StepCost(draft)

    def _parts(self, verify_shape: StepShape, draft_shape: StepShape, n_draft_seqs) -> dict[str, np.ndarray]:
        """Seconds: draft (k steps of the draft model), link (two crossings), verify."""
        # draft pipelines serve the target replicas evenly
        share = self.target.par.replicas / self.draft.par.replicas
        draft = self.k * self._d.total(draft_shape.scaled(share) if share != 1 else draft_shape)
        verify = self._t.total(verify_shape)
        link = 0.0 * verify
        if self.link is not None:
            link = link + collective_time(self.link, self.draft.eff, 2,
                                          np.asarray(n_draft_seqs, dtype=float) * (self.k + 1) * TOKEN_ID_BYTES * 2,
                                          2.0, "p2p")
        return {"draft_s": draft, "link_s": link, "verify_s": verify}

    def cycle_parts(self, batch, past, span=1.0) -> dict[str, np.ndarray]:
        """Seconds per cycle for `batch` sequences per target replica, all at context `past`
        (decode contexts averaged over `span` steps, as step_time does)."""
        batch = np.asarray(batch, dtype=float)
        past = np.asarray(past, dtype=float)
        d_shape = batch_shape(Batch(batch, np.float64(1), past, span), model_windows(self.draft.model))
        v_shape = batch_shape(Batch(batch, np.float64(self.k + 1), past), model_windows(self.target.model))
        return self._parts(v_shape, d_shape, batch)

    def cycle(self, batch, past, span=1.0) -> np.ndarray:
        p = self.cycle_parts(batch, past, span)
        return p["draft_s"] + p["link_s"] + p["verify_s"]

    def time_per_token(self, batch, past, span=1.0) -> np.ndarray:
        """Seconds per output token of one sequence: a cycle over the tokens it yields."""
        return self.cycle(batch, past, span) / self.expected


class SpecStepCost:
    """The serving simulator's view: one engine step verifies k + 1 tokens of every decoding
    sequence after drafting them (prefill chunks ride along in the verify step). A decoding
    sequence then advances by its accepted tokens: `accepted_tokens` hands out E per step on
    average, deterministically (an accumulator per request, no random draws)."""

    def __init__(self, cost: SpecDecodeCost):
        self.cost = cost
        self.k = cost.k
        self.expected = cost.expected
        self.windows = model_windows(cost.target.model)
        self._draft_windows = model_windows(cost.draft.model)

    def step_total(self, past: np.ndarray, widths: np.ndarray, decoding: np.ndarray) -> float:
        verify = sequences_shape(past, widths, self.windows)
        n = int(np.count_nonzero(decoding))
        if n == 0:
            return float(self.cost._t.total(verify))
        draft = sequences_shape(past[decoding], np.ones(n), self._draft_windows)
        p = self.cost._parts(verify, draft, n)
        return float(p["draft_s"] + p["link_s"] + p["verify_s"])
