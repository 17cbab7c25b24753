"""A deployment: a model on a system with a parallel layout and a precision — the validated input
every cost-model and simulator call takes."""
from __future__ import annotations

from dataclasses import dataclass

from infersim.catalog.engines import EngineSpec, engine as engine_named
from infersim.catalog.hardware import ChipSpec, HardwareCatalog, LinkSpec, SystemSpec, load_catalog
from infersim.catalog.models import ModelArch, MoESpec
from infersim.calibration.efficiency import Calibration, Efficiency, load_calibration
from infersim.mapping.precision import DEFAULT_PRECISION, PrecisionPlan, plan_precision
from infersim.errors import InputError


def whole_expert_groups(tp: int, ep: int, moe_ep: int) -> int:
    """Groups the routed experts are placed over as whole experts (1: tensor-sharded over all the
    replica's GPUs): with DP attention (ep > 1) every one of the tp x ep GPUs is a group; without
    it `moe_ep` groups of tp / moe_ep GPUs each. Each group holds ceil(E / groups) experts, tensor
    sharded over its GPUs (TensorRT-LLM moe_tp x moe_ep)."""
    return tp * ep if ep > 1 else moe_ep


@dataclass(frozen=True)
class Parallelism:
    """A replica is tp x ep x pp chips. ep is the number of attention data-parallel ranks (DP
    attention): each rank of tp chips runs attention (tp-way tensor parallel), dense layers,
    embedding and LM head for its own sequences and holds their KV cache; the routed experts are
    spread over all tp x ep chips (expert parallel, an all-to-all per MoE layer; wide EP when
    tp x ep is large, e.g. 72 GPUs of an NVL72 domain). At ep 1 attention is tp-way tensor parallel
    and the experts live on the same tp GPUs: tensor-sharded (moe_ep 1), or placed whole over
    `moe_ep` groups of tp / moe_ep GPUs (the engines' EP without DP attention: TensorRT-LLM
    moe_tp x moe_ep = tp, SGLang --ep-size without --enable-dp-attention; tokens are replicated
    after the attention all-reduce, so each GPU runs its experts on all tokens and the MoE output
    is all-reduced, no all-to-all). Dense models treat ep as plain data parallelism. pp: pipeline
    stages; replicas: independent copies. On LPUs and wafers a replica is one layer pipeline over
    all its chips (tp/pp/ep unused). The engines' (tp, ep, attention-DP) flags map here through
    `engine_layout`."""

    tp: int = 1
    pp: int = 1
    ep: int = 1
    replicas: int = 1
    moe_ep: int = 1

    def __post_init__(self):
        if self.moe_ep < 1:
            raise InputError(f"moe_ep must be at least 1, got {self.moe_ep}")
        if self.moe_ep > 1 and self.ep > 1:
            raise InputError(f"moe_ep {self.moe_ep} with ep {self.ep}: with attention data parallel ranks (ep > 1) the "
                             "experts are already whole over all tp x ep GPUs; drop moe_ep")
        if self.tp % self.moe_ep:
            raise InputError(f"moe_ep {self.moe_ep} does not divide tp {self.tp}: the experts sit whole on moe_ep groups "
                             f"of the tp GPUs (moe_tp x moe_ep = tp); use a moe_ep that divides {self.tp}")

    @property
    def chips_per_replica(self) -> int:
        return self.tp * self.pp * self.ep

    @property
    def dp_attention(self) -> bool:
        """Whether attention runs data parallel over several ranks (ep > 1)."""
        return self.ep > 1

    @property
    def expert_parallel(self) -> int:
        """Groups the routed experts are placed over as whole experts (1: tensor-sharded experts);
        see whole_expert_groups."""
        return whole_expert_groups(self.tp, self.ep, self.moe_ep)


