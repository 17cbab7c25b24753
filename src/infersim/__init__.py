"""infersim: simulate and plan LLM inference on heterogeneous hardware (GPUs, LPUs, wafer-scale engines)."""

__version__ = "0.1.0"
