"""Workloads: request traces read from public trace files, and synthetic arrival generators."""
from infersim.workload.synthetic import ClosedLoop, closed_loop, gamma_arrivals, poisson, sampled_lengths
from infersim.workload.traces import Requests, read_trace

__all__ = ["Requests", "read_trace", "poisson", "gamma_arrivals", "sampled_lengths", "ClosedLoop", "closed_loop"]