def engine_layout(tp: int, ep: int = 1, dp_attention: bool = False) -> tuple[int, int, int]:
    """infersim's (tp, ep, moe_ep) for an engine instance launched with tensor_parallel_size `tp`,
    expert_parallel_size `ep` and attention data parallelism on or off (TensorRT-LLM
    `enable_attention_dp`, SGLang `--enable-dp-attention --dp tp`, vLLM `-dp tp -tp 1`): the
    instance is `tp` GPUs either way. With DP attention each GPU is one attention rank: (1, tp, 1).
    Without it attention is tp-way tensor parallel and the experts live whole on `ep` groups of
    the same tp GPUs, tensor-sharded within a group (ep 1: all experts tensor-sharded): (tp, 1, ep).
    The engine's ep must divide its tp (TensorRT-LLM: moe_tp x moe_ep = tp)."""
    for label, v in (("tp", tp), ("ep", ep)):
        if v < 1:
            raise InputError(f"engine {label} must be at least 1, got {v}")
    if tp % ep:
        raise InputError(f"engine ep {ep} does not divide engine tp {tp}: the experts live on the instance's tp GPUs "
                         f"(moe_tp x moe_ep = tp); use an ep that divides {tp}")
    return (1, tp, 1) if dp_attention else (tp, 1, ep)


def check_expert_parallel(model: ModelArch, par: Parallelism) -> None:
    """InputError when expert parallelism leaves a GPU without a whole expert (more GPUs than
    routed experts); an EP size that does not divide the experts is allowed: a GPU then holds
    ceil(E / EP) expert slots, the spare ones filled by redundant copies (EPLB)."""
    experts = [l.ffn.n_routed for l, _ in model.layer_groups() if isinstance(l.ffn, MoESpec)]
    if par.expert_parallel > 1 and experts and par.expert_parallel > min(experts):
        if par.ep > 1:
            raise InputError(f"tp x ep = {par.expert_parallel} GPUs for the {min(experts)} routed experts of {model.name}: "
                             f"expert parallelism places whole experts, so some GPUs would hold none; use tp x ep <= "
                             f"{min(experts)} (more attention ranks need replicas instead)")
        raise InputError(f"moe_ep {par.moe_ep} expert groups for the {min(experts)} routed experts of {model.name}: "
                         f"whole experts per group would leave some groups empty; use an engine ep <= {min(experts)}")


@dataclass(frozen=True)
class Deployment:
    model: ModelArch
    system: SystemSpec
    chip: ChipSpec
    par: Parallelism
    plan: PrecisionPlan
    eff: Efficiency
    calibration_note: str
    scale_up: LinkSpec | None
    scale_out: LinkSpec | None
    chips_per_replica: int
    engine: EngineSpec | None = None  # the serving engine of a GPU deployment (None: the default engine)

    @property
    def dataflow(self) -> bool:
        """SRAM-resident, statically scheduled layer pipeline (LPU or wafer)."""
        return self.chip.kind in ("lpu", "wafer")

    @property
    def n_chips(self) -> int:
        return self.chips_per_replica * self.par.replicas

    def link_for(self, group: int) -> LinkSpec | None:
        """The slowest link a collective among `group` consecutive chips crosses."""
        if group <= self.system.scale_up_domain and self.scale_up is not None:
            return self.scale_up
        return self.scale_out or self.scale_up


def native_expert_format(model: ModelArch) -> str | None:
    return "mxfp4" if model.quantization and "mxfp4" in model.quantization else None


def routed_expert_params(model: ModelArch) -> float:
    """Parameters of all routed experts (stored at the expert format, split over ep)."""
    return sum(n * l.ffn.expert_params(model.hidden) * l.ffn.n_routed
               for l, n in model.layer_groups() if isinstance(l.ffn, MoESpec))


def weight_bytes_total(model: ModelArch, plan: PrecisionPlan) -> float:
    """Bytes of all weights: routed experts at the expert format, everything else at the weight format."""
    routed = routed_expert_params(model)
    return (model.total_params - routed) * plan.weight_bytes + routed * plan.expert_weight_bytes


