"""Predict a published measurement: resolve the row to deployments, then apply the analytical
approximation of its scenario (the serving simulator replaces these later).

Scenario approximations (all per replica; replicas = n_chips / chips per replica):
- fixed_batch: `batch` prompts prefilled together, then decoded together (estimate.py).
- single_stream: batch 1; TTFT = prefill of the prompt, TPOT = mean decode step.
- offline: continuous batching at the largest batch B that fits memory (capped at the engine's
  max batch); each request costs its prefill (in chunks of MAX_TOKENS_PER_STEP) plus O decode
  steps shared by B sequences: req/s = 1 / (t_prefill + O * t_decode(B) / B).
- server (Poisson, rate lambda): utilisation rho = lambda / offline capacity; decode steps are
  stretched by the share of time spent prefilling; TTFT = single-request prefill + M/D/1 queueing
  wait + half a decode step; the batch follows Little's law, solved by damped fixed point.
- concurrency (closed loop, C clients): batch = C; throughput X from the same fixed point.
Rows measured on a dataset (MLPerf: `dataset=mlperf-...` in the notes, no input_len) replay its
per-sample lengths (workload/datasets.py): the serving scenarios average each per-request cost
(prefill, TTFT, slot time) over the length mix (a quadrature of nested input x output strata), not
the cost at the mean lengths; decode steps, shared by the batch, and the batch that fits memory are
taken at the mix's residence-weighted context (a request holds its slot for its output length).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Callable

import numpy as np

from infersim.catalog.engines import engine_for_software
from infersim.catalog.hardware import HardwareCatalog
from infersim.catalog.models import ModelArch, MoESpec, load_model
from infersim.catalog.speculative import default_acceptance
from infersim.calibration.efficiency import Calibration, Efficiency
from infersim.costmodel.memory import max_sequences, min_chips_for_context
from infersim.costmodel.specdec import (DRAFT_DEFAULT_ACCEPTANCE, DRAFT_DEFAULT_K, SpecDecodeCost,
                                        expected_tokens_per_step, head_draft, sram_draft, sram_spec_timer)
from infersim.costmodel.dataflow_links import pipeline_hops_note
from infersim.costmodel.step import step_time
from infersim.mapping.deployment import Deployment, build_deployment
from infersim.errors import InputError
from infersim.estimate import prefill_times
from infersim.validation.measurements import Measurement
from infersim.workload.datasets import LengthMix, length_mix

# Assumption: TensorRT-LLM's default max_batch_size (BuildConfig) of 2048 sequences caps the batch.
ENGINE_MAX_BATCH = 2048
# Assumptions for speculative-decoding rows that do not publish their draft: a same-family
# 8B draft with costmodel.specdec's draft length and acceptance defaults. Rows publishing MTP-k
# and a mean tokens per step use those.
SPEC_DEFAULT_DRAFT = "llama-3.1-8b"
# Assumption for API per-user-speed rows that publish no lengths: Artificial Analysis' standard
# speed workload of about 1,000 input tokens; output long enough that TTFT does not matter.
API_DEFAULT_INPUT = 1000
API_DEFAULT_OUTPUT = 500
# Assumption for rows that do not disclose precision: Groq serves 8-bit weights with 16-bit
# activations ("mixed", see calibration README); Cerebras states 16-bit weights.
UNDISCLOSED_PRECISION = {"lpu": "mixed", "wafer": "bf16", "gpu": "fp8"}
LATENCY_METRICS = ("ttft_ms", "tpot_ms", "itl_ms", "tok_s_per_user")
FIXED_POINT_ITERATIONS = 25
# Numerical guards, not fitted: an offered load at or above capacity has no steady state, so
# utilisation is capped at MAX_UTILISATION (the queueing wait stays finite) and the decode share
# of engine time is floored at MIN_DECODE_SHARE. Rows that hit them are overloaded by the model.
MAX_UTILISATION = 0.95
MIN_DECODE_SHARE = 0.05


@dataclass
class RowPlan:
    row: Measurement
    model: ModelArch
    layouts: list[Deployment]
    input_len: int
    output_len: int
    n_chips: int
    group: str                      # chip kind: gpu / lpu / wafer
    family: str
    assumptions: list[str] = field(default_factory=list)
    spec: "SpecRow | None" = None    # speculative decoding, when the row used it
    lengths: LengthMix | None = None  # the dataset's length mix, when the row names one (input_len is its mean)
    # rows whose scenario this module cannot express (InferenceX P/D and MTP points): their
    # {metric: value} for an efficiency (arrays broadcast), and tags to group their errors by
    closed_form: Callable[[Efficiency], dict[str, np.ndarray]] | None = None
    tags: tuple[str, ...] = ()

    @cached_property
    def length_classes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(input, output, weight) of the request classes the serving scenarios average over:
        the length mix's strata, or the row's one (input, output) pair."""
        if self.lengths is None:
            return np.array([float(self.input_len)]), np.array([float(self.output_len)]), np.array([1.0])
        return self.lengths.cells()

    @cached_property
    def resident_context(self) -> float:
        """Mean tokens of context a batch slot holds: each class weighted by its share and its
        output length (the time it stays in the batch)."""
        inp, out, w = self.length_classes
        return float(np.sum(w * out * (inp + out)) / np.sum(w * out))


