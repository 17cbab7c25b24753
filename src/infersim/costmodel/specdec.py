"""Speculative decoding: a draft model proposes k tokens, the target verifies them in one step.

Acceptance is a per-position vector a_1..a_k, a_i = P(drafted token i is accepted | tokens 1..i-1
were); the accepted prefix stops at the first rejection, so a verification step yields on average
    E = 1 + sum_i prod_{j<=i} a_j
tokens per sequence: the accepted prefix plus the target's own next token. A scalar a is the
constant vector (independent tokens, Leviathan et al. 2023): E = (1 - a^(k+1)) / (1 - a).

One cycle for a batch of B sequences at context c:
    draft:  k sequential decode steps of the draft model (on LPUs: a layer pipeline; on GPUs:
            the same GPUs, one after another with the target);
    link:   when draft and target sit on different chips, the accepted tokens go to the draft and
            the drafts come back: two crossings per cycle of the GPU<->LPU path (draft on LPUs,
            target on GPUs) or of the chip domain both pipelines share (both on SRAM chips:
            `sram_spec_timer`); token ids only (4 bytes each), plus the target's last hidden state
            when the drafter is the target's own MTP / EAGLE head on its own stage;
    verify: one target step over k + 1 new tokens per sequence after c cached ones (the target's
            own kernels, or any step timer: the AFD step for attention on GPUs and FFN on LPUs).
Time per output token = cycle / E. Nothing overlaps (drafting for the next cycle needs this
cycle's verdict), which is what systems without pipelined drafting do.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from infersim.catalog.hardware import LinkSpec
from infersim.costmodel.execution import collective_time
from infersim.costmodel.step import StepCost
from infersim.costmodel.timer import DecodeStep, ShapeTimer, rows_shape
from infersim.costmodel.work import Batch, StepShape, batch_shape, model_windows, sequences_shape
from infersim.catalog.models import ModelArch
from infersim.mapping.deployment import Deployment, build_deployment
from infersim.errors import InputError

TOKEN_ID_BYTES = 4.0  # a token id crosses the link as an int32 (vocabularies exceed 65,536 entries)
# Assumptions for a separate draft model whose draft length and acceptance are not given (a
# deployment's `spec: {method: draft}`, a published row that does not say): 4 drafted tokens,
# per-token acceptance 0.7, mid-range of Leviathan et al. 2023 (0.6-0.8 for same-family drafts).
DRAFT_DEFAULT_K = 4
DRAFT_DEFAULT_ACCEPTANCE = 0.7
DRAFT_ACCEPTANCE_RANGE = (0.6, 0.8)  # Leviathan et al. 2023, same-family drafts: what `sensitivity` sweeps


def acceptance_vector(acceptance, k: int) -> tuple[float, ...]:
    """The per-position acceptance of k drafted tokens: a scalar is the constant vector; a
    sequence must have k entries. Each entry is a probability in [0, 1]."""
    if k < 1:
        raise InputError(f"draft length k must be at least 1, got {k}")
    vec = [float(acceptance)] * k if np.ndim(acceptance) == 0 else [float(a) for a in acceptance]
    if len(vec) != k:
        raise InputError(f"the acceptance vector has {len(vec)} entries but k is {k}; give one per drafted token")
    for a in vec:
        if not 0.0 <= a <= 1.0:
            raise InputError(f"acceptance rate {a} is outside [0, 1]; it is the probability a drafted token is accepted "
                             "(given the ones before it were)")
    return tuple(vec)


def expected_tokens(vector) -> float:
    """Mean tokens a verification yields: 1 + sum_i prod_{j<=i} a_j (accepted prefix + the target's token)."""
    return float(1.0 + np.sum(np.cumprod(np.asarray(vector, dtype=float))))


def expected_tokens_per_step(acceptance, k: int) -> float:
    """Mean tokens a verification of k drafted tokens yields, for a scalar or per-position acceptance."""
    return expected_tokens(acceptance_vector(acceptance, k))


def head_arch(model: ModelArch) -> ModelArch:
    """The drafter of MTP / EAGLE: one decoder layer shaped like the target's last, plus its
    embedding and LM head (see head_draft)."""
    return replace(model, name=f"{model.name}[draft head]", layers=model.layers[-1:], published_total_params=None,
                   published_active_params=None)


def head_draft(target: Deployment) -> Deployment:
    """The drafter of MTP / EAGLE speculative decoding on the target's own chips and layout: one
    decoder layer shaped like the target's last (DeepSeek-V3's MTP module is one such layer; SGLang
    and TensorRT-LLM reuse it for every drafted token, "MTP Eagle"; an EAGLE head is one layer too)
    plus the target's embedding and LM head, so each drafted token costs one layer and the head.
    On GPUs drafting runs inside the target's engine iteration (one CUDA graph in TensorRT-LLM's
    MTP), so its steps pay their own kernels (costmodel.overhead) but share the step's host work,
    which the verify step pays once. On an SRAM layer pipeline (LPU / wafer) the head is one more
    stage after the target's last layer, on as many chips as the target gives each layer (at least
    one). Not modelled: the head's own weights and KV cache in the memory fit (one layer of 61 for
    DeepSeek-R1), EAGLE-3's smaller draft vocabulary."""
    arch = head_arch(target.model)
    if target.dataflow:
        per_layer = max(1, round(target.chips_per_replica / target.model.n_layers))
        return replace(target, model=arch, chips_per_replica=per_layer)
    return replace(target, model=arch, engine=target.engine.sharing_host())


def sram_draft(draft_model: ModelArch, chip: str, precision: str | None, chips: int, pipelines: int, catalog,
               calibration) -> Deployment:
    """A draft model on SRAM chips (LPU / wafer): `pipelines` layer pipelines of `chips` chips each.
    Modes `lpu` (beside the target's pipelines) and `afd` (on the LPX racks beside the FFN pools)
    and the validation of measured speculative rows on LPU / wafer chips all build their SRAM
    drafts here (an MTP / EAGLE head on an SRAM target is head_draft)."""
    return build_deployment(draft_model, chip, chips=chips * pipelines, replicas=pipelines, precision=precision,
                            catalog=catalog, calibration=calibration)


def sram_spec_timer(target: Deployment, draft: Deployment, k: int, acceptance, head: bool) -> "SpecDecodeCost":
    """Speculative decoding with target and draft both on SRAM chips: the two pipelines sit in one
    chip domain (the racks' C2C links; several racks or wafers: the slowest link among them,
    Deployment.link_for), which each cycle's two crossings use. What crosses: the accepted token ids
    to the draft and the k drafted ids back, and for a head (`head`) also the target's last
    hidden state, which the MTP / EAGLE head drafts from."""
    # a head is a stage of the target's own pipeline (on a one-chip target: the same chip, no
    # crossing); a draft model's pipeline sits beside the target's
    group = target.chips_per_replica + (0 if head else draft.chips_per_replica)
    link = None if group <= 1 else target.link_for(group)
    handoff = (k + 1) * TOKEN_ID_BYTES + (target.model.hidden * target.plan.act_bytes if head else 0.0)
    return SpecDecodeCost(target, draft, k, acceptance, link, handoff_bytes=handoff)


class SpecDecodeCost(ShapeTimer):
    """Speculative decoding as a `StepTimer`. One engine step verifies k + 1 tokens of every
    decoding sequence after drafting them (prefill chunks ride along in the verify step); a decoding
    sequence then advances by its accepted tokens, E per step on average (the simulator hands them
    out deterministically). A step with no decoding sequence is a plain target step (`total`)."""

    decode_runs = False  # a step yields E tokens on average, not one: no closed-form decode runs
    multi_token_runs = True  # but a run of verify steps is timed at once from its contexts

    def __init__(self, target: Deployment, draft: Deployment, k: int, acceptance, link: LinkSpec | None,
                 compiled: bool = True, *, verify: ShapeTimer | None = None, drafter: ShapeTimer | None = None,
                 handoff_bytes: float | None = None):
        """`acceptance`: a scalar (every position) or one probability per drafted position.
        `target` / `draft`: the deployments whose replicas serve the sequences and draft for them
        (their chip kinds label the time shares). `verify` / `drafter`: the step timers of the
        verify and draft steps (default: each deployment's own kernels, StepCost; e.g. the AFD step
        for a target with attention on GPUs and FFN on LPUs, whose GPU side is `target`).
        `handoff_bytes`: bytes per sequence in each of the two link crossings (default the k + 1
        token ids). compiled=False: uncompiled step costs (efficiency arrays broadcast against
        batch arrays)."""
        self.target, self.draft, self.k, self.link = target, draft, k, link
        self.acceptance = acceptance_vector(acceptance, k)
        self.expected = expected_tokens(self.acceptance)
        self.decode_width = k + 1
        self.tokens_per_decode_step = self.expected
        self.target_cost = verify if verify is not None else StepCost(target, compiled=compiled)
        self.draft_cost = drafter if drafter is not None else StepCost(draft, compiled=compiled)
        self.windows = self.target_cost.windows
        self._draft_windows = drafter.windows if drafter is not None else model_windows(draft.model)
        self.handoff_bytes = (k + 1) * TOKEN_ID_BYTES if handoff_bytes is None else float(handoff_bytes)

    def cycle_seconds(self, verify_shape: StepShape, draft_shape: StepShape, n_draft_seqs) -> dict[str, np.ndarray]:
        """Seconds: draft (k steps of the draft model), link (two crossings), verify."""
        # draft pipelines serve the target replicas evenly
        share = self.target.par.replicas / self.draft.par.replicas
        draft = self.k * self.draft_cost.total(draft_shape.scaled(share) if share != 1 else draft_shape)
        verify = self.target_cost.total(verify_shape)
        link = 0.0 * verify
        if self.link is not None:
            link = link + collective_time(self.link, self.draft.eff, 2,
                                          np.asarray(n_draft_seqs, dtype=float) * self.handoff_bytes * 2, 2.0, "p2p")
        return {"draft_s": draft, "link_s": link, "verify_s": verify}

    def cycle_parts(self, batch, past, span=1.0) -> dict[str, np.ndarray]:
        """Seconds per cycle for `batch` sequences per target replica, all at context `past`
        (decode contexts averaged over `span` steps, as step_time does)."""
        batch = np.asarray(batch, dtype=float)
        past = np.asarray(past, dtype=float)
        d_shape = batch_shape(Batch(batch, np.float64(1), past, span), self._draft_windows)
        return self.cycle_seconds(self.verify_shape(batch, past), d_shape, batch)

    def verify_shape(self, batch, past) -> StepShape:
        """The verify step of `batch` sequences at context `past`: k + 1 new tokens each."""
        return batch_shape(Batch(np.asarray(batch, dtype=float), np.float64(self.k + 1), np.asarray(past, dtype=float)),
                           self.windows)

    def cycle(self, batch, past, span=1.0) -> np.ndarray:
        p = self.cycle_parts(batch, past, span)
        return p["draft_s"] + p["link_s"] + p["verify_s"]

    def time_per_token(self, batch, past, span=1.0) -> np.ndarray:
        """Seconds per output token of one sequence: a cycle over the tokens it yields."""
        return self.cycle(batch, past, span) / self.expected

    # -- StepTimer -----------------------------------------------------------------------------
    def total(self, shape: StepShape) -> np.ndarray:
        return self.target_cost.total(shape)

    def step_seconds(self, past, new, decoding=None) -> float:
        verify = sequences_shape(past, new, self.windows)
        n = 0 if decoding is None else int(np.count_nonzero(decoding))
        if n == 0:
            return float(self.target_cost.total(verify))
        draft = sequences_shape(np.asarray(past)[decoding], np.ones(n), self._draft_windows)
        p = self.cycle_seconds(verify, draft, n)
        return float(p["draft_s"] + p["link_s"] + p["verify_s"])

    def multi_token_run_seconds(self, pasts: np.ndarray) -> np.ndarray:
        """Seconds of consecutive pure verify steps, one per row of `pasts` (steps x sequences,
        cached tokens before the step): `step_seconds` of each row with every sequence decoding,
        all rows in one evaluation."""
        verify = rows_shape(pasts, self.decode_width, self.windows)
        draft = rows_shape(pasts, 1, self._draft_windows)
        p = self.cycle_seconds(verify, draft, pasts.shape[1])
        return p["draft_s"] + p["link_s"] + p["verify_s"]

    def _verify_shares(self, batch: float, past: float) -> dict[str, dict[str, float]]:
        """Shares of the verify step per chip kind and activity (summing to 1 per kind): the target
        timer's own split where it has one (AFD's `time_shares`, a GPU step's roofline categories),
        else the whole step as `verify`."""
        shape = self.verify_shape(batch, past)
        split = getattr(self.target_cost, "time_shares", None)
        if split is not None:
            return split(shape)
        timed = getattr(self.target_cost, "time", None)
        if timed is not None:
            from infersim.costmodel.execution import CATEGORIES
            b = timed(shape)
            tot = float(np.asarray(b.total).reshape(-1)[0])
            if tot > 0:
                return {self.target.chip.kind: {k: float(np.asarray(getattr(b, k)).reshape(-1)[0]) / tot
                                                for k in CATEGORIES}}
        return {self.target.chip.kind: {"verify": 1.0}}

    def decode_step(self, batch: float, past: float, span: float) -> DecodeStep:
        parts = {k: float(v) for k, v in self.cycle_parts(batch, past, span=max(span, 1.0)).items()}
        cycle = sum(parts.values())
        # drafting and verifying alternate: each side waits while the other works
        # the draft's chips under their own label when they are the target's kind (GPU heads, LPU drafts of LPU targets)
        verify, waiting = parts["verify_s"] / cycle, (parts["draft_s"] + parts["link_s"]) / cycle
        # the verify step's own split per chip kind (compute, memory, ...; AFD: GPU, LPU pools, link),
        # scaled to its share of the cycle; the rest of the cycle its chips wait for the draft
        shares = {kind: {**{a: v * verify for a, v in acts.items()},
                         **({} if kind == "link" else {"waiting_for_draft": waiting})}  # a link only idles
                  for kind, acts in self._verify_shares(batch, past).items()}
        same = self.draft.chip.kind in shares
        draft_kind = f"{self.draft.chip.kind} (draft)" if same else self.draft.chip.kind
        shares[draft_kind] = {"draft": parts["draft_s"] / cycle, "idle": (parts["verify_s"] + parts["link_s"]) / cycle}
        if self.link is not None:  # the token ids cross the GPU<->LPU link (AFD's own, where there is one)
            link = shares.setdefault("link", {})
            link["busy"] = link.get("busy", 0.0) + parts["link_s"] / cycle
        details = {"expected_tokens_per_verify": self.expected, "cycle_s": cycle, **parts}
        bounds = getattr(self.target_cost, "bounds", None)  # a verify step with bounds (AFD): which binds
        if bounds is not None:
            b = {k: float(np.asarray(v).reshape(-1)[0]) for k, v in bounds(self.verify_shape(batch, past)).items()}
            details["verify_bounds_s"] = b
            details["verify_binding"] = max(b, key=b.get)
        return DecodeStep(cycle, shares, {"spec": details})
