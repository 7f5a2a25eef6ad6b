"""The package's import graph: no cycles, and no module imports a higher layer.

Read from the source with ``ast`` (every ``import`` counts, also those inside
functions). Layers, lowest first; a module may import its own layer and those below:

  base         errors, version, atomic, machine, _compat, _pth_hook   (no torch at import, except machine lazily)
  archs        the networks and their checkpoint detection             (torch only)
  data         image I/O, resizing, LMDBs, DIV2K; checkpoint files
  options      option files: loading and the schema
  inference    ACS, tiles, fast paths, runtimes, ONNX
  apps         Upscaler, spandrel, evaluation
  integration  BasicSR registration, model, patches                    (BasicSR)
  cli          the ``basicsr`` command
"""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "imdn_plugin"

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("base", ("errors", "version", "atomic", "machine", "_compat", "_pth_hook")),
    ("archs", ("archs",)),
    ("data", ("data", "checkpoint")),
    ("options", ("options",)),
    ("inference", ("inference", "export", "onnx")),
    ("apps", ("upscaler", "spandrel", "evaluation", "complexity")),
    ("integration", ("integration",)),
    ("cli", ("cli", "__main__")),
]


def _modules() -> dict[str, Path]:
    mods = {}
    for f in PACKAGE.rglob("*.py"):
        parts = list(f.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = f
    return mods


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {}
    for mod, f in mods.items():
        package = mod if f.name == "__init__.py" else mod.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                # `from . import x` depends on module x; `from .m import f` and `from . import f`
                # (f defined in the package's __init__) on that module
                cands = [f"{target}.{a.name}" if f"{target}.{a.name}" in mods else target for a in node.names]
                explicit = set(cands)
            elif isinstance(node, ast.Import):
                cands = [a.name for a in node.names]
                explicit = set()
            else:
                continue
            for c in cands:
                while c and c not in mods:  # `import imdn_plugin.data.lmdb` -> that module
                    c = c.rpartition(".")[0]
                # importing a submodule imports its packages first: not an edge of its own,
                # unless a name defined in the package's __init__ is imported from it
                if c and c != mod and (c in explicit or not mod.startswith(c + ".")):
                    deps.add(c)
        graph[mod] = deps
    return graph


def _layer(mod: str) -> int | None:
    rest = mod.split(".", 1)[1] if "." in mod else ""
    head = rest.split(".", 1)[0]
    for i, (_, names) in enumerate(LAYERS):
        if head in names:
            return i
    return None


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
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
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_every_module_has_a_layer() -> None:
    unplaced = [m for m in _graph() if m != "imdn_plugin" and _layer(m) is None]
    assert unplaced == [], "add these modules to a layer in LAYERS"


def test_no_module_imports_a_higher_layer() -> None:
    graph = _graph()
    upward = []
    for mod, deps in graph.items():
        if mod == "imdn_plugin":  # the package's own lazy entry points (Upscaler, register)
            continue
        for dep in deps:
            if dep != "imdn_plugin" and _layer(dep) > _layer(mod):
                upward.append(f"{mod} ({LAYERS[_layer(mod)][0]}) -> {dep} ({LAYERS[_layer(dep)][0]})")
    assert upward == []


def test_the_checker_sees_a_cycle_and_an_upward_import() -> None:
    """The checker itself: a made-up graph with a cycle and an upward edge is flagged."""
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]
    assert _layer("imdn_plugin.cli.infer") > _layer("imdn_plugin.inference.tiling")
