"""The sweep driver: evaluates the configurations the `results` table does not hold yet and writes
their rows, so a sweep killed at any moment continues where it stopped when run again.

Work is cut into chunks of a few configurations; a backend (serial, a local process pool, or Ray:
sweep/ray_runner.py) evaluates chunks with an evaluation function (sweep/evaluate.py) and yields
their results as they finish. Only this process writes the DuckDB file: rows are buffered and
committed in one transaction every `commit_every` rows or `commit_s` seconds, with idempotent
inserts. A SIGKILL of the driver loses at most the buffered rows (their configurations are
evaluated again next time); a pool worker that dies (SIGKILL, out of memory) breaks the pool: its
chunks and the others not yet returned are resubmitted to a fresh pool, at most `MAX_POOL_RESTARTS`
times per run, after which the run stops with what it committed kept.
"""
from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from infersim.errors import InputError
from infersim.sweep.evaluate import estimate_config, evaluate_chunk
from infersim.sweep.report import SweepReport, SweepStopped
from infersim.sweep.spec import SweepConfig
from infersim.sweep.store import ResultStore, config_columns

MAX_POOL_RESTARTS = 3
CHUNK = 4            # configurations per task: amortises the inter-process round trip (~1 ms) over ~4-60 ms of work
COMMIT_EVERY = 64    # rows per transaction
COMMIT_S = 1.0       # ... or sooner, after this many seconds

Chunk = list[tuple[str, dict]]
Results = Iterator[list[tuple[str, dict]]]


def serial_results(evaluate: Callable, chunks: list[Chunk], report: SweepReport) -> Results:
    for c in chunks:
        yield evaluate_chunk(evaluate, c)


def _exit_with_parent(parent_pid: int) -> None:
    """Pool worker initializer: exit when the driver is gone (a SIGKILLed driver cannot stop its
    pool, and an idle worker would wait on the task queue forever)."""
    import threading

    def watch():
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        os._exit(0)
    threading.Thread(target=watch, daemon=True, name="exit-with-driver").start()


def pool_results(evaluate: Callable, chunks: list[Chunk], report: SweepReport, jobs: int,
                 on_restart: Callable[[str], None] = lambda msg: None) -> Results:
    """Chunks evaluated by `jobs` spawned worker processes (spawn: a worker never inherits the
    driver's open DuckDB file or threads), in completion order; a broken pool is replaced."""
    pending = dict(enumerate(chunks))
    ctx = multiprocessing.get_context("spawn")
    while pending:
        with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, initializer=_exit_with_parent,
                                 initargs=(os.getpid(),)) as pool:
            futures = {pool.submit(evaluate_chunk, evaluate, chunk): i for i, chunk in pending.items()}
            try:
                while futures:
                    done, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for f in done:
                        rows = f.result()
                        del pending[futures.pop(f)]
                        yield rows
            except BrokenProcessPool:
                report.pool_restarts += 1
                if report.pool_restarts > MAX_POOL_RESTARTS:
                    raise SweepStopped(f"worker processes died {report.pool_restarts} times (killed, or out of memory); "
                                       "the rows written so far are kept: run the same command again to continue, "
                                       "with fewer --jobs if memory is short") from None
                on_restart(f"a worker process died; restarting the pool for the {len(pending)} chunks not yet returned")


def _chunks(todo: list[SweepConfig], size: int) -> list[Chunk]:
    return [[(c.config_id, c.body) for c in todo[i:i + size]] for i in range(0, len(todo), size)]


def default_jobs() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def run_sweep(configs: list[SweepConfig], store: ResultStore, *, sweep_name: str, evaluate: Callable = estimate_config,
              jobs: int = 1, ray_address: str | None = None, overwrite: bool = False, chunk: int = CHUNK,
              commit_every: int = COMMIT_EVERY, commit_s: float = COMMIT_S,
              log: Callable[[str], None] = lambda msg: None) -> SweepReport:
    """Evaluate every configuration of `configs` that `store` does not hold yet (all of them with
    `overwrite`, after deleting their rows) with `evaluate` (a picklable module-level function of
    a configuration's body, see sweep/evaluate.py), writing one row each. `jobs` 1 evaluates in
    this process, more in a local process pool; `ray_address` runs Ray tasks instead."""
    if jobs < 1 or chunk < 1 or commit_every < 1:
        raise InputError("--jobs, the chunk size and --commit-every must each be at least 1")
    report = SweepReport(total=len(configs))
    if overwrite:
        report.deleted = store.delete([c.config_id for c in configs])
    done = store.done_ids()
    todo = [c for c in configs if c.config_id not in done]
    report.already = len(configs) - len(todo)
    by_id = {c.config_id: c for c in todo}
    chunks = _chunks(todo, chunk)
    if not chunks:
        return report
    if ray_address is not None:
        from infersim.sweep.ray_runner import ray_results
        report.backend = f"ray ({ray_address})"
        results: Iterable = ray_results(evaluate, chunks, report, ray_address, jobs)
    elif jobs > 1 and len(chunks) > 1:
        report.backend = f"local pool of {jobs}"
        results = pool_results(evaluate, chunks, report, jobs, on_restart=log)
    else:
        results = serial_results(evaluate, chunks, report)
    buffer: list[dict] = []
    last = start = time.perf_counter()

    def flush():
        nonlocal last
        store.write(buffer)
        report.evaluated += len(buffer)
        for r in buffer:
            report.status[r["status"]] = report.status.get(r["status"], 0) + 1
        buffer.clear()
        last = time.perf_counter()
        log(f"written {report.already + report.evaluated}/{report.total}")

    try:
        for rows in results:
            for cid, metrics in rows:
                c = by_id[cid]
                buffer.append({**config_columns(cid, sweep_name, c.name, c.body), **metrics})
            if len(buffer) >= commit_every or time.perf_counter() - last >= commit_s:
                flush()
    finally:  # rows already evaluated are written even when the run stops early (not on SIGKILL)
        if buffer:
            flush()
        report.seconds = time.perf_counter() - start
    return report
