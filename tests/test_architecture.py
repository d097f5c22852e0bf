"""The shape of the package: no import circle between its modules, no module over 500 lines, no long function.

The import graph is read from the source with ``ast``, so it sees every ``import`` and ``from ... import``
statement wherever it stands: at the top, inside a function, under ``if TYPE_CHECKING:``. A circle hidden
behind a function-level import is still a circle: the two modules cannot be read, tested or moved apart.

A function (or method, or a function nested in one) is long when ``end_lineno - lineno + 1 > 80``: from its
``def`` line to its last line, docstring included. A long function is split by what it does, or it says why
not: its first line after the docstring (without a docstring: the line right after the signature, before the
first statement) is a comment ``# long: <reason>``, e.g.

    def make_cells(...):
        '''Draw the images.'''
        # long: every random number is drawn here, in one order the images depend on
        ...

The marker is an allow-list kept beside the code: a ``# long:`` on a function of 80 lines or fewer fails too,
so it cannot go stale.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import soxai

PACKAGE_DIR = Path(soxai.__file__).resolve().parent
MAX_LINES = 500

# Circles inside soxai/bias/ that are accepted while another engineer restructures that package, each as the
# modules on the circle in import order, starting from the one first in sort order, e.g.
# ("soxai.bias.config", "soxai.bias.detectors"). Empty: the eight bias had at 6df76ca (all through
# bias/detectors.py, the registry that shared a file with the base its plug-ins import) were broken by
# 974c374. Do not add to it: break the circle. A listed circle that no longer exists fails the test too, so
# the list cannot go stale.
KNOWN_BIAS_CYCLES: set[tuple[str, ...]] = set()

# Modules over MAX_LINES that are not split yet (path under the repo root -> why), for modules that are not
# ours to split. Empty: none is over. Listed modules that are no longer long fail the test too.
LONG_MODULES: dict[str, str] = {}

Graph = dict[str, dict[str, int]]
"""Module -> {imported soxai module: line of the first import of it}."""


def module_name(path: Path, root: Path) -> str:
    """Dotted name of a source file under ``root`` (the folder that holds the top package)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":  # a package's __init__ is a node of its own, named like the package
        parts.pop()
    return ".".join(parts)


