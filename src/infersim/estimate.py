"""`estimate`: analytical figures of a plan (typed API under the CLI); no simulation.

Two views of the same plan (modes.build_plan):
- `estimate_static(plan, ...)`: prefill + decode of one static batch on a single-pool plan: a
  batch of `batch` requests of `input_len` prompt tokens is prefilled together, then decoded
  together for `output_len` tokens (the `fixed_batch` scenario). TTFT = prefill time; TPOT = mean
  decode step over contexts input_len+1 .. input_len+output_len-1 (closed form, see work.py).
  `estimate(model, system, ...)` is the same from command-line style options.
- `estimate_plan(plan, ...)`: steady state of any plan, every decode replica running `batch`
  sequences: per-user speed, throughput, per rack and per MW, where the time goes. Its decode step
  comes from the decode pool's step timer (costmodel/timer.py), so it holds for every mode.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from infersim.catalog.hardware import HardwareCatalog
from infersim.catalog.models import ModelArch
from infersim.calibration.efficiency import Calibration, efficiency_dict
from infersim.costmodel.execution import CATEGORIES, Breakdown
from infersim.costmodel.kvtransfer import kv_transfer_seconds
from infersim.costmodel.memory import max_sequences, memory_fit, min_chips_for_context
from infersim.costmodel.step import StepCost, step_time
from infersim.deployments.options import spec_from_options
from infersim.deployments.plan import Plan
from infersim.errors import InputError
from infersim.mapping.deployment import Deployment
from infersim.mapping.engine import MAX_TOKENS_PER_STEP, rank_prefill_chunk
from infersim.modes import build_plan
from infersim.modes._shared import Sizing

GB = 1e9


@dataclass
class PhaseResult:
    time_s: float
    tokens_per_s: float
    breakdown: dict[str, float]
    bottleneck: str
    bottleneck_share: float


@dataclass
class Estimate:
    model: str
    system: str
    chip: str
    chips: int
    parallel: dict[str, int]
    precision: str
    batch: int
    input_len: int
    output_len: int
    ttft_s: float
    tpot_s: float
    tok_s_per_user: float
    output_tok_s: float
    decode_tok_s: float
    prefill: PhaseResult
    decode: PhaseResult | None
    memory_per_chip: dict[str, float]
    max_batch_at_context: int
    calibration: str
    efficiency: dict[str, float]
    notes: list[str] = field(default_factory=list)
    plan: Plan | None = field(default=None, repr=False, compare=False)  # what was estimated (economics prices it)

    def to_dict(self) -> dict:
        phases = {"prefill": self.prefill.__dict__}
        if self.decode:
            phases["decode"] = self.decode.__dict__
        return {
            "model": self.model, "system": self.system, "chip": self.chip, "chips": self.chips,
            "parallel": self.parallel, "precision": self.precision, "batch": self.batch,
            "input_len": self.input_len, "output_len": self.output_len,
            "ttft_s": self.ttft_s, "tpot_s": self.tpot_s, "tok_s_per_user": self.tok_s_per_user,
            "output_tok_s": self.output_tok_s, "decode_tok_s": self.decode_tok_s,
            "bottleneck": {k: v["bottleneck"] for k, v in phases.items()},
            "phases": phases, "memory_per_chip": self.memory_per_chip,
            "max_batch_at_context": self.max_batch_at_context,
            "calibration": self.calibration, "efficiency": self.efficiency, "notes": self.notes,
        }


def _phase(b: Breakdown, tokens: float) -> PhaseResult:
    parts = {c: float(np.asarray(getattr(b, c)).item()) for c in CATEGORIES}
    total = sum(parts.values())
    top = max(parts, key=parts.get)
    return PhaseResult(time_s=total, tokens_per_s=tokens / total if total > 0 else float("inf"),
                       breakdown=parts, bottleneck=top, bottleneck_share=parts[top] / total if total else 0.0)


def latency_and_throughput(dep: Deployment, batch, input_len, output_len):
    """Vectorised core: (ttft_s, tpot_s, output_tok_s) arrays for a static batch; broadcasts."""
    batch = np.asarray(batch, dtype=float)
    inp = np.asarray(input_len, dtype=float)
    out = np.asarray(output_len, dtype=float)
    ttft = step_time(dep, batch, inp, 0.0).total
    steps = np.maximum(out - 1, 0)
    tpot = step_time(dep, batch, 1.0, inp, np.maximum(steps, 1)).total
    e2e = ttft + steps * tpot
    return ttft, tpot, dep.par.replicas * batch * out / e2e


def prefill_times(dep: Deployment, input_len):
    """(seconds to prefill one prompt alone, engine seconds per prompt when an engine packs as
    many prompts as fit MAX_TOKENS_PER_STEP into each step; under DP attention each rank packs its
    own, in chunks of mapping.engine.rank_prefill_chunk); arrays broadcast."""
    inp = np.asarray(input_len, dtype=float)
    dp = 1 if dep.dataflow else dep.par.ep
    per_step = dp * np.maximum(1.0, np.floor(rank_prefill_chunk(MAX_TOKENS_PER_STEP, dp) / inp))
    return step_time(dep, 1, inp, 0).total, step_time(dep, per_step, inp, 0).total / per_step


def check_fit(dep: Deployment, batch: int, context: int, step_tokens: int):
    fit = memory_fit(dep, batch, context, step_tokens)
    free = float(np.min(fit.free))
    if free < 0:
        d = fit.as_dict()
        where = "SRAM" if dep.dataflow else "memory"
        hint = (f"use at least {min_chips_for_context(dep, context, batch) * dep.par.replicas} chips" if dep.dataflow
                else "raise --tp/--ep, add chips, lower --precision")
        raise InputError(
            f"{dep.model.name} does not fit on {dep.chip.name} x{dep.n_chips} at batch {batch}, context {context}: "
            f"each chip needs {(fit.capacity - free) / GB:.1f} GB (weights {d['weights_bytes'] / GB:.1f}, "
            f"KV/state {d['kv_cache_bytes'] / GB:.1f}, activations {d['activations_bytes'] / GB:.1f}, "
            f"reserve {d['reserve_bytes'] / GB:.1f}) but has {fit.capacity / GB:.1f} GB of {where}, short by "
            f"{-free / GB:.1f} GB; {hint} or reduce --batch")
    return fit


def estimate(model: ModelArch, system: str, *, batch: int = 1, input_len: int = 1024, output_len: int = 128,
             chips: int | None = None, tp: int | None = None, pp: int = 1, ep: int = 1, replicas: int | None = None,
             precision: str | None = None, kv_precision: str | None = None, catalog: HardwareCatalog | None = None,
             calibration: Calibration | None = None, engine: str | None = None) -> Estimate:
    """Predict one static batch from command-line style options (see `estimate_static`)."""
    from infersim.catalog.hardware import load_catalog
    catalog = catalog or load_catalog()
    spec = spec_from_options(catalog, system=system, chips=chips, tp=tp, pp=pp, ep=ep, replicas=replicas,
                             precision=precision, kv_precision=kv_precision, engine=engine)
    _check_lengths(batch, input_len, output_len)
    plan = build_plan(spec, model, catalog, calibration, sizing=Sizing(input_len + output_len, batch, auto=True))
    return estimate_static(plan, batch=batch, input_len=input_len, output_len=output_len)


def _check_lengths(batch: int, input_len: int, output_len: int) -> None:
    bad = [f"{flag} {v}" for flag, v in (("--batch", batch), ("--input", input_len), ("--output", output_len)) if v < 1]
    if bad:
        raise InputError(f"{', '.join(bad)}: --batch, --input and --output must each be at least 1")


def estimate_static(plan: Plan, *, batch: int = 1, input_len: int = 1024, output_len: int = 128) -> Estimate:
    """Predict one static batch on a single-pool plan: per-phase time, tokens/s, bottleneck and
    per-chip memory."""
    _check_lengths(batch, input_len, output_len)
    pools = plan.serving_pools()
    if len(pools) != 1:
        raise InputError("a static-batch estimate runs on one pool; estimate a disaggregated deployment's steady state "
                         "with a deployment file (--deployment) or simulate it")
    dep = pools[0].deployment
    model = plan.model
    context = input_len + output_len
    if context > model.max_context:
        raise InputError(f"input + output = {context} tokens exceeds {model.name}'s context of {model.max_context}")
    fit = check_fit(dep, batch, context, batch * input_len)
    steps = max(output_len - 1, 0)
    # the prefill step and the decode step (averaged over the steps) in one evaluation: every
    # operation is elementwise over the two, so each equals its own evaluation exactly
    both = step_time(dep, batch, np.array([input_len, 1.0]), np.array([0.0, input_len]), np.array([1.0, max(steps, 1)]),
                     cost=StepCost(dep, compiled=False))
    pre, dec = (Breakdown(*(np.asarray(getattr(both, c))[..., i] for c in CATEGORIES)) for i in (0, 1))
    dec = dec if steps else None
    ttft = float(pre.total)
    tpot = float(dec.total) if dec is not None else 0.0
    e2e = ttft + steps * tpot
    reps = dep.par.replicas
    return Estimate(
        model=model.name, system=dep.system.name, chip=dep.chip.name, chips=dep.n_chips,
        parallel={"tp": dep.par.tp, "pp": dep.par.pp, "ep": dep.par.ep, "moe_ep": dep.par.moe_ep, "replicas": reps},
        precision=dep.plan.name, batch=batch, input_len=input_len, output_len=output_len,
        ttft_s=ttft, tpot_s=tpot, tok_s_per_user=(1 / tpot if tpot else 0.0),
        output_tok_s=reps * batch * output_len / e2e, decode_tok_s=(reps * batch / tpot if tpot else 0.0),
        prefill=_phase(pre, reps * batch * input_len), decode=_phase(dec, reps * batch) if dec is not None else None,
        memory_per_chip=fit.as_dict(), max_batch_at_context=max_sequences(dep, context, input_len),
        calibration=dep.calibration_note, efficiency=efficiency_dict(dep.eff), notes=list(plan.notes), plan=plan)


def estimate_plan(plan: Plan, batch: int = 1, input_len: int = 1024, output_len: int = 256) -> dict:
    """Per-user speed, throughput, per-rack and per-MW figures of a plan at `batch` sequences per
    decode replica (steady state: every replica decodes a full batch; prefill capacity can cap it)."""
    _check_lengths(batch, input_len, output_len)
    m, inp, out = plan.model, input_len, output_len
    res: dict = {"deployment": plan.spec.name, "mode": plan.spec.mode, "model": m.name, "batch": batch,
                 "input_len": inp, "output_len": out, "racks": dict(plan.racks), "power_w": plan.power_w,
                 "notes": list(plan.notes)}
    prefill, decode = plan.prefill_pool, plan.decode_pool
    step = decode.timer.decode_step(batch, inp, decode_span(out))
    tokens_per_step = decode.timer.tokens_per_decode_step
    tpot = step.seconds / tokens_per_step
    res.update(step.details)
    _check_batch(decode.deployment, batch, inp + out, res)
    alone, batched = prefill_times(prefill.deployment, inp)
    ttft, per_prompt = float(alone), float(batched)
    decode_reps = decode.replicas
    disaggregated = prefill.role == "prefill"
    req_s = float(request_rate(prefill.replicas if disaggregated else None, decode_reps, per_prompt, tpot, batch, out))
    if disaggregated:
        res["prefill_replicas"] = prefill.replicas
        res["kv_transfer_s"] = float(kv_transfer_seconds(prefill.deployment, decode.deployment, plan.kv_link, inp))
        # reported, not added to TTFT: the simulator too counts the first token at the end of prefill
    tok_s = req_s * out
    # the share of the serving hardware prefill takes (economics charges it to input tokens): its
    # chips when disaggregated, its share of each replica's time when prefill and decode alternate
    res["prefill_share"] = (prefill.deployment.n_chips / (prefill.deployment.n_chips + decode.deployment.n_chips)
                            if prefill.role == "prefill" else per_prompt / (per_prompt + out * tpot / batch))
    res.update({"ttft_s": ttft, "tpot_s": tpot, "tok_s_per_user": 1.0 / tpot, "output_tok_s": tok_s,
                "decode_replicas": decode_reps, "decode_steps_per_request": max((out - 1) / tokens_per_step, 1.0),
                "time_shares": step.shares})
    # this path's own GPUs (without the premium path's)
    gpus = {p.role: p.deployment.n_chips for p in plan.serving_pools()}
    res["output_tok_s_per_gpu"] = tok_s / sum(gpus.values())
    res["output_tok_s_per_decode_gpu"] = tok_s / gpus["decode"] if "decode" in gpus else None
    if plan.premium is not None:
        # SLO classes: both paths run at `batch` per decode replica; the headline per-user figures
        # are the standard class's, throughput is both paths' together (racks and power are too)
        prem = estimate_plan(plan.premium, batch, inp, out)
        std = {k: res[k] for k in ("ttft_s", "tpot_s", "tok_s_per_user", "output_tok_s")}
        res["classes"] = {"standard": std, "premium": {k: prem[k] for k in std}}
        tok_s = res["output_tok_s"] = tok_s + prem["output_tok_s"]
        share = plan.spec.routing.premium_fraction
        res["notes"].append(f"capacity split: premium path {prem['output_tok_s'] / tok_s:.0%} of output tokens vs "
                            f"{share:.0%} of requests routed to it")
    res["tok_s_per_rack"] = tok_s / plan.total_racks if plan.total_racks else None
    res["tok_s_per_mw"] = tok_s / (plan.power_w / 1e6) if plan.power_w else None
    return res


def decode_span(output_len):
    """Decode steps a request's TPOT is averaged over: output_len - 1 (the first output token comes
    with prefill), at least 1; an int for an int, arrays broadcast."""
    if np.ndim(output_len):
        return np.maximum(np.asarray(output_len) - 1, 1)
    return max(output_len - 1, 1)


def request_rate(prefill_replicas, decode_replicas, per_prompt, tpot, batch, output_len):
    """Requests/s of a plan's steady state (arrays broadcast), from the engine seconds per prompt
    of prefill (`per_prompt`, prefill_times' batched figure), seconds per output token (`tpot`) and
    `batch` sequences per decode replica: disaggregated (`prefill_replicas` given) the slower of the
    prefill pool and the decode pool sets it; aggregated (None) each of the `decode_replicas`
    alternates prefilling a request and its share of the decode steps. Decreasing in per_prompt
    and tpot."""
    if prefill_replicas is not None:
        return np.minimum(prefill_replicas / per_prompt,
                          decode_replicas * batch / (decode_span(output_len) * tpot))
    return decode_replicas / (per_prompt + output_len * tpot / batch)


def _check_batch(dep: Deployment, batch: int, context: int, res: dict) -> None:
    cap = max_sequences(dep, context, context)
    res["max_batch_at_context"] = cap
    if cap < 1:
        raise InputError(f"{dep.model.name} on {dep.chip.name} x{dep.chips_per_replica} cannot hold one {context}-token "
                         f"context: its KV cache does not fit next to the weights; use more chips per replica")
    if batch > cap:
        where = "SRAM" if dep.dataflow else "HBM"
        res["notes"].append(f"KV cache in {where} binds: at most {cap} sequences of {context} tokens fit per replica, "
                            f"not {batch}")
        raise InputError(f"batch {batch} does not fit: KV cache in {where} holds at most {cap} sequences of {context} "
                         f"tokens per {dep.chip.name} x{dep.chips_per_replica} replica; lower --batch to {cap}")
