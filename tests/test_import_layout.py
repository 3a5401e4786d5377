"""The package's import graph: no circles, and no module imports from a higher layer.

Read with `ast`, never imported, so a circle fails here with its path instead of as a
partially initialised module somewhere else. Every intra-package import is an edge: module
level and inside functions (a lazy import only hides a circle until that function runs),
package `__init__` re-exports included. Only `if TYPE_CHECKING:` blocks are skipped: they
never run. Importing `plankton_stream.a.b` also runs `a/__init__.py`; that implicit edge is
left out on purpose, or every lazy import of a package's own backend (`backends/__init__`
-> `backends.torch_backend` -> `backends.base`) would read as a circle through `__init__`.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import pytest

ROOT = "plankton_stream"
PACKAGE = Path(__file__).resolve().parents[1] / ROOT

# Lowest first. A module may import from its own layer and the ones below it, never above.
# Names are relative to the package; a sub-package's modules take its layer unless one of
# them is listed itself. Every module must be placed, so a new one is a conscious choice.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    # stdlib / numpy only: the exception tree, the artefact specs, channel names, particles
    ("leaf", ("__init__", "errors", "specs", "channels", "particles", "failpoints",
              "configload", "labels")),
    ("config", ("config",)),
    # numpy-only core (style rule 12): files, model input, artefact manifests, k-NN
    ("core", ("imaging", "blobs", "preprocess", "formats", "simulate", "inspection", "knn", "gallery",
              "artifacts")),
    # torch and the inference engines
    ("learning", ("models", "training", "backends", "embedding", "evaluation")),
    # sockets, threads, processes
    ("service", ("pipeline", "sinks", "service", "dashboard", "archive", "export")),
    ("cli", ("cli", "__main__")),
)


@dataclass(frozen=True)
class Edge:
    source: str  # importing module (dotted, without the package prefix)
    target: str
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(PACKAGE.parent)}:{self.line}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()  # a sub-package is named by its folder; the root keeps "__init__"
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(node: ast.AST):
    """Every import statement under `node`, at any depth, except in `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
        else:
            yield from _import_nodes(child)


def _relative(dotted: str) -> str | None:
    """`plankton_stream.a.b` -> `a.b`; `plankton_stream` -> `__init__`; outside -> None."""
    if dotted == ROOT:
        return "__init__"
    return dotted[len(ROOT) + 1:] if dotted.startswith(ROOT + ".") else None


def _absolute_base(node: ast.ImportFrom, source: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    package = [ROOT] + ([] if source == "__init__" else source.split("."))
    if not is_package:
        package.pop()
    package = package[:len(package) - (node.level - 1)]
    return ".".join(package + ([node.module] if node.module else []))


def _targets(node: ast.Import | ast.ImportFrom, source: str, is_package: bool,
             modules: dict[str, Path]) -> list[str]:
    """Intra-package modules an import statement loads (a name that is a submodule counts as
    that submodule; any other name as the module it comes from)."""
    if isinstance(node, ast.Import):
        return [t for t in (_relative(a.name) for a in node.names) if t is not None]
    base = _relative(_absolute_base(node, source, is_package))
    if base is None:
        return []
    prefix = "" if base == "__init__" else base + "."
    subs = [prefix + a.name for a in node.names if prefix + a.name in modules]
    others = len(subs) < len(node.names)
    return subs + ([base] if others else [])


def import_edges() -> list[Edge]:
    modules = all_modules()
    edges = []
    for source, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        for node in _import_nodes(tree):
            for target in _targets(node, source, is_package, modules):
                edges.append(Edge(source, target, path, node.lineno))
    return edges


def layer_of(module: str) -> int | None:
    """Index in LAYERS of the most specific entry naming this module or a package above it."""
    names = {name: i for i, (_, members) in enumerate(LAYERS) for name in members}
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in names:
            return names[".".join(parts[:n])]
    return None


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle as a path `a -> b -> ... -> a`, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(graph):
        if start in state:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


@pytest.fixture(scope="module")
def edges() -> list[Edge]:
    return import_edges()


def test_every_import_names_a_module_of_the_package(edges):
    modules = all_modules()
    unknown = [f"{e.where()} imports {ROOT}.{e.target}" for e in edges if e.target not in modules]
    assert not unknown, "imports of modules that do not exist:\n" + "\n".join(unknown)


def test_every_module_has_a_layer():
    unplaced = [m for m in all_modules() if layer_of(m) is None]
    assert not unplaced, f"add these modules to LAYERS in {Path(__file__).name}: {unplaced}"


def test_the_import_graph_has_no_circle(edges):
    graph: dict[str, set[str]] = {m: set() for m in all_modules()}
    for e in edges:
        if e.target != e.source:
            graph[e.source].add(e.target)
    cycle = find_cycle(graph)
    if cycle:
        hops = {(e.source, e.target): e.where() for e in edges}
        lines = [f"  {a} -> {b}  ({hops[a, b]})" for a, b in pairwise(cycle)]
        pytest.fail("import circle: " + " -> ".join(cycle) + "\n" + "\n".join(lines))


def test_no_module_imports_from_a_higher_layer(edges):
    upward = []
    for e in edges:
        src, dst = layer_of(e.source), layer_of(e.target)
        if src is not None and dst is not None and dst > src:
            upward.append(f"{e.where()}: {e.source} ({LAYERS[src][0]}) imports "
                          f"{e.target} ({LAYERS[dst][0]})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_checker_sees_lazy_imports_and_skips_type_checking(tmp_path):
    source = ("from typing import TYPE_CHECKING\n"
              "if TYPE_CHECKING:\n    from plankton_stream.cli import main\n"
              "def f():\n    from plankton_stream import config, errors\n")
    modules = {"config": Path(), "errors": Path()}
    found = [t for node in _import_nodes(ast.parse(source))
             for t in _targets(node, "x", False, modules)]
    assert found == ["config", "errors"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
