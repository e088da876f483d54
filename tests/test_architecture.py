"""The house's rules, read from the source: imports only go down the layers, no two
modules import each other, nothing reaches into another module's private names, and only
the history module touches a model's history store.

The layers, bottom first: base <- io <- core <- train <- sweep <- experiment <- widgets.
Every import counts, wherever it sits (module level, inside a function, under
``TYPE_CHECKING``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "exburn_nb"
LAYERS = ("base", "io", "core", "train", "sweep", "experiment", "widgets")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
SOURCES = {name: path.read_text() for name, path in MODULES.items()}


def imports_of(name: str, sources: dict[str, str] = SOURCES) -> list[tuple[str, int]]:
    """The exburn_nb modules (or packages) that module ``name`` imports, with line numbers."""
    package = name.split(".") if MODULES[name].name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(sources[name])):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("exburn_nb"):
                continue
            for alias in node.names:  # "from . import x" may name a module
                sub = f"{target}.{alias.name}"
                found.append((sub if sub in MODULES else target, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("exburn_nb")]
    return found


def layer(name: str) -> int | None:
    parts = name.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_every_module_sits_in_a_layer():
    loose = [n for n in MODULES if n != "exburn_nb" and layer(n) is None]
    assert not loose, f"modules outside the layers {LAYERS}: {loose}"


def upward_imports(sources: dict[str, str] = SOURCES) -> list[str]:
    upward = []
    for name in MODULES:
        own = layer(name)
        if own is None:  # the package's own __init__ re-exports the public API
            continue
        for target, line in imports_of(name, sources):
            other = layer(target)
            if other is None or other > own:
                upward.append(f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} imports "
                              f"{target} ({LAYERS[own]} may import only "
                              f"{', '.join(LAYERS[:own + 1])})")
    return upward


def test_imports_only_go_down_the_layers():
    upward = upward_imports()
    assert not upward, "\n".join(upward)


def test_no_two_modules_import_each_other():
    graph = {name: {t for t, _ in imports_of(name) if t in MODULES and t != name}
             for name in MODULES}
    cycles, state = [], {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*path[path.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = "done"

    for name in MODULES:
        if name not in state:
            visit(name, [name])
    # a package's __init__ re-exporting its own modules is not a cycle of modules
    cycles = [c for c in cycles if not all(
        MODULES[n].name == "__init__.py" or c.split(" -> ")[0].startswith(n + ".")
        for n in c.split(" -> ")[:1])]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_module_imports_another_modules_private_names():
    private = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "")
                                                     .startswith("exburn_nb")):
                private += [f"{path.relative_to(PACKAGE.parent)}:{node.lineno} imports "
                            f"{a.name}" for a in node.names
                            if a.name.startswith("_") and not a.name.startswith("__")]
    assert not private, "\n".join(private)


@pytest.mark.parametrize("attribute", ["_history"])
def test_only_the_history_module_touches_the_store(attribute):
    users = [f"{p.relative_to(PACKAGE.parent)}:{i}" for n, p in MODULES.items()
             for i, line in enumerate(p.read_text().splitlines(), 1)
             if f".{attribute}" in line and n != "exburn_nb.core.history"]
    assert not users, f"modules reaching into a model's {attribute}: {users}"


def test_the_layers_test_sees_an_upward_import():
    """The rule can fail: an io module importing the core (even lazily) is reported."""
    sources = dict(SOURCES)
    sources["exburn_nb.io.persist"] += ("\n\ndef late():\n    from ..core import model\n"
                                        "    return model\n")
    found = upward_imports(sources)
    assert len(found) == 1 and "io/persist.py" in found[0] and "exburn_nb.core.model" in found[0]
