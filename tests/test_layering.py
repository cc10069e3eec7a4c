"""The package's import graph has no cycle: no module imports (even for type checking) a module that imports it back."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "PersistDict"


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (relative imports resolved, TYPE_CHECKING blocks included)."""
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = path
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for candidate in [target] + [f"{target}.{alias.name}" for alias in node.names]:
                    if candidate in modules and candidate != name:
                        deps.add(candidate)
            elif isinstance(node, ast.Import):
                deps.update(alias.name for alias in node.names if alias.name in modules)
        graph[name] = deps - {"PersistDict"}  # the package's __init__ only re-exports
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets, as the list of modules around it."""
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return cycles


def test_the_package_has_no_import_cycle() -> None:
    """No module of PersistDict imports, directly or through others, a module that imports it."""
    assert find_cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    """The check can fail: a graph with a circle of three modules is reported."""
    assert find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]


def test_the_mapping_sees_no_lmdb_module_and_engines_see_no_mapping() -> None:
    """Outside engines/, no module imports a module of the LMDB engine (its package's constants aside);
    no engine imports the mapping's modules (_core, _api, _frontcache, _maintenance)."""
    graph = import_graph()
    mapping_side = [name for name in graph if not name.startswith("PersistDict.engines")]
    leaks = {name: sorted(dep for dep in graph[name] if dep.startswith("PersistDict.engines.lmdb."))
             for name in mapping_side}
    assert {name: deps for name, deps in leaks.items() if deps} == {}
    upward = ("PersistDict._core", "PersistDict._api", "PersistDict._frontcache", "PersistDict._maintenance")
    climbs = {name: sorted(dep for dep in deps if dep.startswith(upward))
              for name, deps in graph.items() if name.startswith("PersistDict.engines")}
    assert {name: deps for name, deps in climbs.items() if deps} == {}