def import_graph(package_dir: Path) -> Graph:
    """Every module of the package at ``package_dir`` and the package's modules each one imports.

    An import resolves to the most specific module it names (``import a.b.c`` and ``from a.b import c``
    both to ``a.b.c`` when that is a module, else to ``a.b``); the parent packages that Python runs first
    are not edges of their own, or every lazy package face would be in a circle with its submodules.
    """
    root = package_dir.parent
    files = {module_name(p, root): p for p in sorted(package_dir.rglob("*.py"))}

    def resolve(dotted: str) -> str | None:
        while dotted and dotted not in files:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    graph: Graph = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges: dict[str, int] = {}
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [resolve(alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's package, one level up per extra dot
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [resolve(f"{base}.{alias.name}") if f"{base}.{alias.name}" in files else resolve(base)
                           for alias in node.names]
            else:
                continue
            for target in targets:
                if target is not None and target != name:
                    edges.setdefault(target, node.lineno)
        graph[name] = edges
    return graph


def strongly_connected(graph: Graph) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan): the knots that hold circles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def simple_cycles(graph: Graph) -> set[tuple[str, ...]]:
    """Every elementary circle, as its modules in import order starting from the one first in sort order.

    Paths are searched only inside a strongly connected component, so the search stays small.
    """
    cycles: set[tuple[str, ...]] = set()
    for component in strongly_connected(graph):
        for start in sorted(component):
            allowed = {m for m in component if m > start}  # circles through an earlier module were found from it
            path = [start]
            branches: list[Iterator[str]] = [iter(sorted(graph[start]))]
            while branches:
                nxt = next(branches[-1], None)
                if nxt is None:
                    branches.pop()
                    path.pop()
                elif nxt == start:
                    cycles.add(tuple(path))
                elif nxt in allowed and nxt not in path:
                    path.append(nxt)
                    branches.append(iter(sorted(graph[nxt])))
    return cycles


def describe(cycle: tuple[str, ...], graph: Graph) -> str:
    """``a -> b -> a`` with the line of each import: ``a:12 -> b:30 -> a``."""
    hops = [f"{m}:{graph[m][n]}" for m, n in zip(cycle, cycle[1:] + cycle[:1], strict=True)]
    return " -> ".join([*hops, cycle[0]])


def against_allow_list(found: set[tuple[str, ...]], allowed: set[tuple[str, ...]]) -> tuple[list, list]:
    """``(new, gone)``: the circles found that are not allowed, and the allowed ones that are not found."""
    return sorted(found - allowed), sorted(allowed - found)


def is_bias(cycle: tuple[str, ...]) -> bool:
    return all(m.startswith("soxai.bias.") or m == "soxai.bias" for m in cycle)


@pytest.fixture(scope="module")
def graph() -> Graph:
    return import_graph(PACKAGE_DIR)


def test_import_graph__no_cycles_outside_the_bias_allow_list(graph: Graph) -> None:
    new, _ = against_allow_list(simple_cycles(graph), KNOWN_BIAS_CYCLES)

    assert not new, (
        "import circles (module:line of the import -> ...); move what both sides need into a module below "
        "them, or the registry above its plug-ins:\n  " + "\n  ".join(describe(c, graph) for c in new)
    )


def test_known_bias_cycles__each_still_exists(graph: Graph) -> None:
    _, gone = against_allow_list(simple_cycles(graph), KNOWN_BIAS_CYCLES)

    assert not gone, (
        "these circles are broken; delete them from KNOWN_BIAS_CYCLES in tests/test_architecture.py:\n  "
        + "\n  ".join(" -> ".join([*c, c[0]]) for c in gone)
    )


def test_known_bias_cycles__hold_only_bias_modules() -> None:
    assert all(is_bias(c) for c in KNOWN_BIAS_CYCLES), [c for c in KNOWN_BIAS_CYCLES if not is_bias(c)]


def _line_counts() -> dict[str, int]:
    root = PACKAGE_DIR.parent
    return {p.relative_to(root).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE_DIR.rglob("*.py")}


def test_modules__at_most_500_lines() -> None:
    long = {path: n for path, n in sorted(_line_counts().items()) if n > MAX_LINES and path not in LONG_MODULES}

    assert not long, (
        f"modules over {MAX_LINES} lines; split them by concept: "
        + ", ".join(f"{path} ({n} lines)" for path, n in long.items())
    )


def test_long_modules__each_still_exists_and_is_long() -> None:
    counts = _line_counts()
    stale = [path for path in LONG_MODULES if counts.get(path, 0) <= MAX_LINES]

    assert not stale, f"delete these from LONG_MODULES in tests/test_architecture.py (gone or short now): {stale}"


MAX_FUNCTION_LINES = 80
LONG_MARKER = "# long:"


def function_lengths(path: Path) -> Iterator[tuple[str, int, int, str | None]]:
    """Every function of the file at ``path``: ``(qualified name, def line, lines, reason of its # long: or None)``.

    Nested functions and methods count on their own (``outer.inner``, ``Class.method``); the outer's lines
    include theirs.
    """
    lines = path.read_text().splitlines()
    tree = ast.parse("\n".join(lines), str(path))

    def marker(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str | None:
        first = node.body[0]
        has_doc = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
            and isinstance(first.value.value, str)
        # 1-based line of the marker: right after the docstring, or right before the first statement
        at = first.end_lineno + 1 if has_doc else first.lineno - 1
        text = lines[at - 1].strip() if 0 < at <= len(lines) else ""
        return text[len(LONG_MARKER):].strip() if text.startswith(LONG_MARKER) else None

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, int, int, str | None]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                yield name, child.lineno, child.end_lineno - child.lineno + 1, marker(child)
                yield from visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                yield from visit(child, prefix + child.name + ".")
            else:
                yield from visit(child, prefix)

    yield from visit(tree, "")


def _long_functions() -> tuple[list[str], list[str], list[str]]:
    """``(unexplained, empty_reason, stale)``: long functions without a marker, markers without a reason, and
    markers on functions that are not long, each as ``path:line name (n lines)``."""
    root = PACKAGE_DIR.parent
    unexplained, empty, stale = [], [], []
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        for name, line, n, reason in function_lengths(path):
            where = f"{path.relative_to(root).as_posix()}:{line} {name} ({n} lines)"
            if n > MAX_FUNCTION_LINES and reason is None:
                unexplained.append(where)
            elif reason is not None and not reason:
                empty.append(where)
            elif reason is not None and n <= MAX_FUNCTION_LINES:
                stale.append(where)
    return unexplained, empty, stale


def test_functions__at_most_80_lines_or_a_long_reason() -> None:
    unexplained, empty, _ = _long_functions()

    assert not unexplained and not empty, (
        f"functions over {MAX_FUNCTION_LINES} lines; split them by what they do, or put '{LONG_MARKER} <why>' on "
        "the line after the docstring:\n  " + "\n  ".join(unexplained + [f"{w}: the reason is empty" for w in empty])
    )


def test_long_markers__each_on_a_long_function() -> None:
    _, _, stale = _long_functions()

    assert not stale, f"delete '{LONG_MARKER}' from these (no longer over {MAX_FUNCTION_LINES} lines): {stale}"


# ------------------------------------------------------------------ the checker itself, on planted packages


def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_import_graph__finds_a_circle_hidden_in_a_function_and_under_type_checking(tmp_path: Path) -> None:
    package = _write_package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "def f():\n    from pkg.b import g\n",
        "pkg/b.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n",
        "pkg/c.py": "import pkg.a\n",
    })

    graph = import_graph(package)

    assert graph["pkg.a"] == {"pkg.b": 2} and graph["pkg.b"] == {"pkg.a": 3} and graph["pkg.c"] == {"pkg.a": 1}
    assert simple_cycles(graph) == {("pkg.a", "pkg.b")}
    assert describe(("pkg.a", "pkg.b"), graph) == "pkg.a:2 -> pkg.b:3 -> pkg.a"


