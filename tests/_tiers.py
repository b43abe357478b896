"""Test tiers: every test is exactly one of ``unit``, ``integration`` or ``slow``.

- ``unit``: in memory only. No sockets bound or connected, no subprocesses (small files under
  ``tmp_path`` are fine). Enforced: such a call inside a unit test fails the test.
- ``integration``: real loopback connections and the local services (PostgreSQL, Redis, ...).
- ``slow``: subprocesses (the CLI, ``serve --workers``), large transfers, long soaks.

A test gets the tier of its file (``FILE_TIERS``) or directory (``DIRECTORY_TIERS``) unless its
module sets ``pytestmark = pytest.mark.<tier>`` or the test carries a tier mark itself. A test
with no tier, or with two, is a collection error, so a new directory or file cannot go untiered.

``scripts/test -m unit`` runs the unit tier in seconds; ``-m "not slow"`` skips the slow one.
The markers are registered in pyproject.toml (``--strict-markers``); ``tests/conftest.py``
imports these hooks.
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any, Final

import pytest

TIERS: Final = ("unit", "integration", "slow")

# The default tier of each directory under tests/; a file or a test that differs says so with
# an explicit mark.
DIRECTORY_TIERS: Final = {
    "unit": "unit",
    "sockets": "integration",
    "testing": "integration",
    "runtime": "integration",
    "drivers": "integration",
    "pool": "integration",
    "binding": "integration",
    "docs": "integration",
    "demo": "slow",  # scripts/demo and a browser
    "localpg": "slow",  # initdb and postgres processes
}

# Files whose tier differs from their directory's, for files that do not mark themselves
# (keeping the decision here avoids edits in files other branches are working on).
FILE_TIERS: Final = {
    "pool/test_wire.py": "unit",
    "binding/test_dsn.py": "unit",
    "docs/test_config_reference.py": "unit",
    "docs/test_readme_examples.py": "slow",  # tcpworkers check as subprocesses
    "docs/test_dockerfile.py": "slow",  # tcpworkers check and serve as subprocesses
    "testing/test_peers_command.py": "slow",  # subprocesses
}

# Audit events that mean real I/O beyond memory (sys.addaudithook, PEP 578).
_IO_EVENTS: Final = frozenset(
    {
        "socket.bind",
        "socket.connect",
        "socket.sendto",
        "socket.sendmsg",
        "subprocess.Popen",
        "os.system",
        "os.posix_spawn",
        "os.fork",
        "os.exec",
    }
)

_TESTS_DIR: Final = Path(__file__).resolve().parent


class _UnitGuard:
    """Records (and refuses) I/O while a unit test runs; the audit hook stays installed."""

    def __init__(self) -> None:
        self.active = False
        self.violations: list[str] = []

    def __call__(self, event: str, args: tuple[Any, ...]) -> None:
        if self.active and event in _IO_EVENTS:
            self.violations.append(f"{event}{args!r}")
            raise PermissionError(
                f"{event} in a unit test: unit tests stay in memory; mark the test "
                "@pytest.mark.integration (loopback, services) or @pytest.mark.slow (subprocesses)"
            )


_guard = _UnitGuard()


def _install_guard() -> None:
    if not getattr(sys, "_tcpworkers_unit_guard", False):
        sys.addaudithook(_guard)  # cannot be removed: installed once per interpreter
        sys._tcpworkers_unit_guard = True  # type: ignore[attr-defined]


def tier_of(item: pytest.Item) -> str:
    """The one tier of ``item``: its own mark, else its class's or module's, else its directory's.

    The closest mark wins, so a module marked ``unit`` can hold one ``integration`` test.
    """
    for node in reversed(item.listchain()):
        marked = sorted({mark.name for mark in node.own_markers if mark.name in TIERS})
        if len(marked) > 1:
            raise pytest.UsageError(f"{node.nodeid}: marked {marked}; a test has exactly one tier")
        if marked:
            return marked[0]
    try:
        relative = item.path.resolve().relative_to(_TESTS_DIR)
    except ValueError:
        relative = None
    tier = None
    if relative is not None and len(relative.parts) > 1:
        tier = FILE_TIERS.get(relative.as_posix(), DIRECTORY_TIERS.get(relative.parts[0]))
    if tier is None:
        raise pytest.UsageError(
            f"{item.nodeid}: no test tier; add its directory to DIRECTORY_TIERS in "
            f"tests/_tiers.py or mark it with one of {list(TIERS)}"
        )
    return tier


@pytest.hookimpl(tryfirst=True)  # before -m deselects by mark
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    tiers = [tier_of(item) for item in items]
    # Drop every tier mark from the tree (a module's `unit` above a test's `integration`), then
    # give each test the one that applies, so that `-m unit` selects by it.
    for item in items:
        for node in item.listchain():
            node.own_markers[:] = [m for m in node.own_markers if m.name not in TIERS]
    for item, tier in zip(items, tiers, strict=True):
        item.add_marker(tier)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    if item.get_closest_marker("unit") is None:
        return (yield)
    _install_guard()
    _guard.violations.clear()
    _guard.active = True
    try:
        result = yield
    finally:
        _guard.active = False
    if _guard.violations:
        # The code under test may have caught the PermissionError; fail the test anyway.
        raise AssertionError(f"I/O in a unit test: {_guard.violations}")
    return result
