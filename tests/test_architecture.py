"""The layering of ARCHITECTURE.md, checked on the source: no import loops, no upward imports.

Module-level imports form the graph (imports inside functions are the lazy kind the CLI's
start-up time depends on, and cannot create a loop at import time).
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "vembed_bench"
LOWER_FLOORS = ("vembed_bench.data", "vembed_bench.search", "vembed_bench.metrics", "vembed_bench.cache",
                "vembed_bench.cache_files", "vembed_bench.results", "vembed_bench.atomic", "vembed_bench.errors",
                "vembed_bench.filehash", "vembed_bench.registry", "vembed_bench.options")
UPPER_FLOORS = ("vembed_bench.evaluation", "vembed_bench.report", "vembed_bench.train", "vembed_bench.cli",
                "vembed_bench.api", "vembed_bench.integrations", "vembed_bench.encoders")


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def _graph(kind: str = "module") -> dict[str, set[str]]:
    """Module -> the project modules it imports at module level (``kind="all"``: anywhere)."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        nodes = ast.walk(tree) if kind == "all" else tree.body
        for node in nodes:
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                submodules = [f"{node.module}.{alias.name}" for alias in node.names]
                found = [m for m in submodules if m in modules]
                targets = found if len(found) == len(submodules) else [node.module, *found]
            graph[name].update(t for t in targets if t in modules and t != name)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_loops():
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_a_planted_loop():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_lower_floors_never_import_upper_floors():
    upward = []
    for module, imports in _graph("all").items():
        if module.startswith(LOWER_FLOORS):
            upward += [f"{module} -> {target}" for target in imports if target.startswith(UPPER_FLOORS)]
    assert upward == []