def test_import_graph__resolves_relative_imports_and_package_faces(tmp_path: Path) -> None:
    package = _write_package(tmp_path, {
        "pkg/__init__.py": "def __getattr__(name):\n    from pkg.sub import x\n",
        "pkg/sub/__init__.py": "from .x import X\n",
        "pkg/sub/x.py": "from ..y import Y\nfrom . import z\nfrom pkg import sub\n",
        "pkg/sub/z.py": "import json\n",
        "pkg/y.py": "Y = 1\n",
    })

    graph = import_graph(package)

    assert graph["pkg"] == {"pkg.sub.x": 2}
    assert graph["pkg.sub"] == {"pkg.sub.x": 1}
    assert graph["pkg.sub.x"] == {"pkg.y": 1, "pkg.sub.z": 2, "pkg.sub": 3}
    assert simple_cycles(graph) == {("pkg.sub", "pkg.sub.x")}


def test_simple_cycles__every_elementary_circle_once() -> None:
    graph = {"a": {"b": 1}, "b": {"a": 1, "c": 1}, "c": {"a": 1, "b": 1}, "d": {"a": 1}}

    assert simple_cycles(graph) == {("a", "b"), ("b", "c"), ("a", "b", "c")}


def test_against_allow_list__a_listed_circle_that_is_gone_fails_like_a_new_one() -> None:
    found = {("pkg.a", "pkg.b"), ("pkg.bias.c", "pkg.bias.d")}
    allowed = {("pkg.bias.c", "pkg.bias.d"), ("pkg.bias.e", "pkg.bias.f")}

    assert against_allow_list(found, allowed) == ([("pkg.a", "pkg.b")], [("pkg.bias.e", "pkg.bias.f")])


def test_function_lengths__counts_nested_and_methods_and_reads_the_marker(tmp_path: Path) -> None:
    body = "    x = 1\n" * 80
    path = tmp_path / "m.py"
    path.write_text(
        'def long_doc():\n    """Doc."""\n    # long: one table of draws\n' + body
        + "def long_bare(a,\n              b):\n    # long: \n" + body
        + "def short():\n    # long: not needed\n    return 1\n"
        + "class C:\n    def m(self):\n        def inner():\n            return 2\n        return inner\n"
    )

    found = {name: (n, reason) for name, _, n, reason in function_lengths(path)}

    assert found == {"long_doc": (83, "one table of draws"), "long_bare": (83, ""), "short": (3, "not needed"),
                     "C.m": (4, None), "C.m.inner": (2, None)}


def test_test_modules__unique_basenames():
    """pytest imports test modules by basename (no __init__.py in tests/): two files of one name in different
    folders stop the whole suite from collecting in a clean clone."""
    from collections import Counter

    names = Counter(p.name for p in (Path(__file__).parent).rglob("test_*.py"))
    assert [n for n, k in names.items() if k > 1] == []
