"""Errors a user can fix. The CLI prints their message as one line and exits with code 2."""
from __future__ import annotations

import difflib
from collections.abc import Iterable


ECHO_LIMIT = 80  # characters of a user's value that an error message repeats


def shown(value: object, limit: int = ECHO_LIMIT) -> str:
    """A user-supplied value as an error message may echo it: one line, at most `limit` characters
    (longer values keep their start and end around "..."), so a 100 kB argument cannot flood the terminal."""
    text = str(value).replace("\r", " ").replace("\n", " ")
    if len(text) <= limit:
        return text
    head = (limit - 3) * 2 // 3
    return f"{text[:head]}...{text[len(text) - (limit - 3 - head):]}"


class InputError(ValueError):
    """Bad user input: unknown name, malformed file, impossible deployment.

    The message must say what is wrong and how to fix it, in one line."""


def unknown_name(kind: str, name: str, known: Iterable[str], hint: str = "") -> InputError:
    """An InputError for an unknown catalog name, suggesting the closest known names."""
    known = sorted(set(known))
    long = len(name) > ECHO_LIMIT  # no real name is that long; matching it would only cost time
    close = [] if long else difflib.get_close_matches(name.lower(), known, n=3, cutoff=0.5)
    msg = f"unknown {kind} '{shown(name)}'"
    if close:
        msg += f"; did you mean {', '.join(repr(c) for c in close)}?"
    msg += hint or f" (list them with `infersim {kind}s`)"
    return InputError(msg)
