"""The package's import graph: layers only import downwards, and no module imports itself in a circle.

Read from the source with ``ast`` (nothing is imported), so a function-level import counts like a
module-level one: a lazy import may keep start-up fast, never hide a cycle or an upward call.
Imports under ``if TYPE_CHECKING:`` are left out: they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"vggsim": ROOT / "runtime", "vggsim.export": ROOT / "export"}

#: Each subpackage's layer, low to high: a module may import its own layer and lower ones.
LAYERS = {
    "vggsim.errors": 0, "vggsim.similarity": 0, "vggsim.config": 0,
    "vggsim.images": 1,
    "vggsim.model": 2,
    "vggsim.ingest": 3,
    "vggsim.store": 4,
    "vggsim.search": 5,
    "vggsim.collection": 6, "vggsim.postgres": 6,
    "vggsim.export": 7,
    "vggsim.ray": 8, "vggsim.serve": 8, "vggsim.tools": 8,
    "vggsim.cli": 9,
    "vggsim.version": 0, "vggsim.validate": 0,
    "vggsim": 10, "vggsim.__main__": 10,  # the facade: `from vggsim import Embedder, ...`
}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package, folder in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            if package == "vggsim" and path.is_relative_to(ROOT / "runtime" / "export"):
                continue
            parts = [*package.split("."), *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The vggsim modules that ``module`` imports when it runs (TYPE_CHECKING blocks left out)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for alt in child.orelse:
                    visit(alt)
                continue
            if isinstance(child, ast.Import):
                names = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from pkg import mod` runs pkg.mod; `from pkg import name` runs pkg (a parent
                # package's __init__ runs for any import and is not counted, as import-linter does)
                names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in child.names]
            else:
                visit(child)
                continue
            for name in names:
                if name in known:
                    out.add(name)
        return None

    visit(ast.parse(path.read_text(encoding="utf-8")))
    out.discard(module)
    return out


def layer(module: str) -> int:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in LAYERS:
            return LAYERS[".".join(parts[:end])]
    raise AssertionError(f"{module}: in no layer: add its package to LAYERS in {__file__}")


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports_of(name, path, known) for name, path in known.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := walk(node)):
            return found
    return None


def test_the_graph_is_read() -> None:
    edges = graph()
    assert "vggsim.model.embedder" in edges and "vggsim.images.decode" in edges["vggsim.ingest.reading"]


def test_no_import_cycles() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_layers_import_only_downwards() -> None:
    upward = sorted(f"{src} (layer {layer(src)}) imports {dst} (layer {layer(dst)})"
                    for src, targets in graph().items() for dst in targets if layer(dst) > layer(src))
    assert upward == []


def test_no_private_names_across_packages() -> None:
    """``from vggsim.a.b import _name`` only inside package vggsim.a (a private name is no contract)."""
    found = []
    for module, path in modules().items():
        top = ".".join(module.split(".")[:2])
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("vggsim"):
                if ".".join(node.module.split(".")[:2]) != top:
                    found += [f"{module} imports {node.module}.{a.name}" for a in node.names
                              if a.name.startswith("_") and not a.name.startswith("__")]
    assert found == []


@pytest.mark.parametrize("edges, cycle", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ({"a": {"b"}, "b": set()}, None),
])
def test_the_cycle_check_can_fail(edges: dict[str, set[str]], cycle: list[str] | None) -> None:
    assert find_cycle(edges) == cycle


def test_a_function_level_import_counts(tmp_path: Path) -> None:
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import vggsim.cli\n"
                      "def f():\n    from vggsim.serve import app\n")
    known = {"vggsim.cli": source, "vggsim.serve": source, "vggsim.serve.app": source}
    assert imports_of("vggsim.store.m", source, known) == {"vggsim.serve.app"}


def test_test_files_share_helpers_through_support_only() -> None:
    # a test module importing another runs that module's fixtures and imports twice over; the shared
    # helpers live in tests/support.py, and benchmarks never share a module name with tests
    offenders = []
    for path in sorted((ROOT / "tests").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{path.name} imports {n}" for n in names if n.split(".")[0].startswith(("test_", "conftest"))]
    assert offenders == []
    benchmark_names = {p.name for p in (ROOT / "benchmarks").rglob("*.py")}
    assert benchmark_names & {p.name for p in (ROOT / "tests").glob("*.py")} <= {"conftest.py"}
