"""The two packages' modules import one another without cycles: every import counts, the ones
inside functions and under TYPE_CHECKING too (a cycle hidden there is still two modules that
cannot be understood, or changed, one without the other). The library the functions run
(`avsev`, the common layer's tree) never imports the offline tools (`avsev_tools`): the layer
ships without them."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "layers" / "common" / "python" / "avsev"
TOOLS = ROOT / "tools" / "avsev_tools"


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {
    module_name(p, package): p for package in (LIBRARY, TOOLS) for p in sorted(package.rglob("*.py"))
}


def imports_of(name: str) -> set[str]:
    """The package's modules `name` imports (a package's own __init__ left out)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parent, base] if base else parent)
            # `from avsev_tools.local import dashboard` imports the module avsev_tools.local.dashboard
            targets = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name and MODULES[target].name != "__init__.py":
                found.add(target)
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_import_graph_reads_relative_and_from_imports():
    graph = imports_of("avsev_tools.local.gateway")
    assert "avsev_tools.local.dashboard" in graph  # `from avsev_tools.local import dashboard`
    assert "avsev_tools.local.stack" not in graph


def test_no_import_cycle_among_the_packages_modules():
    graph = {name: imports_of(name) for name in MODULES}
    assert cycles(graph) == []


def test_the_library_never_imports_the_offline_tools():
    assert imports_of("avsev_tools.local.demo") & {n for n in MODULES if n.startswith("avsev.")}
    upward = {
        name: sorted(t for t in imports_of(name) if t.startswith("avsev_tools"))
        for name in MODULES
        if name == "avsev" or name.startswith("avsev.")
    }
    assert {name: found for name, found in upward.items() if found} == {}


def test_the_layer_tree_holds_no_offline_tool():
    """What the common layer ships is its tree as it is (`infra/constructs/functions.py`)."""
    assert not (LIBRARY / "cli.py").exists() and not (LIBRARY / "local").exists()
    assert not (LIBRARY / "pipeline").exists() and not (LIBRARY / "commands").exists()


LOCAL = sorted(n for n in MODULES if n.startswith("avsev_tools.local.") and MODULES[n].suffix == ".py")


@pytest.mark.parametrize("name", LOCAL)
def test_each_local_module_imports_alone(name):
    """In a fresh interpreter, first of the package: no module needs another imported first."""
    code = f"import importlib; importlib.import_module({name!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    importlib.import_module(name)
