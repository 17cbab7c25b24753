"""The architecture as the layout states it: imports between infersim's modules form no cycle
(counting imports inside functions too), and the serving simulator knows no execution mode by name."""
from __future__ import annotations

import ast
from pathlib import Path

import infersim

SRC = Path(infersim.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the infersim modules it imports (any nesting level)."""
    modules = {_module_name(p): p for p in SRC.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for t in targets:
                if t in modules and t != name:
                    graph[name].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_serving_knows_no_mode_by_name():
    """The simulator takes step timers through a protocol; AFD and speculative decoding live in modes."""
    g = import_graph()
    serving = [m for m in g if m.startswith("infersim.serving")]
    assert serving
    for m in serving:
        bad = {t for t in g[m] if t.endswith((".afd", ".specdec")) or ".modes" in t}
        assert not bad, (m, bad)


def test_mapping_sits_below_the_cost_model():
    g = import_graph()
    for m in g:
        if m.startswith(("infersim.mapping", "infersim.calibration", "infersim.catalog")):
            assert not {t for t in g[m] if t.startswith(("infersim.costmodel", "infersim.serving", "infersim.cli"))}, m
