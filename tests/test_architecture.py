"""The layout's import rules (README, Development), read from the source with `ast`: the
framework sits at the edge of the gateway, its layers import only downwards, the gateway and
the worker meet only through `protocol.py`, and no modules of `nexus_app` import each other
in a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "nexus_app"
G = "nexus_app.gateway"
FRAMEWORKS = ("fastapi", "starlette")
# where FastAPI and Starlette may be imported: the app, the server, the routes and HTTP plumbing
FRAMEWORK_HOMES = (f"{G}.app", f"{G}.server", f"{G}.api", f"{G}.http")
# what each part of the gateway may import from the gateway (beyond itself); the rest of
# nexus_app (chain, config, protocol, units, ...) is open to all
NEUTRAL = (f"{G}.errors", f"{G}.ratelimit")
MAY_IMPORT = {
    f"{G}.ledger": (),
    f"{G}.errors": (),
    f"{G}.ratelimit": (),
    f"{G}.metrics": (),
    f"{G}.money": (*NEUTRAL, f"{G}.ledger"),
    f"{G}.notify": (*NEUTRAL, f"{G}.ledger"),
    f"{G}.workers": NEUTRAL,
    f"{G}.cluster": (*NEUTRAL, f"{G}.http", f"{G}.workers"),
    f"{G}.conversations": (*NEUTRAL, f"{G}.ledger"),
    f"{G}.http": (*NEUTRAL, f"{G}.ledger", f"{G}.conversations"),
    f"{G}.api": (*NEUTRAL, f"{G}.metrics", f"{G}.service", *(f"{G}.{part}" for part in (
        "ledger", "money", "notify", "workers", "http", "conversations"))),
}


def _name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, lazy: bool) -> Iterator[tuple[ast.AST, bool]]:
    """Every node that runs, with whether it runs only when a function is called (imports
    under `if TYPE_CHECKING:` never run and are left out)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child):
            for other in child.orelse:
                yield other, lazy
                yield from _walk(other, lazy)
            continue
        inner = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield child, inner
        yield from _walk(child, inner)


@cache
def imports(module: str) -> tuple[tuple[str, bool], ...]:
    """(imported module, lazy) for each import that runs; `from a import b` names the
    module `a.b` when there is one."""
    path = modules()[module]
    is_package = path.name == "__init__.py"
    found: list[tuple[str, bool]] = []
    for node, lazy in _walk(ast.parse(path.read_text()), lazy=False):
        if isinstance(node, ast.Import):
            found += [(alias.name, lazy) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((full if full in modules() else base, lazy))
    return tuple(found)


def _within(module: str, prefixes: tuple[str, ...] | str) -> bool:
    prefixes = (prefixes,) if isinstance(prefixes, str) else prefixes
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_only_the_http_edge_of_the_gateway_imports_the_web_framework() -> None:
    offenders = [f"{module} imports {target}" for module in modules()
                 if not _within(module, FRAMEWORK_HOMES)
                 for target, _ in imports(module) if _within(target, FRAMEWORKS)]
    assert offenders == []


@pytest.mark.parametrize("part", sorted(MAY_IMPORT))
def test_gateway_layers_import_only_downwards(part: str) -> None:
    allowed = (part, *MAY_IMPORT[part])
    offenders = [f"{module} imports {target}" for module in modules() if _within(module, part)
                 for target, _ in imports(module)
                 if _within(target, G) and target != G and not _within(target, allowed)]
    assert offenders == []


@pytest.mark.parametrize(("side", "other"), [(G, "nexus_app.worker"), ("nexus_app.worker", G)])
def test_gateway_and_worker_meet_only_through_the_protocol(side: str, other: str) -> None:
    offenders = [f"{module} imports {target}" for module in modules() if _within(module, side)
                 for target, _ in imports(module) if _within(target, other)]
    assert offenders == []


def test_no_circular_imports() -> None:
    """Between modules (a package's `__init__` counts as a module): an edge for every import
    that runs, whether at import time or in a function."""
    graph = {module: {target for target, _ in imports(module)
                      if target in modules() and target != module} for module in modules()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert cycles == []


PACKAGES = tuple(f"nexus_app.{name}" for name in ("chain", "client", "gateway", "tui", "worker"))
ENTRY_POINTS = ("nexus_app.__main__", "nexus_app.cli", "nexus_app.admin")


def test_shared_modules_import_no_package_of_the_app() -> None:
    """`config.py`, `protocol.py`, `units.py`, `addresses.py`... are what every package builds
    on, so none of them imports a package (the settings check addresses through
    `addresses.py`, not the chain, which itself reads the settings)."""
    shared = [module for module in modules() if module.count(".") == 1
              and not _within(module, PACKAGES) and module not in ENTRY_POINTS]
    offenders = [f"{module} imports {target}" for module in shared
                 for target, _ in imports(module) if _within(target, PACKAGES)]
    assert "nexus_app.config" in shared and offenders == []


def test_only_the_terminal_app_imports_textual() -> None:
    """The headless faces (gateway, worker, client, CLI) run without Textual; the CLI starts
    the terminal app with an import inside the function that runs it."""
    offenders = [f"{module} imports {target}" for module in modules()
                 if not _within(module, "nexus_app.tui")
                 for target, lazy in imports(module)
                 if _within(target, "textual") or (_within(target, "nexus_app.tui")
                                                   and not (module in ENTRY_POINTS and lazy))]
    assert offenders == []


def test_the_frozen_build_smoke_test_needs_no_test_dependencies() -> None:
    """`packaging/build.sh` runs `tests.support.frozen_smoke` after `pip install -e '.[build]'`
    alone: it and what it imports must not need pytest."""
    blocked = "import sys; sys.modules['pytest'] = sys.modules['_pytest'] = None; "
    done = subprocess.run(
        [sys.executable, "-c",
         blocked + "import tests.support.frozen_smoke, tests.support.tmux_new_user"],
        cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True,
    )
    assert done.returncode == 0, done.stderr
