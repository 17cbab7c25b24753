"""Argument checks shared by the bench scripts: a bad argument is one line and exit code 2 before
any long run, as for the infersim commands."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

from infersim.errors import InputError
from infersim.results import check_out_file


def refuse_bad_args(at_least_one: dict[str, int], out: Path | None, more: Callable[[], None] | None = None) -> None:
    """Exit 2 with one line when a count in `at_least_one` (flag -> value) is below 1, `more()` raises
    InputError, or `out` cannot be written (it may be replaced: bench results are regenerated)."""
    try:
        for flag, v in at_least_one.items():
            if v < 1:
                raise InputError(f"{flag} must be at least 1, got {v}")
        if more is not None:
            more()
        if out is not None:
            check_out_file(out, overwrite=True)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
