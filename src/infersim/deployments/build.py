"""Turn a deployment file into deployments the cost model and simulator run, and estimate it.

A built `ServingPlan` holds, per mode:
- gpu:  `serve` = the GPU deployment (all replicas), or `prefill` + `decode` pools when
        gpu.prefill_replicas > 0 (P/D over the rack's scale-up link);
- lpu:  `serve` = LPU/wafer layer pipelines (replicas = pipelines that fit the racks);
- afd:  `prefill` = GPU replicas running the whole model; `afd` = the attention replicas with
        their LPU FFN pools (costmodel/afd.py);
- spec: `serve` = the GPU target; `draft` = the draft model's deployment (LPU pipeline or GPUs).
Racks and power come from the named systems' catalog entries (power is an estimate or an
assumption there, with a range that `infersim sensitivity` sweeps).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from infersim.catalog.hardware import HardwareCatalog, load_catalog
from infersim.catalog.models import ModelArch, load_model
from infersim.costmodel.afd import AFDDeployment, AFDStepCost, afd_bottleneck, attention_part, ffn_part, n_ffn_layers
from infersim.calibration.efficiency import Calibration, load_calibration
from infersim.costmodel.memory import max_sequences
from infersim.costmodel.specdec import SpecDecodeCost
from infersim.costmodel.step import StepCost
from infersim.costmodel.work import Batch, batch_shape, model_windows
from infersim.mapping.deployment import Deployment, build_deployment, min_dataflow_chips, weight_bytes_total
from infersim.deployments.spec import DeploymentSpec
from infersim.errors import InputError
from infersim.estimate import prefill_times

GB = 1e9


@dataclass
class ServingPlan:
    spec: DeploymentSpec
    model: ModelArch
    serve: Deployment | None = None
    prefill: Deployment | None = None
    decode: Deployment | None = None
    afd: AFDDeployment | None = None
    draft: Deployment | None = None
    premium: "ServingPlan | None" = None   # SLO routing: the plan serving the premium class
    link: object = None                     # the GPU<->LPU LinkSpec, when the file names one
    racks: dict = field(default_factory=dict)     # {"gpu": n, "lpu": n}
    power_w: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def total_racks(self) -> float:
        return float(sum(self.racks.values()))


def _named_system(catalog: HardwareCatalog, name: str, part: str):
    probe = catalog.resolve_system(name)
    if probe.n_chips <= 1 and catalog.chip(probe.chip).kind == "gpu":
        raise InputError(f"{part}.system '{name}' is a single chip; name a rack or node (e.g. vr-nvl72, gb200-nvl72, "
                         f"hgx-h100) so racks and power are defined")
    return probe


def _power(system, racks: float) -> float:
    q = system.power_w
    return float(q.value) * racks if q is not None and q.value is not None else 0.0


def _gpu_deployment(model: ModelArch, spec: DeploymentSpec, catalog, calibration, replicas: int | None = None,
                    arch: ModelArch | None = None) -> Deployment:
    g = spec.gpu
    system = _named_system(catalog, g.system, "gpu")
    chips = system.n_chips * g.racks
    per = g.tp * g.ep * g.pp
    if chips % per:
        raise InputError(f"gpu: {g.racks} x {system.name} = {chips} chips is not a multiple of tp x ep x pp = {per}")
    reps = replicas if replicas is not None else chips // per
    chip_or_system = system.chip if g.racks > 1 else system.name
    return build_deployment(arch or model, chip_or_system, chips=reps * per, tp=g.tp, pp=g.pp, ep=g.ep, replicas=reps,
                            precision=g.precision, kv_precision=g.kv_precision, catalog=catalog,
                            calibration=calibration)


def _lpu_chips_for(model_part: ModelArch, lpu_chip: str, precision, catalog, calibration) -> tuple[int, float]:
    """(fewest LPU chips whose SRAM holds these weights, weight bytes)."""
    probe = build_deployment(model_part, lpu_chip, chips=1, precision=precision, catalog=catalog, calibration=calibration)
    return (min_dataflow_chips(model_part, probe.chip, probe.plan, probe.eff),
            weight_bytes_total(model_part, probe.plan))


def build_plan(spec: DeploymentSpec, model: ModelArch | None = None, catalog: HardwareCatalog | None = None,
               calibration: Calibration | None = None) -> ServingPlan:
    catalog = catalog or load_catalog()
    calibration = calibration or load_calibration()
    if model is None:
        if spec.model is None:
            raise InputError(f"deployment '{spec.name}' names no model; pass --model")
        model = load_model(spec.model)
    plan = ServingPlan(spec, model)
    plan.link = catalog.link(spec.link) if spec.link else None
    if spec.mode in ("gpu", "spec", "afd"):
        gsys = _named_system(catalog, spec.gpu.system, "gpu")
        plan.racks["gpu"] = spec.gpu.racks
        plan.power_w += _power(gsys, spec.gpu.racks)
    if spec.mode == "gpu":
        _build_gpu(plan, catalog, calibration)
    elif spec.mode == "lpu":
        _build_lpu(plan, catalog, calibration)
    elif spec.mode == "afd":
        _build_afd(plan, catalog, calibration)
    else:
        _build_spec(plan, catalog, calibration)
    if spec.routing is not None:
        premium_spec = spec.model_copy(update={"mode": spec.routing.premium_path, "routing": None,
                                               "gpu": spec.gpu if spec.routing.premium_path == "afd" else None})
        plan.premium = build_plan(premium_spec, model, catalog, calibration)
        for k, v in plan.premium.racks.items():
            plan.racks[k] = plan.racks.get(k, 0) + v
        plan.power_w += plan.premium.power_w
        plan.notes.append(f"SLO routing: {spec.routing.premium_fraction:.0%} of requests (premium) go to the "
                          f"{spec.routing.premium_path} path, the rest to the {spec.mode} path")
    return plan


def _build_gpu(plan: ServingPlan, catalog, calibration) -> None:
    spec = plan.spec
    full = _gpu_deployment(plan.model, spec, catalog, calibration)
    p = spec.gpu.prefill_replicas
    if p == 0:
        plan.serve = full
        return
    if p >= full.par.replicas:
        raise InputError(f"gpu.prefill_replicas {p} leaves no decode replica of the {full.par.replicas}; lower it")
    plan.prefill = _gpu_deployment(plan.model, spec, catalog, calibration, replicas=p)
    plan.decode = _gpu_deployment(plan.model, spec, catalog, calibration, replicas=full.par.replicas - p)


def _build_lpu(plan: ServingPlan, catalog, calibration) -> None:
    l = plan.spec.lpu
    system = catalog.resolve_system(l.system)
    chip = catalog.chip(system.chip)
    if chip.kind not in ("lpu", "wafer"):
        raise InputError(f"lpu.system '{l.system}' holds {chip.kind} chips; name an LPU or wafer system (lpx, cs3, ...)")
    total = system.n_chips * l.racks
    need, wbytes = _lpu_chips_for(plan.model, chip.name, l.precision, catalog, calibration)
    # a pipeline takes whole systems (racks): spreading inside one scale-up domain costs nothing and
    # leaves SRAM for the KV cache; lpu.chips sets it explicitly
    per = l.chips or math.ceil(need / system.n_chips) * system.n_chips
    if per < need:
        raise InputError(f"lpu.chips {per}: {plan.model.name}'s weights ({wbytes / GB:.0f} GB) need at least {need} "
                         f"{chip.name} chips of SRAM; raise lpu.chips or leave it out")
    if per > total:
        raise InputError(f"{plan.model.name} needs {per} {chip.name} chips ({wbytes / GB:.0f} GB of weights in SRAM) "
                         f"but {l.racks} x {system.name} has {total}; set lpu.racks to at least "
                         f"{math.ceil(per / system.n_chips)}")
    pipelines = total // per
    plan.serve = build_deployment(plan.model, chip.name, chips=per * pipelines, replicas=pipelines,
                                  precision=l.precision, catalog=catalog, calibration=calibration)
    plan.racks["lpu"] = l.racks
    plan.power_w += _power(system, l.racks)
    plan.notes.append(f"{pipelines} layer pipeline(s) of {per} {chip.name} chips (SRAM needs >= {need}); "
                      f"{total - per * pipelines} chips unused")


def _build_afd(plan: ServingPlan, catalog, calibration) -> None:
    spec, l = plan.spec, plan.spec.lpu
    lsys = catalog.resolve_system(l.system)
    lchip = catalog.chip(lsys.chip)
    if lchip.kind != "lpu":
        raise InputError(f"afd: lpu.system '{l.system}' holds {lchip.kind} chips; the FFN pool must be LPUs (e.g. lpx)")
    link = catalog.link(spec.link)
    gpu_racks = spec.gpu.racks
    lpu_racks = l.racks_per_gpu_rack * gpu_racks
    lpu_chips = int(round(lpu_racks * lsys.n_chips))
    ffn = ffn_part(plan.model)
    if n_ffn_layers(plan.model) == 0:
        raise InputError(f"{plan.model.name} has no FFN/MoE layers to put on LPUs; use mode gpu")
    need, wbytes = _lpu_chips_for(ffn, lchip.name, l.precision, catalog, calibration)
    # one FFN pipeline spans whole racks (spreading within a rack's C2C domain is free), the
    # fewest that hold the FFN weights; extra racks form more pipelines sharing the GPU replicas
    per_pool = max(lsys.n_chips, math.ceil(need / lsys.n_chips) * lsys.n_chips) if lpu_chips >= lsys.n_chips else need
    if per_pool > lpu_chips:
        ratio = math.ceil(need / lsys.n_chips) / gpu_racks
        raise InputError(f"afd: {plan.model.name}'s FFN/MoE weights ({wbytes / GB:.0f} GB) need {need} {lchip.name} "
                         f"chips of SRAM but {lpu_racks:g} {lsys.name} rack(s) have {lpu_chips}; set "
                         f"lpu.racks_per_gpu_rack to at least {ratio:g} (or add gpu.racks)")
    pools = max(1, lpu_chips // per_pool)
    gpu_full = _gpu_deployment(plan.model, spec, catalog, calibration)
    p = spec.gpu.prefill_replicas
    attn_reps = gpu_full.par.replicas - p
    if p < 1 or attn_reps < 1:
        raise InputError(f"afd: prefill runs on GPU replicas: set gpu.prefill_replicas between 1 and "
                         f"{gpu_full.par.replicas - 1} (of {gpu_full.par.replicas})")
    plan.prefill = _gpu_deployment(plan.model, spec, catalog, calibration, replicas=p)
    attention = _gpu_deployment(plan.model, spec, catalog, calibration, replicas=attn_reps,
                                arch=attention_part(plan.model))
    ffn_dep = build_deployment(ffn, lchip.name, chips=per_pool, replicas=1, precision=l.precision, catalog=catalog,
                               calibration=calibration)
    plan.afd = AFDDeployment(plan.model, attention, ffn_dep, link, units=pools, micro_batches=spec.micro_batches)
    plan.racks["lpu"] = lpu_racks
    plan.power_w += _power(lsys, lpu_racks)
    plan.notes.append(f"AFD: {p} prefill + {attn_reps} attention replicas on GPUs; FFN in {pools} LPU pool(s) of "
                      f"{per_pool} chips ({wbytes / GB:.0f} GB of FFN weights need >= {need}); "
                      f"{spec.micro_batches} micro-batch(es); link {link.name}")


def _build_spec(plan: ServingPlan, catalog, calibration) -> None:
    spec, s = plan.spec, plan.spec.spec
    plan.serve = _gpu_deployment(plan.model, spec, catalog, calibration)
    draft_model = load_model(s.draft_model)
    if s.draft_on == "gpu":
        plan.draft = replace(_gpu_deployment(draft_model, spec, catalog, calibration), par=plan.serve.par)
        return
    l = spec.lpu
    lsys = catalog.resolve_system(l.system)
    lchip = catalog.chip(lsys.chip)
    lpu_racks = l.racks_per_gpu_rack * spec.gpu.racks
    lpu_chips = int(round(lpu_racks * lsys.n_chips))
    need, wbytes = _lpu_chips_for(draft_model, lchip.name, l.precision, catalog, calibration)
    if need > lpu_chips:
        raise InputError(f"spec: draft model {draft_model.name} ({wbytes / GB:.0f} GB) needs {need} {lchip.name} chips; "
                         f"the deployment has {lpu_chips}; raise lpu.racks_per_gpu_rack or pick a smaller draft")
    # every target replica gets its own draft pipeline while chips last
    pipes = max(1, min(plan.serve.par.replicas, lpu_chips // need))
    per = lpu_chips // pipes
    plan.draft = build_deployment(draft_model, lchip.name, chips=per * pipes, replicas=pipes, precision=l.precision,
                                  catalog=catalog, calibration=calibration)
    plan.racks["lpu"] = lpu_racks
    plan.power_w += _power(lsys, lpu_racks)
    plan.notes.append(f"spec: draft {draft_model.name} on {pipes} LPU pipeline(s) of {per} chips; "
                      f"k={s.k}, acceptance {s.acceptance}")


# ------------------------------------------------------------------------------------------------ estimate

def _decode_shape(model: ModelArch, batch: float, inp: float, out: float):
    return batch_shape(Batch(seqs=np.float64(batch), new=np.float64(1), past=np.float64(inp),
                             span=max(out - 1, 1)), model_windows(model))


def _prefill(dep: Deployment, inp: int) -> tuple[float, float]:
    alone, batched = prefill_times(dep, inp)
    return float(alone), float(batched)


def estimate_plan(plan: ServingPlan, batch: int = 1, input_len: int = 1024, output_len: int = 256) -> dict:
    """Per-user speed, throughput, per-rack and per-MW figures of a plan at `batch` sequences per
    decode replica (steady state: every replica decodes a full batch; prefill capacity can cap it)."""
    m, inp, out = plan.model, input_len, output_len
    res: dict = {"deployment": plan.spec.name, "mode": plan.spec.mode, "model": m.name, "batch": batch,
                 "input_len": inp, "output_len": out, "racks": dict(plan.racks), "power_w": plan.power_w,
                 "notes": list(plan.notes)}
    shape = _decode_shape(m, batch, inp, out)
    shares: dict = {}
    if plan.spec.mode == "afd":
        cost = AFDStepCost(plan.afd)
        tpot = float(cost.total(shape))
        ttft, per_prompt = _prefill(plan.prefill, inp)
        decode_reps = plan.afd.attention.par.replicas
        prefill_reps = plan.prefill.par.replicas
        parts = {k: float(v) for k, v in cost.parts(shape).items()}
        res["afd"] = {"parts_s": parts, "bottleneck": afd_bottleneck(cost, shape), "micro_batches": plan.afd.micro_batches,
                      "link": plan.afd.link.name, "lpu_pools": plan.afd.units,
                      "attention_replicas_per_pool": plan.afd.replicas_per_unit}
        shares = cost.time_shares(shape)
        _check_batch(plan.afd.attention, batch, inp + out, res)
    elif plan.spec.mode == "spec":
        s = plan.spec.spec
        cost = SpecDecodeCost(plan.serve, plan.draft, s.k, s.acceptance, plan.link if s.draft_on == "lpu" else None)
        # the context grows by E tokens per cycle: average the cycle over the output's contexts
        cycles = max((out - 1) / cost.expected, 1.0)
        parts = {k: float(v) for k, v in cost.cycle_parts(batch, inp, span=max(out - 1, 1)).items()}
        cycle = sum(parts.values())
        tpot = cycle / cost.expected
        ttft, per_prompt = _prefill(plan.serve, inp)
        decode_reps, prefill_reps = plan.serve.par.replicas, 0
        res["spec"] = {"expected_tokens_per_verify": cost.expected, "cycle_s": cycle, "cycles_per_request": cycles,
                       **parts}
        # drafting and verifying alternate: each side waits while the other works
        draft_kind = plan.draft.chip.kind if s.draft_on == "lpu" else "gpu (draft)"
        shares = {"gpu": {"verify": parts["verify_s"] / cycle,
                          "waiting_for_draft": (parts["draft_s"] + parts["link_s"]) / cycle},
                  draft_kind: {"draft": parts["draft_s"] / cycle,
                               "idle": (parts["verify_s"] + parts["link_s"]) / cycle}}
        if s.draft_on == "lpu":
            shares["link"] = {"busy": parts["link_s"] / cycle}
        _check_batch(plan.serve, batch, inp + out, res)
    else:
        serve = plan.decode or plan.serve
        cost = StepCost(serve)
        b = cost.time(shape)
        tpot = float(b.total)
        ttft, per_prompt = _prefill(plan.prefill or plan.serve, inp)
        decode_reps = serve.par.replicas
        prefill_reps = plan.prefill.par.replicas if plan.prefill is not None else 0
        tot = float(b.total)
        shares = {serve.chip.kind: {k: float(getattr(b, k)) / tot for k in ("compute", "memory", "interconnect", "overhead")}}
        _check_batch(serve, batch, inp + out, res)
    if prefill_reps:   # disaggregated: the slower pool sets the rate
        req_s = min(prefill_reps / per_prompt, decode_reps * batch / (max(out - 1, 1) * tpot))
        res["prefill_replicas"] = prefill_reps
    else:              # aggregated: each replica alternates prefill and decode
        req_s = decode_reps / (per_prompt + out * tpot / batch)
    tok_s = req_s * out
    res.update({"ttft_s": ttft, "tpot_s": tpot, "tok_s_per_user": 1.0 / tpot, "output_tok_s": tok_s,
                "decode_replicas": decode_reps, "time_shares": shares})
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

