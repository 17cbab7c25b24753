"""A plan: what a deployment spec compiles into, and the one input `estimate` and `simulate` take.

A plan is a list of pools, the links between them and a routing rule:
- a `Pool` is a deployment (model, chips, layout, memory: it sizes each replica's KV cache), the
  `StepTimer` that times its steps (costmodel/timer.py), its role and its replica count;
- roles: `both` (prefill and decode: aggregated serving), `prefill`, `decode` (a disaggregated
  pair; the request's KV cache crosses `kv_link` between them), and chips that work inside another
  pool's timer and serve no requests themselves: `draft` (a speculative-decoding draft model),
  `ffn` (the LPU pools holding the FFN layers under attention-FFN disaggregation);
- links: the other links between pools by name (e.g. `gpu_lpu`), for reports and sensitivity;
- routing: `premium` is the plan serving the premium SLO class (a seeded share of requests) next
  to this one, or None.
Racks and power are the plan's whole footprint (premium path included); notes say how the mode
laid the chips out. Mode modules (infersim/modes/) build plans; nothing above them knows modes.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from infersim.catalog.hardware import LinkSpec
from infersim.costmodel.step import StepCost
from infersim.costmodel.timer import StepTimer
from infersim.deployments.spec import DeploymentSpec
from infersim.errors import InputError
from infersim.mapping.deployment import Deployment

ROLES = ("both", "prefill", "decode", "draft", "ffn")
SERVING_ROLES = ("both", "prefill", "decode")


@dataclass(frozen=True)
class Pool:
    role: str
    deployment: Deployment
    timer: StepTimer
    summary: dict = field(default_factory=dict)  # the mode's description of this pool, for reports

    def __post_init__(self):
        if self.role not in ROLES:
            raise ValueError(f"pool role '{self.role}' is not one of {ROLES}")

    @property
    def replicas(self) -> int:
        return self.deployment.par.replicas


def plain_pool(dep: Deployment, role: str = "both") -> Pool:
    """A pool whose steps are the deployment's own kernels (no AFD, no drafting)."""
    return Pool(role, dep, StepCost(dep))


@dataclass
class Plan:
    spec: DeploymentSpec
    model: object  # ModelArch
    pools: list[Pool]
    kv_link: LinkSpec | None = None  # prefill -> decode KV-cache transfers
    links: dict[str, LinkSpec] = field(default_factory=dict)
    premium: "Plan | None" = None
    racks: dict[str, float] = field(default_factory=dict)  # {"gpu": n, "lpu": n}
    power_w: float = 0.0
    notes: list[str] = field(default_factory=list)
    summary: dict = field(default_factory=dict)  # the mode's extra figures for simulate's summary

    @property
    def total_racks(self) -> float:
        return float(sum(self.racks.values()))

    def serving_pools(self) -> list[Pool]:
        """The pools requests pass through, in order: [both] or [prefill, decode]."""
        entry = [p for p in self.pools if p.role in ("both", "prefill")]
        decode = [p for p in self.pools if p.role == "decode"]
        if len(entry) != 1 or len(decode) > 1 or (decode and entry[0].role != "prefill"):
            raise InputError(f"plan '{self.spec.name}' has pools {[p.role for p in self.pools]}; a plan serves "
                             "through one 'both' pool or one 'prefill' and one 'decode' pool")
        return entry + decode

    def pool(self, role: str) -> Pool:
        for p in self.pools:
            if p.role == role:
                return p
        raise KeyError(role)

    @property
    def decode_pool(self) -> Pool:
        """The pool whose step timer sets per-user decode speed."""
        return self.serving_pools()[-1]

    @property
    def prefill_pool(self) -> Pool:
        return self.serving_pools()[0]
