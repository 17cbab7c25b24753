"""Numeric formats: bytes per stored element and which peak a format computes at.

Block-scaled 4-bit formats carry their scales in the byte count:
NVFP4 = 4-bit values + one FP8 (E4M3) scale per 16 values = 4.5 bits (NVIDIA Blackwell docs);
MXFP4 = 4-bit values + one 8-bit (E8M0) scale per 32 values = 4.25 bits (OCP MX spec v1.0).
"""
from __future__ import annotations

from dataclasses import dataclass

from infersim.errors import InputError

BYTES_PER_ELEMENT: dict[str, float] = {
    "fp32": 4.0,
    "tf32": 4.0,
    "bf16": 2.0,
    "fp16": 2.0,
    "fp8": 1.0,
    "int8": 1.0,
    "fp4": 4.5 / 8,    # NVFP4
    "mxfp4": 4.25 / 8,
    "int4": 4.5 / 8,   # group-quantised int4 with an fp16 scale per 32 values
}

# The peak-throughput key (in ChipSpec.peak_flops) a weight format's matrix products run at.
COMPUTE_KEY = {"fp32": "fp32", "tf32": "tf32", "bf16": "bf16", "fp16": "fp16", "fp8": "fp8",
               "int8": "int8", "fp4": "fp4", "mxfp4": "fp8", "int4": "fp8"}

USER_PRECISIONS = ("bf16", "fp16", "fp8", "int8", "fp4", "mixed")
# Precision when the user names none: GPUs serve bf16 checkpoints as they are; Groq deploys 8-bit
# weights with 16-bit activations (its 576-chip Llama-2-70B cannot hold fp16 weights in SRAM,
# see the calibration README); Cerebras states 16-bit weights.
DEFAULT_PRECISION = {"gpu": "bf16", "lpu": "mixed", "wafer": "bf16", "cpu": "bf16"}


@dataclass(frozen=True)
class PrecisionPlan:
    """How one deployment stores and computes.

    weights: format of dense weights; expert_weights: format of routed-expert weights (may be
    narrower, e.g. gpt-oss ships MXFP4 experts); kv: KV-cache format; activations: format of
    activations exchanged between chips and written between kernels; gemm_peak / attention_peak:
    keys of ChipSpec.peak_flops used for matrix products and for attention math."""

    name: str
    weights: str
    expert_weights: str
    kv: str
    activations: str
    gemm_peak: str
    attention_peak: str

    @property
    def weight_bytes(self) -> float:
        return BYTES_PER_ELEMENT[self.weights]

    @property
    def expert_weight_bytes(self) -> float:
        return BYTES_PER_ELEMENT[self.expert_weights]

    @property
    def kv_bytes(self) -> float:
        return BYTES_PER_ELEMENT[self.kv]

    @property
    def act_bytes(self) -> float:
        return BYTES_PER_ELEMENT[self.activations]


def plan_precision(precision: str, chip_peaks: dict[str, object], chip_name: str,
                   native_expert_format: str | None = None, kv: str | None = None) -> PrecisionPlan:
    """Resolve a user precision ('bf16', 'fp8', 'fp4', 'mixed', ...) against what a chip supports.

    'mixed' means 8-bit weights with 16-bit activations and attention (the DeepSeek-R1 FP4/BF16
    recipe and Groq's undisclosed 8-bit deployments are both approximated this way).
    The KV cache defaults to fp8 when weights are 8-bit or narrower and the chip has fp8, else bf16
    (what TensorRT-LLM and vLLM use for FP8/FP4 deployments).
    Experts stored natively narrower than the requested format (gpt-oss MXFP4) stay narrow."""
    p = precision.lower()
    if p not in USER_PRECISIONS:
        raise InputError(f"unknown precision '{precision}'; use one of {', '.join(USER_PRECISIONS)}")
    weights = "fp8" if p == "mixed" else p
    gemm = COMPUTE_KEY[weights]
    if gemm not in chip_peaks:
        same_width = {"fp8": "int8", "bf16": "fp16", "fp16": "bf16"}.get(gemm)
        if same_width in chip_peaks:  # a format of the same width the chip does compute in
            gemm = same_width
        else:
            have = ", ".join(sorted(chip_peaks)) or "none"
            raise InputError(f"{chip_name} has no {gemm} compute (it has: {have}); choose --precision from those")
    attn = "bf16" if "bf16" in chip_peaks else ("fp16" if "fp16" in chip_peaks else gemm)
    experts = weights
    if native_expert_format and BYTES_PER_ELEMENT[native_expert_format] < BYTES_PER_ELEMENT[weights]:
        experts = native_expert_format
    if kv is None:
        kv = "fp8" if BYTES_PER_ELEMENT[weights] <= 1 and ("fp8" in chip_peaks) else "bf16"
    elif kv not in BYTES_PER_ELEMENT:
        raise InputError(f"unknown KV-cache precision '{kv}'; use one of {', '.join(BYTES_PER_ELEMENT)}")
    act = "bf16"
    return PrecisionPlan(name=p, weights=weights, expert_weights=experts, kv=kv, activations=act,
                         gemm_peak=gemm, attention_peak=attn)
