"""Layering, read from the source with ``ast``: no import circle among clproto's modules, the ground floor
imports nothing above it, the sweep package does not import the command line, nothing writes os.environ."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Optional

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "clproto"


def _modules(package: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under ``package`` (a package is its __init__.py)."""
    out = {}
    for f in sorted(package.rglob("*.py")):
        parts = list(f.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (never executed: no dependency)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for stmt in node.body for n in ast.walk(stmt)}
    return skip


def import_graph(package: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, at module level or inside functions (a lazy import is
    still a dependency). ``from P import x`` depends on the module P.x when there is one, else on P;
    relative imports are resolved against the importing module's package."""
    modules = _modules(package)
    root = package.name

    def nearest(name: str) -> Optional[str]:  # `import a.b.c` of a name that is an attribute: its module
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_only(tree)
        here = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                deps |= {nearest(a.name) for a in node.names if a.name.split(".")[0] == root}
            elif isinstance(node, ast.ImportFrom):
                base = here
                for _ in range(node.level - 1):
                    base = base.rpartition(".")[0]
                target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
                if not target or target.split(".")[0] != root:
                    continue
                deps |= {f"{target}.{a.name}" if f"{target}.{a.name}" in modules else nearest(target)
                         for a in node.names}
        graph[name] = deps - {None, name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> Optional[list[str]]:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> Optional[list[str]]:
        state[m] = 1
        path.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (cycle := visit(d)):
                return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            return cycle
    return None


def test_the_graph_reader_resolves_relative_lazy_and_package_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import f\n")
    (pkg / "a.py").write_text("from . import b\nimport os\n\ndef f():\n    from .sub.c import g\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import a\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from .. import b\nfrom . import d_is_not_a_module\nimport pkg.sub.c\n")
    graph = import_graph(pkg)
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b", "pkg.sub.c"}, "pkg.b": set(), "pkg.sub": set(),
                     "pkg.sub.c": {"pkg.b", "pkg.sub"}}
    assert find_cycle(graph) is None
    (pkg / "b.py").write_text("def late():\n    import pkg.a.f\n")  # a lazy import closes a circle too
    assert find_cycle(import_graph(pkg)) == ["pkg.a", "pkg.b", "pkg.a"]


def knots(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module: every import circle lies inside one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(m: str) -> None:
        index[m] = low[m] = len(index)
        stack.append(m)
        for d in graph.get(m, ()):
            if d not in index:
                visit(d)
                low[m] = min(low[m], low[d])
            elif d in stack:
                low[m] = min(low[m], index[d])
        if low[m] == index[m]:
            component = set()
            while not component or m not in component:
                component.add(stack.pop())
            if len(component) > 1:
                out.append(component)

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return out


# Circles that came with backbones as typed tables (issue 11 item 3), in files of that work: untie them, then
# remove them from here (test_no_import_cycle_at_all turns from an expected failure into a pass).
KNOWN_KNOTS: tuple = ()  # import circles tolerated while being untied: none left


def test_knots_are_the_strongly_connected_components():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": {"a"}}
    assert sorted(map(sorted, knots(graph))) == [["a", "b", "c"], ["d", "e"]]
    assert knots({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_among_clproto_modules_outside_the_known_knots():
    graph = import_graph(PACKAGE)
    assert {"clproto.cli", "clproto.sweep.cli", "clproto.storage", "clproto.runner"} <= set(graph)
    new = [sorted(k) for k in knots(graph) if not any(k <= known for known in KNOWN_KNOTS)]
    assert not new, f"import circles: {new}"


def test_no_import_cycle_at_all():
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_storage_is_the_ground_floor():
    graph = import_graph(PACKAGE)
    assert graph["clproto.storage"] <= {"clproto.errors", "clproto.pages"}
    assert graph["clproto.errors"] == set() and graph["clproto.pages"] == set()  # pages: madvise of memory maps, a leaf
    assert "clproto.storage" in graph["clproto.features.cache"] and "clproto.storage" in graph["clproto.run_folder"]
    data = [m for m in graph if m.startswith("clproto.data")]
    assert not [(m, d) for m in data for d in graph[m] if d.startswith("clproto.features")]  # the store is below both


def test_the_sweep_package_does_not_reach_up_to_the_command_line():
    graph = import_graph(PACKAGE)
    sweep = [m for m in graph if m == "clproto.sweep" or m.startswith("clproto.sweep.")]
    assert len(sweep) >= 7
    assert not [(m, d) for m in sweep for d in graph[m] if d == "clproto.cli"]
    assert not graph["clproto.cli_common"] & {"clproto.cli", *sweep}
    assert "clproto.sweep.cli" in graph["clproto.cli"]


def _writes_environment(node: ast.AST) -> bool:
    """``os.environ[k] = v`` / ``del os.environ[k]`` / ``os.environ.update(...)`` / ``os.putenv(...)`` and the like."""
    def is_environ(n: ast.AST) -> bool:
        return ast.unparse(n) in ("os.environ", "environ")

    if isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)):
        targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else [node.target]
        return any(isinstance(t, ast.Subscript) and is_environ(t.value) for t in targets)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        f = node.func
        return ((is_environ(f.value) and f.attr in ("update", "setdefault", "pop", "popitem", "clear"))
                or ast.unparse(f) in ("os.putenv", "os.unsetenv"))
    return False


# Two edges may write the environment, one variable each, because CUDA reads them from there when it starts:
# the command line's --deterministic sets CUBLAS_WORKSPACE_CONFIG (README: Devices and precision), and a local
# sweep worker pinned to one GPU sets CUDA_VISIBLE_DEVICES in the forked worker before CUDA starts (as Ray does).
EDGE_WRITES = {"clproto/cli_common.py": ("CUBLAS_WORKSPACE_CONFIG",),
               "clproto/sweep/resources.py": ("CUDA_VISIBLE_DEVICES",)}


def test_nothing_in_clproto_writes_the_environment():
    probe = ast.parse("import os\nos.environ['A'] = '0'\nos.environ.setdefault('B', '1')\nx = os.environ.get('C')\n")
    assert sum(_writes_environment(n) for n in ast.walk(probe)) == 2  # the check sees writes, not reads
    writes, edge = [], []
    for path in _modules(PACKAGE).values():
        rel = path.relative_to(PACKAGE.parent).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if _writes_environment(node):
                (edge if rel in EDGE_WRITES else writes).append((rel, node))
    assert not writes, f"os.environ written (pass the value down instead): {[f'{r}:{n.lineno}' for r, n in writes]}"
    for rel, node in edge:  # the edge writes only its named variables
        source = ast.unparse(node)
        assert any(f"'{name}'" in source for name in EDGE_WRITES[rel]), source
    for rel in EDGE_WRITES:  # one write each
        assert sum(r == rel for r, _ in edge) <= 1, [ast.unparse(n) for r, n in edge if r == rel]
