"""Errors a user can fix. The CLI prints their message as one line and exits with code 2."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class InputError(ValueError):
    """Bad user input: unknown name, malformed file, impossible deployment.

    The message must say what is wrong and how to fix it, in one line."""


def unknown_name(kind: str, name: str, known: Iterable[str], hint: str = "") -> InputError:
    """An InputError for an unknown catalog name, suggesting the closest known names."""
    known = sorted(set(known))
    close = difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.5)
    msg = f"unknown {kind} '{name}'"
    if close:
        msg += f"; did you mean {', '.join(repr(c) for c in close)}?"
    msg += hint or f" (list them with `infersim {kind}s`)"
    return InputError(msg)
