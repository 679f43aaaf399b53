"""The package's modules import each other without cycles.

Every import counts, at module level, inside a function or under ``if
TYPE_CHECKING:``: a cycle the type checker alone sees still ties a low module
to a higher one (a lower module states what it needs as a small Protocol
instead). A cycle is how a low module ends up depending on the entry point;
the layers in docs/ARCHITECTURE.md hold only while there is none.
"""

from __future__ import annotations

import ast
from pathlib import Path

import axonfs

PACKAGE = Path(axonfs.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [node.value]  # importlib.import_module("axonfs.x")
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def import_graph() -> dict[str, set[str]]:
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    modules = set(paths)
    return {name: imports_of(path, modules) - {name} for name, path in paths.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()
    path: list[str] = []

    def visit(name: str) -> list[str] | None:
        if name in path:
            return [*path[path.index(name) :], name]
        if name in done:
            return None
        path.append(name)
        for imported in sorted(graph[name]):
            if (cycle := visit(imported)) is not None:
                return cycle
        path.pop()
        done.add(name)
        return None

    for name in sorted(graph):
        if (cycle := visit(name)) is not None:
            return cycle
    return None


def test_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_backends_know_nothing_of_the_command_line() -> None:
    graph = import_graph()
    cli = {"axonfs.cli", "axonfs.cliutil", "axonfs.options", "axonfs.settings", "axonfs.mount"}
    for name, imported in graph.items():
        if name.startswith("axonfs.backends"):
            assert not imported & cli, name
