"""Shared assertions for CLI tests (imported by the test modules; pytest puts tests/ on sys.path)."""
from __future__ import annotations


def assert_fails_cleanly(r) -> str:
    """Bad input must give exit code 2 and exactly one 'error: ...' line, never a traceback."""
    assert r.exit_code == 2, (r.exit_code, r.stdout, r.stderr, r.exception)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    return lines[0]
