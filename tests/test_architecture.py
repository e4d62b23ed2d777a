"""The layers of docs/design.md, checked on the import statements themselves (every import, module level or inside
a function): no circles, nothing below the API imports it, pages import only the API, the store stands alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Above the API: the only modules that may import it.
ABOVE_API = {"hipp_core.cli", "hipp_core.job_runner"}
# Libraries a page may use besides the API: drawing, tables, the standard library.
PAGE_LIBRARIES = {"streamlit", "plotly", "pandas", "numpy"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every module of `modules` that `path` imports, resolved to dotted names (relative imports included);
    `from pkg import name` counts as importing `pkg.name` when that is a module, else `pkg`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return found & modules


def _graph() -> dict[str, set[str]]:
    files = [*ROOT.glob("hipp_core/**/*.py"), *ROOT.glob("plan_store/**/*.py"), *ROOT.glob("pages/*.py")]
    modules = {_module_name(f): f for f in files}
    return {name: _imports(path, set(modules)) for name, path in modules.items()}


def test_no_import_circles():
    graph = _graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    circles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circles.append([*path[path.index(nxt) :], nxt] if nxt in path else [node, nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    assert not circles, "import circles: " + "; ".join(" → ".join(c) for c in circles)


def test_nothing_below_the_api_imports_it():
    graph = _graph()
    offenders = sorted(m for m, deps in graph.items() if "hipp_core.api" in deps and m not in ABOVE_API)
    offenders = [m for m in offenders if not m.startswith("pages")]
    assert not offenders, f"modules below the API import it: {offenders}"


def test_plan_store_stands_alone():
    offenders = {m: sorted(d for d in deps if d.startswith("hipp_core")) for m, deps in _graph().items()}
    offenders = {m: deps for m, deps in offenders.items() if m.startswith("plan_store") and deps}
    assert not offenders, f"plan_store imports hipp_core: {offenders}"


@pytest.mark.parametrize("page", sorted(p.name for p in (ROOT / "pages").glob("*.py")) + ["../app.py"])
def test_pages_import_only_the_api(page):
    path = (ROOT / "pages" / page).resolve()
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module if node.module != "hipp_core" else f"hipp_core.{node.names[0].name}")
    ours = {m for m in imported if m.split(".")[0] in {"hipp_core", "plan_store"}}
    assert ours <= {"hipp_core.api"}, f"{page} imports {sorted(ours - {'hipp_core.api'})}; go through hipp_core.api"
    third_party = {m.split(".")[0] for m in imported} - {"hipp_core", "pages", "__future__"}
    stdlib = {"pathlib", "json", "datetime", "time", "math", "io", "collections", "typing", "dataclasses", "os"}
    assert third_party <= PAGE_LIBRARIES | stdlib, f"{page} imports {sorted(third_party - PAGE_LIBRARIES - stdlib)}"


def test_cli_reaches_the_library_only_through_the_api():
    """Besides the API, the CLI needs only the process settings (threads, quiet libraries) and the error types,
    which it imports before the API so that they apply before transformers loads."""
    deps = _graph()["hipp_core.cli"]
    assert deps <= {"hipp_core.api", "hipp_core.config", "hipp_core.errors"}, sorted(deps)


@pytest.mark.parametrize("page", sorted(p.stem for p in (ROOT / "pages").glob("[!_]*.py")))
def test_every_page_hands_over_to_the_app_before_it_draws(page):
    """A deep link on a fresh server runs the page file itself; it must call `hand_over_to_app()` as its first
    statement after the imports, before anything is drawn (the hand-over is shown in a browser by test_browser)."""
    tree = ast.parse((ROOT / "pages" / f"{page}.py").read_text())
    body = [n for n in tree.body if not isinstance(n, ast.Import | ast.ImportFrom)]
    body = body[1:] if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) else body
    first = body[0]
    assert isinstance(first, ast.Expr) and isinstance(first.value, ast.Call), ast.unparse(first)
    assert ast.unparse(first.value) == "hand_over_to_app()", ast.unparse(first)