def _head_counts(model: ModelArch) -> tuple[set, set]:
    """(heads, KV heads) tensor parallelism must split: every layer's attention and Mamba heads, and
    the KV heads of non-MLA attention (see valid_tensor_parallel)."""
    from infersim.catalog.models import AttentionSpec, MambaSpec
    heads, kv_heads = set(), set()
    for layer, _ in model.layer_groups():
        if isinstance(layer.mixer, AttentionSpec):
            heads.add(layer.mixer.n_heads)
            if layer.mixer.kind != "mla":
                kv_heads.add(layer.mixer.n_kv_heads)
        elif isinstance(layer.mixer, MambaSpec):
            heads.add(layer.mixer.n_heads)
    return heads, kv_heads


def _splits_heads(tp: int, heads: set, kv_heads: set) -> bool:
    return (1 <= tp <= min(heads, default=1) and all(h % tp == 0 for h in heads)
            and all(kv % tp == 0 or tp % kv == 0 for kv in kv_heads))


def valid_tensor_parallel(model: ModelArch) -> list[int]:
    """The tp degrees that split `model`'s heads evenly, as vLLM and TensorRT-LLM require: tp divides
    every layer's attention heads (and Mamba heads), and either tp divides the KV heads or the KV
    heads divide tp (then each KV head is replicated on tp / kv_heads chips). MLA keeps its latent
    cache whole on every chip, so only its attention heads count."""
    heads, kv_heads = _head_counts(model)
    return [tp for tp in range(1, min(heads, default=1) + 1) if _splits_heads(tp, heads, kv_heads)]


def check_tensor_parallel(model: ModelArch, tp: int) -> None:
    """InputError unless `tp` splits the model's heads evenly (see valid_tensor_parallel), naming the valid values."""
    if isinstance(tp, int) and _splits_heads(tp, *_head_counts(model)):
        return
    valid = valid_tensor_parallel(model)
    if tp in valid:
        return
    from infersim.catalog.models import AttentionSpec, MambaSpec
    shapes = sorted({f"{l.mixer.n_heads} attention heads / {l.mixer.n_kv_heads} KV heads" if isinstance(l.mixer, AttentionSpec)
                     and l.mixer.kind != "mla" else f"{l.mixer.n_heads} {'Mamba' if isinstance(l.mixer, MambaSpec) else 'attention'} heads"
                     for l, _ in model.layer_groups() if l.mixer is not None})
    raise InputError(f"tp {tp} does not split the heads of {model.name} ({'; '.join(shapes)}) evenly; use a tp of "
                     f"{', '.join(map(str, valid))} (--tp or a deployment file's gpu.tp; with --chips alone, "
                     "tp = chips / (pp x ep x replicas))")


