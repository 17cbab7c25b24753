"""Will this machine hold a simulation? The memory a run needs per request, estimated before anything
is allocated, so `--requests 1000000000` is one clear refusal instead of a MemoryError minutes later.

The estimate counts the structures the simulator keeps for every request at once (bytes, CPython
64-bit): one list slot (an 8-byte pointer) per field of `serving.engine.RequestState`; six boxed
Python numbers (arrival, first-token, last-token and completion times as floats, and the two token
counts as ints; 32 bytes each, the size of a float or a small int object plus allocator rounding);
the workload's columns (arrival, input, output) and the two sampled-length arrays (8 bytes each);
and the per-request records, twice (`serving.metrics.REQUEST_COLUMNS` as numpy columns and the Arrow
table written for --out). Measured with tracemalloc on a synthetic run (tests/test_bad_input.py) the
simulator uses less than this per request; the estimate is meant as an upper bound, not a fit."""
from __future__ import annotations

import os
from pathlib import Path

from infersim.errors import InputError

POINTER_BYTES = 8
BOXED_NUMBER_BYTES = 32
BOXED_NUMBERS_PER_REQUEST = 6
WORKLOAD_COLUMNS = 5  # arrival, input and output columns plus the two sampled-length arrays
COLUMN_BYTES = 8  # float64 / int64


def bytes_per_request() -> int:
    """Upper estimate of the simulator's memory per request, bytes (see the module docstring)."""
    from infersim.serving.engine import RequestState
    from infersim.serving.metrics import REQUEST_COLUMNS
    state_fields = len(vars(RequestState(0)))
    return (state_fields * POINTER_BYTES + BOXED_NUMBERS_PER_REQUEST * BOXED_NUMBER_BYTES
            + WORKLOAD_COLUMNS * COLUMN_BYTES + 2 * len(REQUEST_COLUMNS) * COLUMN_BYTES)


def available_memory_bytes() -> int | None:
    """Memory this process may still use, bytes: the kernel's MemAvailable (or free pages), capped by a
    cgroup v2 limit when one is set; None where neither can be read."""
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (AttributeError, ValueError, OSError):
            return None
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    return avail


def check_request_memory(n_requests: int, what: str, available: int | None = None) -> None:
    """InputError if simulating `n_requests` would need more memory than is available (`available`
    bytes; default: this machine's), with both figures and the largest count that fits."""
    available = available_memory_bytes() if available is None else available
    if available is None:
        return
    per = bytes_per_request()
    need = n_requests * per
    if need <= available:
        return
    raise InputError(f"{what} needs about {need / 1e9:,.3g} GB of memory ({n_requests:,} requests x {per} bytes of "
                     f"simulator state and records) but {max(available, 0) / 1e9:,.3g} GB is available; simulate at "
                     f"most about {max(available, 0) // per:,} requests, or use a machine with more memory")
