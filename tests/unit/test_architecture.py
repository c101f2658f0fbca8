"""The shape of the house (docs/architecture.md): small modules, no import circles, and a core
that neither knows mitmproxy nor climbs back up to the edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "dlp_addon"
MAX_LINES = 400

# Modules over the limit today, each being split by its own change (issue 19).
KNOWN_LONG: dict[str, str] = {}

# Import arrows that close a circle today, each going with its own change (issue 19).
KNOWN_CIRCLES: dict[tuple[str, str], str] = {}

# The sans-proxy core: plain bytes and strings in, verdicts out (CONVENTIONS.md).
CORE = ("extract", "detect", "edm", "decide", "pipeline")
# Deciding around the core, still without mitmproxy: usable by another front end.
SANS_PROXY = (*CORE, "decision", "inspect_pool", "budget_keeper", "state", "act")
EDGE = ("edge", "addon", "master", "cli", "proxy_protocol")


def _modules() -> dict[str, Path]:
    """``dlp_addon.x.y`` -> its file, for every Python module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()
# Compiled modules (``detect/_numscan``): imported as modules, not as their package.
NATIVE = {
    ".".join((*p.relative_to(PACKAGE.parent).parts[:-1], p.name.split(".")[0]))
    for p in [*PACKAGE.rglob("*.c"), *PACKAGE.rglob("*.so")]
}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function (absolute names)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from dlp_addon.extract import sandbox`` imports the module ``sandbox``.
            submodules = {f"{node.module}.{a.name}" for a in node.names}
            found.update(submodules & MODULES.keys())
            if not submodules <= MODULES.keys() | NATIVE:
                found.add(node.module)
    return found


def _graph() -> dict[str, set[str]]:
    return {
        name: {m for m in _imports(path) if m in MODULES and (name, m) not in KNOWN_CIRCLES}
        for name, path in MODULES.items()
    }


def _in(name: str, roots: tuple[str, ...]) -> bool:
    rest = name.removeprefix("dlp_addon.")
    return any(rest == r or rest.startswith(r + ".") for r in roots)


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text("utf-8").splitlines())) > MAX_LINES
    }
    unexpected = {p: n for p, n in long.items() if p not in KNOWN_LONG}
    assert not unexpected, f"modules over {MAX_LINES} lines: {unexpected}"


def test_known_long_modules_are_still_long() -> None:
    """Once a split lands, its entry goes: the list must not hide a new long module later."""
    for name in KNOWN_LONG:
        path = PACKAGE / name
        long = path.exists() and len(path.read_text("utf-8").splitlines()) > MAX_LINES
        assert long, f"{name} is split: remove it from KNOWN_LONG"


def test_the_import_graph_has_no_circle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                circle = [*path[path.index(nxt) :], nxt]
                pytest.fail("import circle: " + " -> ".join(circle))
            if nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])


def test_known_circles_are_still_there() -> None:
    for importer, imported in KNOWN_CIRCLES:
        there = importer in MODULES and imported in _imports(MODULES[importer])
        assert there, f"{importer} -> {imported} is gone: remove it from KNOWN_CIRCLES"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _in(n, SANS_PROXY)))
def test_the_core_knows_neither_mitmproxy_nor_the_edge(name: str) -> None:
    imported = _imports(MODULES[name])
    assert not {m for m in imported if m == "mitmproxy" or m.startswith("mitmproxy.")}, name
    assert not {m for m in imported if m in MODULES and _in(m, EDGE)}, name


@pytest.mark.parametrize("name", sorted(n for n in MODULES if _in(n, CORE)))
def test_the_core_never_reaches_up_to_deciding_or_running(name: str) -> None:
    """extract -> detect -> decide -> pipeline only; the decision path and the pools are above."""
    above = ("decision", "inspect_pool", "budget_keeper", "state", "act", *EDGE)
    assert not {m for m in _imports(MODULES[name]) if m in MODULES and _in(m, above)}, name
