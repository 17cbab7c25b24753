"""docs/invariants.md names, for each invariant, the tests that verify it: those tests must exist
(a renamed or deleted test would otherwise leave an invariant silently unverified)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "invariants.md"
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(\w+)`")


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.name.startswith("test_")}


def _rows() -> list[tuple[str, list[tuple[str, str]]]]:
    """(invariant or policy name, [(test file, test name)]) for each table row of the document."""
    rows = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] not in ("name", "policy") and not set(cells[0]) <= {"-"}:
            rows.append((cells[0], REFERENCE.findall(cells[2])))
    return rows


def test_every_invariant_names_a_test():
    rows = _rows()
    names = [name for name, _ in rows]
    for invariant in ("request conservation", "lifecycle", "KV block conservation", "fast-path equivalence",
                      "single-request consistency", "determinism"):
        assert invariant in names
    assert all(refs for _, refs in rows), [name for name, refs in rows if not refs]


def test_every_test_named_in_the_invariants_exists():
    missing = []
    cache: dict[str, set[str]] = {}
    for _, refs in _rows():
        for file, name in refs:
            path = ROOT / file
            if file not in cache:
                cache[file] = _test_functions(path) if path.is_file() else set()
            if name not in cache[file]:
                missing.append(f"{file}::{name}")
    assert not missing, f"docs/invariants.md names tests that do not exist: {missing}"
