"""Imports flow one way: cli -> runtime -> (pool, drivers, http) -> sockets -> scope -> egress ->
errors. Nothing imports upward, nothing imports sideways between pool, drivers and http, nothing
inside imports the package face (``tcpworkers/__init__.py``), and cli imports only the runtime's
public names. testing/ and localpg/ sit beside the stack: they may use it, it never uses them.

Read from the source with ``ast`` (imports inside functions and ``TYPE_CHECKING`` blocks count),
so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final

import tcpworkers

SRC: Final = Path(tcpworkers.__file__).resolve().parent

# Each layer may import the layers below it (later in this list), never one above or beside it.
LAYERS: Final[tuple[frozenset[str], ...]] = (
    frozenset({"cli"}),
    frozenset({"runtime"}),
    frozenset({"_loop"}),  # tcpworkers.run(): the gated loop, for the face
    frozenset({"pool", "drivers", "http"}),
    frozenset({"sockets"}),
    frozenset({"scope"}),
    frozenset({"egress"}),
    frozenset({"errors", "_version"}),
)
# Beside the stack: may import any layer except cli; no layer imports them.
BESIDE: Final = frozenset({"testing", "localpg"})
# What cli may import: the runtime's face (not its private modules) and the version.
CLI_ALLOWED: Final = frozenset({"tcpworkers.runtime", "tcpworkers._version"})


def _level(unit: str) -> int | None:
    for index, layer in enumerate(LAYERS):
        if unit in layer:
            return index
    return None


def _unit(module: str) -> str:
    """The part of tcpworkers a dotted module name belongs to ("" for the package face)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _package_of(name: str) -> str:
    """The package a relative import in module ``name`` starts from."""
    as_dir = SRC.parent.joinpath(*name.split("."))
    return name if as_dir.is_dir() else name.rpartition(".")[0]


def _imports(name: str, source: str) -> Iterator[tuple[int, str]]:
    """(line, module) for every tcpworkers module ``source`` (module ``name``) imports, at any
    depth, relative imports resolved."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            if node.module == "tcpworkers":
                # `from tcpworkers import errors` names a submodule; anything else is the face.
                for alias in node.names:
                    submodule = (SRC / alias.name).with_suffix(".py").exists() or (
                        SRC / alias.name
                    ).is_dir()
                    yield node.lineno, (f"tcpworkers.{alias.name}" if submodule else "tcpworkers")
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            base = _package_of(name).split(".")
            base = base[: len(base) - (node.level - 1)]
            if node.module is not None:
                yield node.lineno, ".".join([*base, node.module])
            else:
                for alias in node.names:
                    yield node.lineno, ".".join([*base, alias.name])


def violations(modules: Mapping[str, str]) -> list[str]:
    """Every import in ``modules`` (dotted name -> source) that breaks the direction."""
    found: list[str] = []
    for name, source in sorted(modules.items()):
        unit = _unit(name)
        if unit == "":
            continue  # the face itself imports from everywhere (lazily)
        for line, target in _imports(name, source):
            where = f"{name}:{line} imports {target}"
            if target.split(".")[0] != "tcpworkers":
                continue
            target_unit = _unit(target)
            if target_unit == unit:
                continue
            if target_unit == "":
                found.append(f"{where}: the package face, from inside the package")
            elif unit == "cli":
                if target not in CLI_ALLOWED:
                    found.append(f"{where}: cli uses only tcpworkers.runtime's public names")
            elif target_unit in BESIDE:
                if unit not in BESIDE:
                    found.append(f"{where}: {target_unit} sits beside the stack, not under it")
            elif unit in BESIDE:
                if target_unit == "cli":
                    found.append(f"{where}: nothing imports cli")
            else:
                mine, theirs = _level(unit), _level(target_unit)
                if mine is None or theirs is None:
                    found.append(f"{where}: {unit or target_unit} has no layer in test_layers")
                elif theirs <= mine:
                    kind = "sideways" if theirs == mine else "upward"
                    found.append(f"{where}: {kind} ({unit} -> {target_unit})")
    return found


def source_modules() -> dict[str, str]:
    modules = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path.read_text(encoding="utf-8")
    return modules


def test_imports_flow_one_way() -> None:
    modules = source_modules()
    assert "tcpworkers.sockets._connect" in modules
    assert violations(modules) == []


def test_every_part_of_the_package_has_a_layer() -> None:
    units = {_unit(name) for name in source_modules()} - {""}
    assert {u for u in units if _level(u) is None} <= BESIDE


def test_an_upward_import_is_caught() -> None:
    bad = {
        "tcpworkers.sockets._bad": "from tcpworkers.runtime import WorkerApp\n",
        "tcpworkers.egress._bad": "def f():\n    import tcpworkers.scope\n",
        "tcpworkers.http._bad": "from tcpworkers.drivers import gated_loop_factory\n",
        "tcpworkers.scope._bad": "from tcpworkers import connect\n",
        "tcpworkers.pool._bad": "from tcpworkers.testing import EchoServer\n",
        "tcpworkers.cli": "from tcpworkers.runtime._server import serve\n",
        "tcpworkers.scope._bad2": "from ..runtime import _app\n",
    }
    found = violations(bad)
    assert len(found) == len(bad), found
    assert (
        "tcpworkers.sockets._bad:1 imports tcpworkers.runtime: upward (sockets -> runtime)" in found
    )
    assert "tcpworkers.http._bad:1 imports tcpworkers.drivers: sideways (http -> drivers)" in found
    assert any("the package face" in v for v in found)


def test_allowed_imports_pass() -> None:
    good = {
        "tcpworkers.runtime._x": "from tcpworkers.http import Response\nimport tcpworkers.errors\n",
        "tcpworkers.sockets._x": "from tcpworkers import errors\nfrom ..scope import use_scope\n",
        "tcpworkers.pool._x": "from . import _wire\nfrom ._wire import x\n",
        "tcpworkers.cli": "from tcpworkers.runtime import serve\n",
        "tcpworkers.testing._x": "from tcpworkers.runtime import WorkerApp\n",
    }
    assert violations(good) == []


# A module longer than this says why at its top (issue 7: "~450 lines").
MAX_LINES: Final = 470
SIZE_REASON: Final = "~450-line guideline"


def test_long_modules_say_why() -> None:
    unexplained = []
    for name, source in source_modules().items():
        lines = source.count("\n")
        docstring = ast.get_docstring(ast.parse(source)) or ""
        if lines > MAX_LINES and SIZE_REASON not in docstring:
            unexplained.append(f"{name}: {lines} lines")
    assert unexplained == [], "say why at the top (the ~450-line guideline), or split it"
