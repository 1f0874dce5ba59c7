"""The layered layout, checked from the source text (no database, no Django setup).

The app code is parsed with :mod:`ast`; every import statement counts, including those inside
functions, except imports under ``if TYPE_CHECKING:`` (they never run, and import-linter's
``exclude_type_checking_imports`` ignores them too). Migrations are not app code here.

- no import cycle between modules of the app code;
- no two top-level packages import each other;
- no function of the app code over 60 lines;
- every app module is named in a layer of an import-linter contract (``pyproject.toml``);
- entry modules (views, api, admin) make no ORM query: they call selectors and services;
- no import inside a function unless a comment on that line (or the line above) says why.

``make lint`` runs the finer rules (which layer may import which) with import-linter.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections import defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
APPS = ("accounts", "archive", "audit", "branches", "comparisons", "config", "connections", "conversations", "core",
        "engine", "memory", "merges", "runaudit", "search", "streams")
MAX_FUNCTION_LINES = 60
# A comment that only silences a tool does not say why the import is inside the function.
_TOOL_DIRECTIVE = re.compile(r"#\s*(noqa\b[:\sA-Z0-9,]*|type:\s*ignore\S*|pragma:[^#]*|fmt:\s*\w+)", re.IGNORECASE)


@pytest.fixture(autouse=True)
def _model_endpoint():
    """Overrides tests/conftest.py's autouse fixture: these checks read files, they need no model server."""


@dataclass(frozen=True)
class Import:
    """One import edge: ``importer`` (module name) imports ``imported`` at ``path:line``."""

    importer: str
    imported: str
    path: str
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _sources() -> dict[str, Path]:
    """Module name -> file for every app module outside migrations."""
    found = {}
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            if "migrations" not in path.relative_to(ROOT).parts:
                found[_module_name(path)] = path
    return found


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST, in_function: bool = False):
    """Yield (import node, in_function) under ``node``, skipping ``if TYPE_CHECKING:`` bodies."""
    for child in ast.iter_child_nodes(node):
        yield from _visit(child, in_function)


def _visit(node: ast.AST, in_function: bool):
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node, in_function
    elif isinstance(node, ast.If) and _is_type_checking(node.test):
        for other in node.orelse:
            yield from _visit(other, in_function)
    else:
        yield from _import_nodes(node, in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef))


