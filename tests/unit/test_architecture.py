"""The dependency rules of docs/architecture.md that a linter of one file cannot see.

* No import cycles among the modules of ``services/`` and ``schemas/`` (every
  import counts: module level, inside functions, under ``TYPE_CHECKING``).
* Only ``services/settings.py`` reads the environment; everything else gets a
  :class:`~services.settings.Settings`.
* Modules stay small (STYLE.md: under about 300 lines): none over
  :data:`MAX_MODULE_LINES`, so growth is split along a seam before it piles up.

Each checker is first shown to fail on a small made-up case, so a green run
means "nothing found", not "nothing looked at". The layer contracts themselves
(domain imports nothing from services, the write side never imports the read
side, ...) are import-linter's, in pyproject.toml, run by ``make lint``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("services", "schemas")
SETTINGS_MODULE = "services.settings"
#: the modules that may read the environment: the typed settings, and the ``bonychat``
#: entry point, which reads two of the same variables before any code loads (a
#: followers-only serve lowers its CPU priority; the settings validate them later)
ENVIRONMENT_READERS = frozenset({SETTINGS_MODULE, "services.cli.entry"})
#: "under about 300 lines" (STYLE.md), with a little slack for a docstring or a guard
MAX_MODULE_LINES = 320


def module_files(root: Path, packages: Iterable[str] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under ``packages``."""
    found: dict[str, Path] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imported_modules(name: str, source: str, known: Iterable[str],
                     is_package: bool = False) -> set[str]:
    """The modules of ``known`` that module ``name`` (with text ``source``) imports."""
    modules = set(known)
    package = name.split(".") if is_package else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package[:len(package) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
    found.discard(name)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    files = module_files(root)
    return {name: imported_modules(name, path.read_text(), files, path.name == "__init__.py")
            for name, path in files.items()}


def cycles(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (each a cycle or more)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(start: str) -> None:  # Tarjan, iterative: no recursion limit to meet
        work = [(start, iter(graph.get(start, ())))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for target in edges:
                if target not in index:
                    index[target] = low[target] = len(index)
                    stack.append(target)
                    on_stack.add(target)
                    work.append((target, iter(graph.get(target, ()))))
                    break
                if target in on_stack:
                    low[node] = min(low[node], index[target])
            else:
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
                        found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(found)


def environment_reads(source: str) -> list[int]:
    """Line numbers where ``source`` reads the process environment."""
    names = ("environ", "getenv", "environb")
    lines = []
    for node in ast.walk(ast.parse(source)):
        reads = (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                 and node.value.id == "os" and node.attr in names)
        imports = (isinstance(node, ast.ImportFrom) and node.module == "os"
                   and any(alias.name in names for alias in node.names))
        if reads or imports:
            lines.append(node.lineno)
    return sorted(lines)


def test_the_cycle_check_finds_a_cycle_and_only_the_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set[str]()}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_the_import_graph_sees_every_kind_of_import() -> None:
    source = ("import pkg.x\nfrom pkg import y\nfrom .z import thing\n"
              "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.w import T\n"
              "def later():\n    from pkg.v import f\n")
    known = {"pkg", "pkg.x", "pkg.y", "pkg.z", "pkg.w", "pkg.v", "pkg.me"}
    assert imported_modules("pkg.me", source, known) == {"pkg.x", "pkg.y", "pkg.z", "pkg.w",
                                                         "pkg.v"}


def test_services_and_schemas_have_no_import_cycles() -> None:
    graph = import_graph()
    assert len(graph) > 100  # the walk found the packages
    assert cycles(graph) == []


def test_the_environment_check_finds_each_way_of_reading_it() -> None:
    source = ("import os\nfrom os import getenv\na = os.environ['X']\nb = os.getenv('Y')\n"
              "c = os.path.join('a')\n")
    assert environment_reads(source) == [2, 3, 4]


def test_only_settings_reads_the_environment() -> None:
    readers = {name: environment_reads(path.read_text())
               for name, path in module_files(ROOT).items()}
    assert {name: lines for name, lines in readers.items()
            if lines and name not in ENVIRONMENT_READERS} == {}


def oversized(files: Mapping[str, Path], limit: int = MAX_MODULE_LINES) -> dict[str, int]:
    """Module -> its line count, for every module of ``files`` longer than ``limit``."""
    counts = {name: len(path.read_text().splitlines()) for name, path in files.items()}
    return {name: count for name, count in counts.items() if count > limit}


def test_the_size_check_finds_a_long_module_and_only_it(tmp_path: Path) -> None:
    long, short = tmp_path / "long.py", tmp_path / "short.py"
    long.write_text("x = 1\n" * 11)
    short.write_text("x = 1\n" * 10)
    assert oversized({"long": long, "short": short}, limit=10) == {"long": 11}


def test_modules_stay_under_about_300_lines() -> None:
    files = module_files(ROOT)
    assert len(files) > 100  # the walk found the packages
    assert oversized(files) == {}
