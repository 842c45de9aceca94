"""The package layering and the absence of import circles, read from the source.

``etl`` imports nothing of ours; ``consumers`` and ``retrain`` import ``etl`` only; ``infra`` may
import anything. No two of our modules import each other, directly or around a loop — counting
imports inside functions too, since a lazy import only hides a circle. And every module imports on
its own, in a fresh interpreter state of our packages (a circle hidden by import order fails here).
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("etl", "consumers", "retrain", "infra")
#: Imports made only to load a module ahead of its use (not a dependency): the warm-processor
#: server imports the processor's modules before forking, and the processor starts that server.
PRELOADS = {("consumers.warm", "consumers.app")}
MAY_IMPORT = {
    "etl": {"etl"},
    "consumers": {"etl", "consumers"},
    "retrain": {"etl", "retrain"},
    "infra": set(PACKAGES),
}


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> Iterator[str]:
    """Our modules ``node`` names (``from pkg import sub`` names ``pkg.sub`` when it is one)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            package = module.split(".")
            if MODULES[module].name != "__init__.py":
                package = package[:-1]
            package = package[: len(package) - node.level + 1]
            base = ".".join([*package, base] if base else package)
        names = [
            f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
            for alias in node.names
        ]
    for name in names:
        ours = name
        while ours and ours not in MODULES:
            ours = ours.rpartition(".")[0]
        # importing a submodule runs its parent packages first: not an edge of the design
        if ours and not module.startswith(ours + ".") and ours != module:
            yield ours


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[module] = {
            target
            for node in ast.walk(tree)
            if isinstance(node, (ast.Import, ast.ImportFrom))
            for target in _targets(module, node)
        }
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start, edges_of_start in graph.items():
        if start in index:
            continue
        work = [(start, iter(sorted(edges_of_start)))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_circle_and_nothing_else() -> None:
    # GIVEN a → b → c → a, and d → a beside it
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    # THEN the one circle is found, d is not in it
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_ours_is_in_an_import_circle() -> None:
    graph = import_graph()
    for module, preloaded in PRELOADS:
        graph[module].discard(preloaded)
    assert "etl.warehouse.base" in graph["etl.warehouse.postgres"]  # the walk sees real imports
    assert cycles(graph) == []


def test_each_package_imports_only_what_it_may() -> None:
    wrong = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if target.split(".")[0] not in MAY_IMPORT[module.split(".")[0]]
    )
    assert wrong == []


def test_every_module_imports_on_its_own() -> None:
    # WHEN each module is imported with none of our modules loaded before it (one interpreter;
    # third-party modules stay cached, which keeps this to seconds)
    script = f"""
import importlib, sys, traceback
ours = {PACKAGES!r}
failed = []
for name in sys.argv[1:]:
    for loaded in [m for m in sys.modules if m.split(".")[0] in ours]:
        del sys.modules[loaded]
    try:
        importlib.import_module(name)
    except Exception:
        failed.append(name + ": " + traceback.format_exc(limit=-1).strip().splitlines()[-1])
print("\\n".join(failed))
"""
    names = [m for m in MODULES if not m.endswith("__main__")]  # a __main__ runs on import
    done = subprocess.run(
        [sys.executable, "-c", script, *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # THEN every one imports
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == ""


@pytest.mark.parametrize("name", ["etl.warehouse.base", "etl.warehouse"])
def test_the_warehouse_seam_is_importable_first(name: str) -> None:
    assert importlib.import_module(name).QueryResult.__name__ == "QueryResult"


def test_commands_borrow_nothing_from_each_other() -> None:
    # shared CLI helpers live in infra/commands/_common.py; a command importing another command
    # would tie two commands' options together
    graph = import_graph()
    borrowed = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if module.startswith("infra.commands.")
        for target in targets
        if target.startswith("infra.commands.") and not target.startswith("infra.commands._")
    )
    assert borrowed == []