def _resolve_base(importer: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` reads from (relative levels resolved)."""
    if not node.level:
        return node.module or ""
    package = importer.split(".") if path.name == "__init__.py" else importer.split(".")[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _app_module(name: str) -> str | None:
    """The app module ``name`` lands in (its longest existing prefix), or None outside the app code."""
    modules = _sources()
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


@cache
def _imports() -> tuple[Import, ...]:
    """Every import edge between app modules (``from pkg import mod`` imports ``pkg.mod`` when it is a module)."""
    edges = []
    for importer, path in _sources().items():
        for node, in_function in _import_nodes(_tree(path)):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve_base(importer, path, node)
                submodules = [f"{base}.{alias.name}" for alias in node.names]
                targets = [name if name in _sources() else base for name in submodules]
            rel = str(path.relative_to(ROOT))
            for target in dict.fromkeys(targets):
                imported = _app_module(target)
                if imported and imported != importer:
                    edges.append(Import(importer, imported, rel, node.lineno, in_function))
    return tuple(edges)


def _graph() -> tuple[dict[str, set[str]], dict[tuple[str, str], Import]]:
    graph: dict[str, set[str]] = defaultdict(set)
    first: dict[tuple[str, str], Import] = {}
    for edge in _imports():
        graph[edge.importer].add(edge.imported)
        first.setdefault((edge.importer, edge.imported), edge)
    return graph, first


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); returns the components with more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
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
                    components.append(sorted(component))
    return components


def _shortest_cycle(graph: dict[str, set[str]], members: list[str]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component (BFS back to it)."""
    inside = set(members)
    start = members[0]
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(graph.get(node, ())):
                if child not in inside:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if child not in parents:
                    parents[child] = node
                    following.append(child)
        frontier = following
    return members  # unreachable for a real component


def _describe(cycle: list[str], first: dict[tuple[str, str], Import]) -> str:
    steps = [cycle[0]]
    for importer, imported in zip(cycle, cycle[1:], strict=False):
        edge = first[(importer, imported)]
        where = f"{edge.path}:{edge.line}{' (in a function)' if edge.in_function else ''}"
        steps.append(f"-> {imported}  [{where}]")
    return "\n    ".join(steps)


def test_no_import_cycle_between_app_modules():
    graph, first = _graph()
    cycles = [_describe(_shortest_cycle(graph, members), first) for members in _strongly_connected(graph)]
    assert not cycles, f"{len(cycles)} import cycle(s) between app modules:\n  " + "\n  ".join(cycles)


def test_no_two_top_level_packages_import_each_other():
    between: dict[tuple[str, str], Import] = {}
    for edge in _imports():
        pair = (edge.importer.split(".")[0], edge.imported.split(".")[0])
        if pair[0] != pair[1]:
            between.setdefault(pair, edge)
    mutual = [
        f"{a} <-> {b}: {between[a, b].path}:{between[a, b].line} imports {between[a, b].imported}; "
        f"{between[b, a].path}:{between[b, a].line} imports {between[b, a].imported}"
        for a, b in sorted(between)
        if a < b and (b, a) in between
    ]
    assert not mutual, "top-level packages importing each other:\n  " + "\n  ".join(mutual)


def _functions(tree: ast.AST, prefix: str = ""):
    """Yield (qualified name, node) for every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield f"{prefix}{node.name}", node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def test_no_function_over_60_lines():
    """Every function of the app code (decorators and docstring included) fits in 60 lines."""
    long = []
    for path in _sources().values():
        for name, node in _functions(_tree(path)):
            length = node.end_lineno - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}: {length} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines:\n  " + "\n  ".join(long)


def _says_why(lines: list[str], node: ast.stmt) -> bool:
    """True when a comment on the import's lines, or the line above it, has words besides tool directives."""
    for number in range(node.lineno - 1, node.end_lineno + 1):
        if number < 1:
            continue
        text = lines[number - 1]
        if number == node.lineno - 1 and not text.lstrip().startswith("#"):
            continue  # the line above counts only when it is a comment line
        tokens = _comments(text)
        if any(_TOOL_DIRECTIVE.sub("", comment).strip("# \t") for comment in tokens):
            return True
    return False


def _comments(line: str) -> list[str]:
    """The comment part of one source line (a ``#`` outside string literals), if any."""
    quote = None
    for position, char in enumerate(line):
        if quote:
            if char == quote and line[position - 1] != "\\":
                quote = None
        elif char in "'\"":
            quote = char
        elif char == "#":
            return [line[position:]]
    return []


def test_imports_inside_functions_say_why():
    bare = []
    for path in _sources().values():
        lines = path.read_text(encoding="utf-8").splitlines()
        for node, in_function in _import_nodes(_tree(path)):
            if in_function and not _says_why(lines, node):
                bare.append(f"{path.relative_to(ROOT)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not bare, (
        f"{len(bare)} import(s) inside functions without a comment saying why "
        "(on the import's line or the line above):\n  "
        + "\n  ".join(bare)
    )


def test_the_checks_themselves():
    """The helpers above find what they claim to: a guard that sees nothing would always pass."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from conversations.models import Run\n"
        "def f():\n"
        "    # optional dependency: only the worker loads the tokenizer\n"
        "    import tokenizers\n"
        "    import numpy  # noqa: F401\n"
        "    text = '#'; import json\n"
        "    import re  # lazy: compiled on first use\n"
    )
    lines = source.splitlines()
    nodes = _import_nodes(ast.parse(source))
    found = [(node.lineno, in_function, _says_why(lines, node)) for node, in_function in nodes]
    assert found == [(1, False, False), (6, True, True), (7, True, False), (8, True, False), (9, True, True)]

    relative = ast.parse("from ..context import build_context").body[0]
    assert _resolve_base("engine.tools.call_agent", Path("call_agent.py"), relative) == "engine.context"
    sibling = ast.parse("from . import recall").body[0]
    assert _resolve_base("engine.tools", Path("__init__.py"), sibling) == "engine.tools"

    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": set()}
    cycles = sorted(_shortest_cycle(graph, members) for members in _strongly_connected(graph))
    assert cycles == [["a", "b", "c", "a"], ["d", "e", "d"]]


# --- every module in a named layer --------------------------------------------------------------

def _layer_names() -> dict[str, set[str]]:
    """Container ("" for the top-level contract) -> the module names its layers contracts name."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    named: dict[str, set[str]] = defaultdict(set)
    for contract in config["contracts"]:
        if contract["type"] != "layers":
            continue
        names = {part.strip().strip("()") for layer in contract["layers"] for part in re.split(r"[|:]", layer)}
        for container in contract.get("containers", [""]):
            named[container] |= names
    return named


def test_every_app_module_is_named_in_a_layer():
    named = _layer_names()
    unnamed = [app for app in APPS if app not in named[""]]
    for app in APPS:
        children = {path.stem if path.suffix == ".py" else path.name for path in (ROOT / app).iterdir()
                    if (path.suffix == ".py" and path.stem != "__init__")
                    or (path.is_dir() and (path / "__init__.py").exists() and path.name != "migrations")}
        unnamed += [f"{app}.{child}" for child in sorted(children - named.get(app, set()))]
    assert not unnamed, "modules no layer names (add them to a layers contract in pyproject.toml):\n  " + \
        "\n  ".join(unnamed)


# --- no ORM query in entry modules --------------------------------------------------------------

ENTRY_MODULES = ("views", "seen_views", "api", "admin")  # and every module of a package of that name
# QuerySet methods (Django's and ours) whose call in an entry module is a query built there.
ORM_METHODS = frozenset({
    "filter", "exclude", "order_by", "values_list", "annotate", "aggregate", "select_related", "prefetch_related",
    "only", "defer", "select_for_update", "get_or_create", "update_or_create", "bulk_create", "bulk_update",
    "in_bulk", "iterator", "distinct", "raw", "extra", "union", "alive", "owned_by", "on_path_to", "ancestor_of",
    "descendant_of", "sibling_of", "children_of", "visible_runs", "pickable_by", "unpruned", "visible_to",
})


def _orm_lines(tree: ast.AST) -> list[int]:
    """Lines that reach a model manager (``X.objects``) or call a QuerySet method."""
    return sorted({node.lineno for node in ast.walk(tree) if _is_orm(node)})


def _is_orm(node: ast.AST) -> bool:
    if isinstance(node, ast.Attribute):
        return node.attr == "objects"
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ORM_METHODS


def test_entry_modules_make_no_orm_query():
    found = [f"{path.relative_to(ROOT)}:{line}"
             for module, path in _sources().items() if set(module.split(".")[1:]) & set(ENTRY_MODULES)
             for line in _orm_lines(_tree(path))]
    assert not found, "ORM queries in entry modules (move them to a selector):\n  " + "\n  ".join(found)


def test_the_orm_check_sees_a_query():
    tree = ast.parse("def view(request):\n    return Run.objects.filter(pk=1)\n\n"
                     "def other(session):\n    return session.visible_runs().order_by('depth')\n")
    assert _orm_lines(tree) == [2, 5]



# --- the tests mirror the apps --------------------------------------------------------------------

# Test folders that are no app: shared helpers, browser tests across pages, the chaos suite, vendored JS,
# the docs check.
TEST_FOLDERS_BESIDE_APPS = {"support", "ui", "chaos", "vendor", "artifacts", "docs"}


def test_the_test_tree_mirrors_the_apps():
    """``tests/<app>/`` for every test of one app; only this file and shared modules at the root."""
    tests = ROOT / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))}
    strays = sorted(folders - set(APPS) - TEST_FOLDERS_BESIDE_APPS)
    loose = sorted(p.name for p in tests.glob("test_*.py") if p.name != "test_layout.py")
    assert not strays and not loose, f"test folders that are no app: {strays}; test files at the root: {loose}"
