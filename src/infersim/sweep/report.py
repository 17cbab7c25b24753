"""What a sweep run did (`SweepReport`) and how it stops early (`SweepStopped`); shared by the
driver (runner.py) and its backends (ray_runner.py)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class SweepReport:
    total: int
    already: int = 0        # rows the table held before this run
    deleted: int = 0        # rows --overwrite removed first
    evaluated: int = 0      # rows written by this run
    seconds: float = 0.0    # wall time of the evaluation and writing
    status: dict[str, int] = field(default_factory=dict)
    pool_restarts: int = 0
    backend: str = "serial"

    @property
    def configs_per_s(self) -> float:
        return self.evaluated / self.seconds if self.seconds > 0 else 0.0


class SweepStopped(RuntimeError):
    """The run stopped early (workers kept dying, a Ray task failed after its retries); what it
    committed stays, and running the same command again continues (the CLI: one line, exit 1)."""
