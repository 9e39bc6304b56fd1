"""The package's shape: one import name, imports pointing one way, no cycles between modules.

Every ``import`` in the product's folders counts, function-level ones included: a cycle hidden
in a function body is still a cycle (docs/architecture.md#layout).
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "graph_store", "model", "stream", "simulator", "bench")
#: what each package may import from leadpulse, beside itself
ALLOWED = {
    "schemas": set(),
    "simulator": {"schemas"},
    "graph_store": {"schemas"},
    "model": {"schemas", "graph_store"},
    "stream": {"schemas", "graph_store", "model", "simulator", "bench"},
    "bench": {"schemas", "graph_store", "model", "stream", "simulator"},
}


def _imports(path: Path) -> list[str]:
    """The absolute module names ``path`` imports (``from x import y`` gives ``x.y`` when ``y`` is
    a module of ours, else ``x``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
            out += [f"{node.module}.{a.name}" for a in node.names]
    return out


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).glob("*.py"):
            name = f"leadpulse.{pkg}" if path.stem == "__init__" else f"leadpulse.{pkg}.{path.stem}"
            mods[name] = path
    return mods


def test_no_bare_top_level_imports_of_our_folders():
    bare = [(str(p.relative_to(ROOT)), name) for p in ROOT.glob("*/**/*.py")
            if p.parts[len(ROOT.parts)] in PACKAGES + ("tests", "examples", "leadpulse")
            for name in _imports(p) if name.split(".")[0] in PACKAGES]
    assert not bare, bare


def test_imports_point_one_way():
    wrong = []
    for name, path in _modules().items():
        pkg = name.split(".")[1]
        for imported in _imports(path):
            parts = imported.split(".")
            if parts[0] == "leadpulse" and len(parts) > 1 and parts[1] != pkg \
                    and parts[1] not in ALLOWED[pkg]:
                wrong.append((name, imported))
    assert not wrong, wrong


def test_no_import_cycles_between_modules():
    mods = _modules()
    graph = {name: {i for i in _imports(path) if i in mods and i != name} for name, path in mods.items()}
    for name in graph:  # a package's __init__ is not a dependency worth a cycle
        graph[name] = {i for i in graph[name] if not mods[i].stem == "__init__"}
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles
