"""The package's architecture holds: imports go only downward through the layers of
docs/architecture.md, no two modules import each other (directly or round a loop), and no
module grows past what one reader holds in mind. A planted upward import, a cycle or an
oversized module each fails here with the modules named."""

import ast
from pathlib import Path

from testkit.params import ROOT

PACKAGE = ROOT / "alphavil"

# Lowest first. A module may import modules of its own layer or of a lower one; within a
# layer the cycle check keeps the order. Keep in step with docs/architecture.md.
LAYERS = [
    # catalogues of what exists: data sources, task kinds, pretrained encoders; torch-free,
    # because params validation (the next layer) names their entries before torch loads
    ("catalogues", ["alphavil.registry", "alphavil.data.digits", "alphavil.data.tasks", "alphavil.data.text_sources",
                    "alphavil.data.image_sources", "alphavil.data.encoders"]),
    ("config", ["alphavil.config"]),
    ("runtime", ["alphavil.runtime"]),
    ("store", ["alphavil.store"]),
    ("data", ["alphavil.data"]),
    ("models", ["alphavil.models"]),
    ("training", ["alphavil.training"]),
    ("methods", ["alphavil.methods"]),
    ("report", ["alphavil.report"]),
    ("workflow", ["alphavil.workflow"]),
    ("entry points", ["alphavil.artifact_checks", "alphavil.pipeline", "alphavil.cli", "alphavil"]),
]
MAX_LINES = 410  # "about 400": lrgrid.py is 407


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _layer(module: str) -> int:
    """The most specific prefix decides (alphavil.data.tasks is a catalogue, alphavil.data.x data)."""
    best, depth = None, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and p.count(".") > depth:
                best, depth = i, p.count(".")
    assert best is not None, f"{module} is in no layer of LAYERS"
    return best


def _imports(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every alphavil module this one imports at run time, including imports inside
    functions (a lazy import is still a dependency); `if TYPE_CHECKING:` blocks are not."""
    tree = ast.parse(path.read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    base = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                target = ".".join(base[:len(base) - node.level + 1] + ([target] if target else []))
            found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target
                      for a in node.names}
    return {m for m in found if m in modules and m != module}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {m: _imports(m, p, modules) for m, p in modules.items()}


def test_every_module_has_a_layer():
    for module in _modules():
        _layer(module)


def test_imports_only_go_down_the_layers():
    upward = [f"{m} ({LAYERS[_layer(m)][0]}) imports {d} ({LAYERS[_layer(d)][0]})"
              for m, deps in _graph().items() for d in sorted(deps)
              if _layer(d) > _layer(m) and not (m == "alphavil" or m.startswith(d + "."))]
    assert upward == []


def test_no_import_cycles():
    graph = _graph()
    # a package's __init__ importing its own submodules is not a cycle with them
    edges = {m: {d for d in deps if not d.startswith(m + ".")} for m, deps in graph.items()}
    index, low, stack, on, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    assert cycles == []


def test_no_module_is_longer_than_a_reader_holds():
    long = {m: n for m, p in _modules().items()
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_checker_sees_a_planted_upward_import_and_cycle(tmp_path):
    """The graph is read from the source: an upward lazy import would show as an edge."""
    modules = _modules()
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from alphavil.workflow import study\n")
    assert _imports("alphavil.runtime.x", src, {**modules, "alphavil.runtime.x": src}) == {
        "alphavil.workflow.study"}
    src.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                   "    from alphavil.workflow import study\n")
    assert _imports("alphavil.runtime.x", src, modules) == set()
