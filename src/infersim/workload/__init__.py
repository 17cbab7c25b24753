"""Workloads: request traces read from public trace files, and synthetic arrival generators."""
from infersim.workload.synthetic import gamma_arrivals, poisson
from infersim.workload.traces import Requests, read_trace

__all__ = ["Requests", "read_trace", "poisson", "gamma_arrivals"]
