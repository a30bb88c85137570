"""The package's shape, checked from its source with ``ast``: layers point down only, no import cycles, no
module reaches into another package's private names, library code never imports the command line, and the
root holds only the few modules every area shares (docs/architecture.md draws the same picture)."""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "shoal"

# Lowest first. A module may import its own layer (without a cycle) or any layer below it, never one above.
LAYERS: list[tuple[str, ...]] = [
    ("shoal.errors", "shoal.jit"),
    ("shoal.config", "shoal.metrics", "shoal.plots"),
    ("shoal.data",),
    ("shoal.inspect", "shoal.models"),
    ("shoal.artifacts",),
    ("shoal.training",),
    ("shoal.distributed", "shoal.runtime"),
    ("shoal.export",),
    ("shoal.distill",),
    ("shoal.auto", "shoal.compress", "shoal.serving", "shoal.plan", "shoal.api", "shoal.ui", "shoal.analysis"),
    ("shoal.academy",),
    ("shoal.cli",),
]
ROOT_MODULES = {"__init__", "config", "errors", "metrics", "plots", "jit"}  # shoal/*.py: at most six


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, e.g. shoal.training.loop
    target: str  # the imported module, e.g. shoal.models.embeddings
    names: tuple[str, ...]  # the names taken from it (``from target import a, b``), empty for ``import target``
    line: int
    lazy: bool  # inside a function: runs on first use, not at import


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


@functools.cache
def syntax_tree(path: Path) -> ast.Module:
    """``path`` parsed, once a session: the tests below read the same ~200 files (parsing them took most of their
    time). Nothing changes the trees."""
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def imports(name: str, path: Path, known: set[str]) -> list[Import]:
    """Every ``import``/``from ... import`` of a shoal module in ``path``, resolved to the module imported (a
    ``from package import module`` counts as importing the module)."""
    tree = syntax_tree(path)
    lazy_nodes = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
                  for n in ast.walk(f)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("shoal"):
                    found.append(Import(name, alias.name, (), node.lineno, id(node) in lazy_nodes))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            if not base.startswith("shoal"):
                continue
            plain = []
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:  # ``from shoal.models import dlrm``: the module dlrm
                    found.append(Import(name, sub, (), node.lineno, id(node) in lazy_nodes))
                else:
                    plain.append(alias.name)
            if plain:
                found.append(Import(name, base, tuple(plain), node.lineno, id(node) in lazy_nodes))
    return found


@functools.cache
def all_imports() -> tuple[Import, ...]:
    mods = modules()
    known = set(mods)
    return tuple(i for name, path in mods.items() for i in imports(name, path, known))


def area(module: str) -> str:
    """The top-level area of a module: ``shoal.training.loop`` -> ``shoal.training``, ``shoal.config`` stays."""
    return ".".join(module.split(".")[:2])


def layer(module: str) -> int | None:
    for i, names in enumerate(LAYERS):
        if area(module) in names:
            return i
    return None


def test_every_area_has_a_layer() -> None:
    missing = sorted({area(m) for m in modules() if m != "shoal" and layer(m) is None})
    assert not missing, f"place these areas in LAYERS (and in docs/architecture.md): {missing}"


def test_the_root_holds_only_shared_modules() -> None:
    root = {p.stem for p in PACKAGE.glob("*.py")}
    extra = sorted(root - ROOT_MODULES)
    assert not extra, f"modules at shoal/'s root beyond {sorted(ROOT_MODULES)}: {extra}"


def test_layers_point_down() -> None:
    upward = []
    for i in all_imports():
        if i.source == "shoal" or i.target == "shoal":
            if i.target == "shoal" and i.source != "shoal":
                upward.append(f"{i.source}:{i.line} imports the top-level API `shoal`")
            continue
        src, dst = layer(i.source), layer(i.target)
        if src is not None and dst is not None and dst > src:
            upward.append(f"{i.source}:{i.line} imports {i.target} (layer {area(i.target)} is above {area(i.source)})")
    assert not upward, "imports that point up:\n" + "\n".join(upward)


def test_library_code_never_imports_the_command_line() -> None:
    bad = [f"{i.source}:{i.line} imports {i.target}" for i in all_imports()
           if area(i.target) == "shoal.cli" and area(i.source) != "shoal.cli"]
    assert not bad, "\n".join(bad)


def test_no_private_names_across_packages() -> None:
    """``from shoal.x.y import _name`` only within the package (folder) that defines ``_name``."""
    bad = []
    for i in all_imports():
        source_package = i.source if (PACKAGE.parent / Path(*i.source.split(".")) / "__init__.py").exists() \
            else i.source.rpartition(".")[0]
        target_package = i.target.rpartition(".")[0] if i.target != "shoal" else "shoal"
        private = [n for n in i.names if n.startswith("_") and not n.startswith("__")]
        private += [i.target] if any(part.startswith("_") and not part.startswith("__")
                                     for part in i.target.split(".")) else []
        if private and source_package != target_package:
            bad.append(f"{i.source}:{i.line} takes {', '.join(private)} from {i.target}")
    assert not bad, "private names used outside their package:\n" + "\n".join(bad)


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each a cycle of imports."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_cycles_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("lazy", [False, True], ids=["at-import", "all-imports"])
def test_no_import_cycles(lazy: bool) -> None:
    """No cycle among the imports a module runs when it is loaded, nor (``all-imports``) among all of them,
    the ones inside functions and under ``TYPE_CHECKING`` included: a cycle is a cycle even when it is lazy."""
    edges: dict[str, set[str]] = {}
    for i in all_imports():
        if i.source != i.target and (lazy or not i.lazy) and "shoal" not in (i.source, i.target):
            edges.setdefault(i.source, set()).add(i.target)
    assert not cycles(edges), f"import cycles: {cycles(edges)}"


def classes() -> dict[str, tuple[str, ast.ClassDef]]:
    """Every class in the package by name: (module, its definition)."""
    found = {}
    for name, path in modules().items():
        for node in ast.walk(syntax_tree(path)):
            if isinstance(node, ast.ClassDef):
                found[node.name] = (name, node)
    return found


def test_no_class_overrides_more_than_three_private_methods() -> None:
    """A subclass that replaces many private methods of its base is a second implementation hiding in the
    first one's extension points: give the varying part its own object (a strategy) instead."""
    known = classes()
    heavy = []
    for module, cls in known.values():
        own = {f.name for f in cls.body if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)}
        for base in cls.bases:
            base_name = base.id if isinstance(base, ast.Name) else base.attr if isinstance(base, ast.Attribute) else ""
            if base_name not in known:
                continue
            _, parent = known[base_name]
            theirs = {f.name for f in parent.body if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)}
            private = sorted(n for n in own & theirs if n.startswith("_") and not n.startswith("__"))
            if len(private) > 3:
                heavy.append(f"{module}.{cls.name} overrides {len(private)} private methods of {base_name}: {private}")
    assert not heavy, "\n".join(heavy)


def test_the_training_loop_stays_short() -> None:
    """``Trainer.fit`` reads as one loop: data, model, steps, evaluation, checkpoints, each handed in."""
    module, trainer = classes()["Trainer"]
    (fit,) = [f for f in trainer.body if isinstance(f, ast.FunctionDef) and f.name == "fit"]
    assert fit.end_lineno is not None
    length = fit.end_lineno - fit.lineno + 1
    assert length <= 60, f"{module}.Trainer.fit is {length} lines; keep it <= 60"
