"""Sweep chunks as Ray tasks (`infersim sweep --ray ADDRESS|auto|local`; ray is the optional extra
`pip install 'infersim[ray]'`).

Each chunk is one task running the same `evaluate_chunk` as a local pool worker. A task whose
worker dies or that raises is retried by Ray (`MAX_RETRIES` times); results come back to the
driver, which alone writes the DuckDB file (sweep/runner.py), so they land in the same table with
the same idempotent inserts. `auto` joins the cluster this machine belongs to (`ray start`), an
address joins that cluster (infersim must be installed on its nodes), `local` starts a private
instance of `jobs` CPUs for this run and stops it afterwards.
"""
from __future__ import annotations

from collections.abc import Callable

from infersim.errors import InputError, shown
from infersim.sweep.evaluate import evaluate_chunk
from infersim.sweep.report import SweepStopped

MAX_RETRIES = 3   # per task, for a dead worker or an exception


def ray_module():
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs ray, which is not installed; `pip install 'infersim[ray]'` or drop --ray "
                         "(the local process pool is the default)") from None
    return ray


def ray_results(evaluate: Callable, chunks: list, report, address: str, jobs: int):
    """Chunk results in completion order from Ray tasks; a task still failing after its retries
    stops the run (runner.SweepStopped) with what was committed kept."""
    ray = ray_module()
    started = not ray.is_initialized()
    if started:
        try:
            if address == "local":
                ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False, configure_logging=False)
            else:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise InputError(f"--ray {shown(address)}: cannot join a Ray cluster ({shown(str(e).splitlines()[0], 160)}); "
                             "start one with `ray start --head`, or use --ray local") from None
    task = ray.remote(max_retries=MAX_RETRIES, retry_exceptions=True)(evaluate_chunk)
    try:
        pending = [task.remote(evaluate, chunk) for chunk in chunks]
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=None)
            for ref in ready:
                try:
                    yield ray.get(ref)
                except ray.exceptions.RayError as e:
                    raise SweepStopped(f"a Ray task failed after {MAX_RETRIES} retries "
                                       f"({shown(str(e).strip().splitlines()[0], 160)}); the rows written so far are "
                                       "kept: run the same command again to continue") from None
    finally:
        if started:
            ray.shutdown()