@dataclass
class Skip:
    id: str
    reason: str


def _powers_of_two(limit: int) -> list[int]:
    out, p = [], 1
    while p <= limit:
        out.append(p)
        p *= 2
    return out


def _layout_candidates(row: Measurement, model: ModelArch, n: int, domain: int) -> list[tuple[int, int]]:
    """(tp, ep) layouts to try: the one the notes state, else every power-of-two split of a
    replica inside one scale-up domain (a tuned submission picks the best; so do we)."""
    m = re.search(r"\bTP\s*=?\s*(\d+)", row.notes)
    if m:
        tp = int(m.group(1))
        return [(tp, 1)] if n % tp == 0 else []
    moe = any(isinstance(l.ffn, MoESpec) for l, _ in model.layer_groups())
    out = []
    for tp in _powers_of_two(min(n, domain)):
        for ep in (_powers_of_two(min(n, domain) // tp) if moe else [1]):
            if n % (tp * ep) == 0:
                out.append((tp, ep))
    return out


@dataclass(frozen=True)
class SpecAssumptions:
    """What a speculative row is assumed to use when it does not publish it (a deployment file's
    `spec:` section can replace these)."""

    draft_model: str = SPEC_DEFAULT_DRAFT
    k: int | None = DRAFT_DEFAULT_K  # None (a head): the published entry's draft length
    acceptance: float | tuple[float, ...] | None = DRAFT_DEFAULT_ACCEPTANCE  # None (a head): the published entry's
    source: str = "mid-range of Leviathan et al. 2023 for a same-family draft"
    method: str = "draft"  # mtp / eagle: the target's own head drafts (a file's method), not draft_model


def plan_row(row: Measurement, catalog: HardwareCatalog, calibration: Calibration,
             spec_assumptions: SpecAssumptions | None = None) -> RowPlan | Skip:
    """Everything about a row that does not depend on efficiency parameters."""
    try:
        model = load_model(row.model)
        chip = catalog.chip(row.chip)
    except InputError as e:
        return Skip(row.id, str(e))
    assumptions = []
    if row.metric in ("total_tok_s", "e2e_latency_ms", "prefill_tok_s"):
        return Skip(row.id, f"metric {row.metric} not predicted yet")
    inp, out = row.input_len, row.output_len
    mix, longest = None, None
    if inp is None:
        ds = re.search(r"dataset=([\w.-]+)", row.notes)
        if row.scenario == "single_stream" and chip.kind != "gpu":
            inp = API_DEFAULT_INPUT
            assumptions.append(f"input_len unpublished: assumed {API_DEFAULT_INPUT} (API benchmark workload)")
        elif ds is None:
            return Skip(row.id, "mean input length unknown and no dataset named in the notes (dataset=...)")
        else:
            try:
                mix, mix_notes = length_mix(ds.group(1), row.model, out)
            except InputError as e:
                return Skip(row.id, f"mean input length unknown (dataset={ds.group(1)}): {e}")
            assumptions.extend(mix_notes)
            inputs, outputs = mix.pairs()
            inp, out = int(round(inputs.mean())), int(round(outputs.mean()))
            longest = int(np.max(inputs + outputs))
    if out is None:
        out = API_DEFAULT_OUTPUT
        assumptions.append(f"output_len unpublished: assumed {API_DEFAULT_OUTPUT}")
    engine = engine_for_software(row.software)
    prec = row.precision
    if prec is None:
        prec = UNDISCLOSED_PRECISION[chip.kind]
        assumptions.append(f"precision undisclosed: assumed {prec}")
    if prec == "int4":
        return Skip(row.id, "int4 weights not modelled")
    n = row.n_chips
    layouts: list[Deployment] = []
    try:
        if chip.kind in ("lpu", "wafer"):
            dep = build_deployment(model, chip.name, chips=n or 1, precision=prec, catalog=catalog, calibration=calibration)
            if n is None:
                dep = build_deployment(model, chip.name, chips=min_chips_for_context(dep, inp + out), precision=prec,
                                       catalog=catalog, calibration=calibration)
                assumptions.append(f"chip count unpublished: assumed the fewest whose memory holds the weights and "
                                   f"one {inp + out}-token context ({dep.n_chips})" + pipeline_hops_note(dep))
            layouts.append(dep)
            n = dep.n_chips
        else:
            if n is None:
                return Skip(row.id, "n_chips unknown for a GPU row")
            assumptions.append(f"step engine: {engine} (from the software column; catalog/data/engines.yaml)")
            domain = catalog.resolve_system(chip.name, n).scale_up_domain
            for tp, ep in _layout_candidates(row, model, n, domain):
                try:
                    layouts.append(build_deployment(model, chip.name, chips=n, tp=tp, ep=ep, replicas=n // (tp * ep),
                                                    precision=prec, catalog=catalog, calibration=calibration,
                                                    engine=engine))
                except InputError:
                    continue
    except InputError as e:
        return Skip(row.id, str(e))
    ctx = longest or inp + out  # a dataset's longest request must fit too
    layouts = [d for d in layouts if max_sequences(d, ctx, inp) >= 1]
    if not layouts:
        return Skip(row.id, f"{model.name} does not fit on {n} x {chip.name} at {prec} with a {ctx}-token context")
    plan = RowPlan(row, model, layouts, inp, out, n, chip.kind, chip.family, assumptions, lengths=mix)
    if row.spec_decode == "yes":
        spec = _spec_setup(row, model, layouts[0], catalog, calibration, assumptions,
                           spec_assumptions or SpecAssumptions())
        if isinstance(spec, Skip):
            return spec
        plan.spec = spec
    return plan


@dataclass
class SpecRow:
    """Speculative decoding of a measured row: draft deployment, draft length, acceptance."""

    draft: Deployment
    k: int
    acceptance: float | tuple[float, ...]
    mtp: bool = False  # the draft is the model's own MTP / EAGLE head, on whichever layout the target uses

    def timer(self, dep: Deployment) -> SpecDecodeCost:
        """The speculative step timer of target `dep` (the row's layout, possibly refitted): on LPU /
        wafer chips the one mode `lpu` builds (draft pipeline beside the target's, crossings over
        their shared chip domain: costmodel.specdec.sram_spec_timer); on GPUs drafting on the same GPUs."""
        draft = head_draft(dep) if self.mtp else self.draft  # a head follows the target's layout
        if dep.dataflow:
            return sram_spec_timer(dep, draft, self.k, self.acceptance, head=self.mtp)
        return SpecDecodeCost(dep, draft, self.k, self.acceptance, None)


def _acceptance_for_mean(mean_tokens: float, k: int) -> float:
    """The per-token acceptance a whose expected tokens per verification (1 - a^(k+1)) / (1 - a)
    equals a published mean (bisection; the expectation rises monotonically with a)."""
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if expected_tokens_per_step(mid, k) < mean_tokens else (lo, mid)
    return (lo + hi) / 2


def _spec_setup(row: Measurement, model: ModelArch, dep: Deployment, catalog, calibration, assumptions,
                sa: SpecAssumptions) -> SpecRow | Skip:
    """Draft model, k and acceptance from the row's notes where published, else stated defaults."""
    text = f"{row.software} {row.notes}"
    mtp = re.search(r"MTP-?(\d+)", text)
    mean = re.search(r"~?\s*([\d.]+)\s*tokens/step", text)
    if mtp:
        k = int(mtp.group(1))
        if model.mtp_layers < 1:
            return Skip(row.id, f"row uses MTP drafting but {model.name} has no MTP layers in its config")
        draft = head_draft(dep)  # the MTP module: one more decoder layer, drafting on the same GPUs
        assumptions.append(f"speculative decoding: MTP draft = one {model.name} decoder layer on the same chips, k={k}")
    elif sa.method != "draft":
        k, acc = sa.k, sa.acceptance
        if k is None or acc is None:
            entry = default_acceptance(sa.method, model.name)
            k = k or entry.default_k
            if acc is None:
                if k > len(entry.conditional()):
                    return Skip(row.id, f"speculative decoding: the published {sa.method} acceptance ({entry.name}) "
                                        f"covers {len(entry.conditional())} drafted positions, not k={k}")
                acc = entry.conditional()[:k]
                sa = replace(sa, acceptance=acc, source=f"{entry.name} ({entry.basis}): {entry.source}")
        sa = replace(sa, k=k)
        draft = head_draft(dep)
        assumptions.append(f"speculative decoding: draft unpublished, assumed {model.name}'s own {sa.method} head (the "
                           f"deployment file's method) on the same chips, k={k}")
    else:
        k = sa.k
        draft_model = load_model(sa.draft_model)
        try:
            if dep.dataflow:  # its own pipeline beside the target's, built as mode lpu builds it
                probe = build_deployment(draft_model, dep.chip.name, chips=1, precision=dep.plan.name, catalog=catalog,
                                         calibration=calibration)
                draft = sram_draft(draft_model, dep.chip.name, dep.plan.name,
                                   min_chips_for_context(probe, row.input_len or API_DEFAULT_INPUT),
                                   dep.par.replicas, catalog, calibration)
            else:
                draft = replace(build_deployment(draft_model, dep.chip.name, chips=dep.chips_per_replica, tp=dep.par.tp,
                                                 precision=dep.plan.name, catalog=catalog, calibration=calibration,
                                                 engine=dep.engine.name),
                                par=dep.par)
        except InputError as e:
            return Skip(row.id, f"speculative decoding: the assumed draft does not fit ({e})")
        assumptions.append(f"speculative decoding: draft model unpublished, assumed {sa.draft_model} on its own "
                           f"{dep.chip.name} chips, k={k}")
    if mean:
        acc = _acceptance_for_mean(float(mean.group(1)), k)
        assumptions.append(f"acceptance {acc:.3f} per token, from the published {mean.group(1)} tokens per step")
    else:
        acc = sa.acceptance
        assumptions.append(f"acceptance unpublished: assumed {sa.acceptance} per token ({sa.source})")
    return SpecRow(draft, k, acc, mtp=bool(mtp) or sa.method != "draft")


def _serving_point(dep: Deployment, classes, b_max, scenario: str, load: float):
    """(output tok/s of the whole system, mean ttft_s, mean tpot_s) for server / concurrency /
    offline. `classes` = (input, output, weight) arrays of the request classes (one class for
    fixed lengths). Per-request costs (prefill, TTFT, the time a request holds its batch slot)
    are averaged over the classes (E below); a decode step is shared by the whole batch, so it is
    timed once, at the batch's context: each class weighted by its share and its output length
    (the time it stays in the batch); attention reads the sum of the batch's contexts."""
    reps = dep.par.replicas
    # classes on a leading axis, in front of the efficiency arrays' axes (a fit's parameter grid)
    lead = (-1,) + (1,) * max(np.ndim(getattr(dep.eff, f)) for f in dep.eff.__dataclass_fields__)
    inp, out, w = (np.asarray(a, dtype=float).reshape(lead) for a in classes)

    def mean(x):
        return np.sum(w * x, axis=0)
    t_pre1, t_pre = prefill_times(dep, inp)  # one request alone; per request, batched prefill
    out_mean, t_pre_mean = mean(out), mean(t_pre)
    slot_share = w * out / np.sum(w * out)  # share of batch slots each class holds
    past = float(np.sum(slot_share * inp))                       # one class: its input
    span = float(np.sum(slot_share * np.maximum(out - 1, 1)))    # one class: its decode steps

    def t_dec(b):
        return step_time(dep, b, 1, past, span).total

    cap = 1.0 / (t_pre_mean + out_mean * t_dec(b_max) / b_max)     # requests/s per replica
    if scenario == "offline":
        return reps * out_mean * cap, mean(t_pre1), t_dec(b_max)
    if scenario == "server":
        lam = load / reps
        rho = np.minimum(lam / cap, MAX_UTILISATION)
        b = np.ones_like(np.asarray(cap, dtype=float))
        for _ in range(FIXED_POINT_ITERATIONS):
            td = t_dec(b)
            tpot = td / np.maximum(1 - lam * t_pre_mean, MIN_DECODE_SHARE)
            ttft = mean(t_pre1) * (1 + rho / (2 * (1 - rho))) + td / 2
            b = 0.5 * b + 0.5 * np.clip(lam * (ttft + (out_mean - 1) * tpot), 1, b_max)
        return reps * out_mean * np.minimum(lam, cap), ttft, tpot
    # concurrency: closed loop with `load` clients in total
    b = np.minimum(np.maximum(load / reps, 1), b_max) * np.ones_like(np.asarray(cap, dtype=float))
    x, ttft, tpot = closed_loop(b, mean(t_pre1), t_pre_mean, out_mean, t_dec(b))
    return reps * out_mean * x, ttft, tpot


def closed_loop(b, t_pre1, t_pre, out, t_step, tokens_per_step=1.0):
    """(requests/s, ttft_s, tpot_s) of one aggregated replica serving a closed loop of `b` clients
    (all in its batch): a request costs its prefill alone (`t_pre1`) to its first token, half a
    decode step of wait, then out - 1 tokens at `tokens_per_step` per step of `t_step` seconds
    (speculative decoding: E tokens per verify step), each step stretched by the share of engine
    time spent prefilling the others' prompts (`t_pre` s each when batched); damped fixed point."""
    x = b / (t_pre1 + out * t_step / tokens_per_step)
    for _ in range(FIXED_POINT_ITERATIONS):
        tpot = t_step / tokens_per_step / np.maximum(1 - x * t_pre, MIN_DECODE_SHARE)
        ttft = t_pre1 + t_step / 2
        x = 0.5 * x + 0.5 * b / (ttft + (out - 1) * tpot)
    return x, ttft, tpot


def predict_layout(plan: RowPlan, dep: Deployment) -> tuple[np.ndarray, np.ndarray]:
    """(predicted value in the row's unit, objective to maximise for layout choice)."""
    values, objective = layout_values(plan, dep)
    return np.asarray(values[plan.row.metric], dtype=float), objective


def layout_values(plan: RowPlan, dep: Deployment) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """({metric: predicted value} for every metric the row's scenario gives, objective to maximise
    for layout choice); rows that differ only in metric share these."""
    r, inp, out = plan.row, plan.input_len, plan.output_len
    if r.scenario in ("fixed_batch", "single_stream"):
        b = (r.batch or 1) if r.scenario == "fixed_batch" else 1
        ttft = step_time(dep, b, inp, 0).total
        if plan.spec is not None:
            tpot = plan.spec.timer(dep).time_per_token(b, inp, max(out - 1, 1))
        else:
            tpot = step_time(dep, b, 1, inp, max(out - 1, 1)).total
        thr = dep.par.replicas * b * out / (ttft + max(out - 1, 0) * tpot)
    else:
        b_max = np.minimum(ENGINE_MAX_BATCH, max_sequences(dep, plan.resident_context, inp))
        load = r.request_rate if r.scenario == "server" else float(r.concurrency or 1)
        thr, ttft, tpot = _serving_point(dep, plan.length_classes, b_max, r.scenario, load or 0.0)
    value = {
        "output_tok_s": thr, "output_tok_s_per_chip": thr / plan.n_chips, "tok_s_per_user": 1.0 / tpot,
        "ttft_ms": ttft * 1e3, "tpot_ms": tpot * 1e3, "itl_ms": tpot * 1e3,
    }
    if r.scenario == "single_stream":
        objective = -ttft if r.metric == "ttft_ms" else -tpot
    else:
        objective = thr
    return value, np.asarray(objective, dtype=float)


def predict(plan: RowPlan, eff: Efficiency | None = None) -> np.ndarray:
    """Predicted value; with `eff` (fields may be arrays) evaluated for every parameter set at
    once, picking per parameter set the layout with the best objective."""
    best_val = best_obj = None
    for dep in plan.layouts:
        d = replace(dep, eff=eff) if eff is not None else dep
        val, obj = predict_layout(plan, d)
        if best_val is None:
            best_val, best_obj = val, obj
        else:
            take = obj > best_obj
            best_val = np.where(take, val, best_val)
            best_obj = np.where(take, obj, best_obj)
    return best_val
