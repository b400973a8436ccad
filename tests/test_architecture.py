"""Package structure: no import cycles in faiser/, and a numerical core that imports no ML, no
tables, no plots and no file formats. The import graph is built from the source (every ``import``
statement, function-level ones included), so a cycle hidden behind a lazy import fails too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "faiser"
CORE_FORBIDDEN = ("flax", "optax", "orbax", "pandas", "xarray", "matplotlib", "zarr", "netCDF4", "h5py", "tqdm")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> tuple[set[str], set[str]]:
    """(faiser modules imported, top-level names of every imported package) of one source file.

    ``from pkg import sub`` counts as an import of the module ``pkg.sub`` when it is one (not of
    ``pkg``'s ``__init__``), as Python resolves it."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    internal, external = set(), set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                external.add(alias.name.split(".")[0])
                if alias.name in modules:
                    internal.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            external.add(target.split(".")[0])
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules]
            internal.update(subs)
            if len(subs) < len(node.names) and target in modules:
                internal.add(target)
    internal.discard(name)
    return internal, external


def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    files = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph, external = {}, {}
    for name, path in files.items():
        graph[name], external[name] = _imports(path, set(files))
    return graph, external


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_faiser():
    graph, _ = _graph()
    assert len(graph) > 50  # the walk found the package
    assert _cycles(graph) == []


@pytest.mark.parametrize("package", ["faiser.vlasov"])
def test_numerical_core_imports_no_ml_tables_plots_or_files(package):
    graph, external = _graph()
    core = [m for m in graph if m == package or m.startswith(package + ".")]
    assert core
    bad = {m: sorted(external[m] & set(CORE_FORBIDDEN)) for m in core if external[m] & set(CORE_FORBIDDEN)}
    assert bad == {}
    # and inside faiser only the ground floor and the core itself
    allowed = ("faiser.vlasov", "faiser.grid", "faiser.errors", "faiser.units", "faiser._version")
    outside = {m: sorted(d for d in graph[m] if not d.startswith(allowed)) for m in core}
    assert {m: d for m, d in outside.items() if d} == {}