def build_deployment(model: ModelArch, system_name: str, *, chips: int | None = None, tp: int | None = None,
                     pp: int = 1, ep: int = 1, replicas: int | None = None, precision: str | None = None,
                     kv_precision: str | None = None, catalog: HardwareCatalog | None = None,
                     calibration: Calibration | None = None, engine: str | None = None,
                     moe_ep: int = 1) -> Deployment:
    """Resolve names and check the layout. Chips default to the named system's size, or to
    tp x pp x ep x replicas for a bare chip. A bare LPU/wafer chip needs `chips`: how many depends on
    the KV cache it must hold too (costmodel.memory.min_chips_for_context sizes it). `engine` names
    the GPU serving engine (catalog/data/engines.yaml; None: its documented default). `moe_ep`:
    whole-expert groups over the tp GPUs at ep 1 (Parallelism)."""
    catalog = catalog or load_catalog()
    calibration = calibration or load_calibration()
    eng = engine_named(engine)
    for label, v in (("tp", tp), ("pp", pp), ("ep", ep), ("replicas", replicas), ("chips", chips)):
        if v is not None and v < 1:
            raise InputError(f"--{label} must be at least 1, got {v}")
    probe = catalog.resolve_system(system_name, None)
    chip = catalog.chip(probe.chip)
    eff = calibration.for_chip(chip.kind, chip.family)
    plan = plan_precision(precision or DEFAULT_PRECISION[chip.kind], chip.peak_flops, chip.name, native_expert_format(model), kv_precision)
    for key in {plan.gemm_peak, plan.attention_peak}:  # an unpublished peak is refused here, not mid-model
        chip.flops(key)
    is_named_system = catalog.is_named_system(system_name)

    if chip.kind in ("lpu", "wafer"):
        reps = replicas or 1
        if chips is None:
            if not is_named_system:
                raise InputError(f"{chip.name} keeps weights and KV cache in SRAM: give the chip count (--chips); "
                                 "`infersim estimate` sizes it for a batch")
            chips = probe.n_chips
        if chips % reps:
            raise InputError(f"--chips {chips} is not divisible by --replicas {reps}")
        per = chips // reps
        par = Parallelism(tp=1, pp=1, ep=1, replicas=reps)
    else:
        if chips is None and tp is None:
            tp = 1
        if chips is None:
            chips = probe.n_chips if is_named_system and replicas is None else tp * pp * ep * (replicas or 1)
            if is_named_system and replicas is None and chips % (tp * pp * ep):
                raise InputError(f"{probe.name} has {chips} chips, not a multiple of tp x pp x ep = {tp * pp * ep}; "
                                 f"pick a layout that divides it or pass --chips")
            replicas = chips // (tp * pp * ep)
        elif tp is None:
            reps = replicas or 1
            if chips % (pp * ep * reps):
                raise InputError(f"--chips {chips} is not divisible by pp x ep x replicas = {pp * ep * reps}")
            tp = chips // (pp * ep * reps)
            replicas = reps
        else:
            reps = replicas if replicas is not None else max(1, chips // (tp * pp * ep))
            if tp * pp * ep * reps != chips:
                raise InputError(f"conflicting parallelism: tp x pp x ep x replicas = {tp}x{pp}x{ep}x{reps} = "
                                 f"{tp * pp * ep * reps} chips, but --chips is {chips}; make them agree")
            replicas = reps
        par = Parallelism(tp=tp, pp=pp, ep=ep, replicas=replicas, moe_ep=moe_ep)
        per = par.chips_per_replica
        if pp > model.n_layers:
            raise InputError(f"--pp {pp} exceeds the {model.n_layers} layers of {model.name}")
    system = catalog.resolve_system(system_name, chips) if (chips != probe.n_chips or not is_named_system) else probe
    if chip.kind not in ("lpu", "wafer") and par.chips_per_replica > system.scale_up_domain and system.scale_out_link is None:
        raise InputError(f"a replica of {par.chips_per_replica} chips spans more than one {system.scale_up_domain}-chip "
                         f"scale-up domain of {system.name}, which has no scale-out link")
    if chip.kind not in ("lpu", "wafer"):
        check_tensor_parallel(model, par.tp)
        check_expert_parallel(model, par)
    up = catalog.link(system.scale_up_link) if system.scale_up_link else None
    out = catalog.link(system.scale_out_link) if system.scale_out_link else None
    return Deployment(model=model, system=system, chip=chip, par=par, plan=plan, eff=eff,
                      calibration_note=calibration.provenance(chip.kind, chip.family),
                      scale_up=up, scale_out=out, chips_per_replica=per, engine=eng)


def kv_transfer_link(prefill: Deployment, decode: Deployment, domain: int | None = None) -> LinkSpec | None:
    """The link a request's KV cache crosses from a prefill replica to a decode replica: pools
    that fit one scale-up domain together (e.g. prefill and decode replicas of one NVL72) use it;
    otherwise the scale-out network. `domain` is the scale-up domain of the system both pools are
    carved from (each pool's own system is a partial one, its domain clamped to its chips)."""
    domain = domain or decode.system.scale_up_domain
    together = prefill.n_chips + decode.n_chips <= domain and prefill.system.chip == decode.system.chip
    return (decode.scale_up if together and decode.scale_up is not None else None) or decode.scale_out or decode.scale_up
