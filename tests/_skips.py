"""Skips: when a test may skip, and why CI may not.

A test that needs a program no wheel ships (MariaDB, PgBouncer, Chromium, a PostgreSQL built
with OpenSSL) cannot run on a machine with only Python. The test kit raises
:class:`~tcpworkers.errors.ServerNotFoundError` for it, naming the program and how to get it;
here that error, raised by a test or by one of its fixtures, reports the test as skipped with
that reason (``-ra`` lists them at the end). Any other error stays a failure.

No skipped test may pass for a passed one in CI: with ``TCPWORKERS_REQUIRE_SERVICES=1``
(``.ci/run`` sets it) every skip, whatever raised it, becomes a failure that keeps its reason:
CI's machine has everything (``scripts/services``), so a skip there means a set-up step broke.
``tests/conftest.py`` imports these hooks; ``tests/unit/test_skip_policy.py`` tests them.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Final

import pytest

from tcpworkers.errors import ServerNotFoundError

REQUIRE_ENV: Final = "TCPWORKERS_REQUIRE_SERVICES"


def _required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def _reason(report: pytest.TestReport | pytest.CollectReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:  # (path, line, "Skipped: reason")
        return str(longrepr[2])
    return str(longrepr)


def _fail(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    report.longrepr = (
        f"{_reason(report)}\n-- skipped, and {REQUIRE_ENV}=1 turns every skip into a failure "
        "(CI must run every test: install what the reason names, e.g. scripts/services)"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if (
        report.failed
        and call.excinfo is not None
        and call.excinfo.errisinstance(ServerNotFoundError)
    ):
        # The form pytest gives a skip's report: (file, line, reason), so -rs prints the reason.
        _, line, _ = item.location
        report.outcome = "skipped"
        report.longrepr = (str(item.path), (line or 0) + 1, f"Skipped: {call.excinfo.value}")
    # An expected failure (xfail) is reported as skipped too; it is not a missing service.
    if report.skipped and _required() and not hasattr(report, "wasxfail"):
        _fail(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    if report.skipped and _required():  # pytest.skip(allow_module_level=True), importorskip
        _fail(report)
    return report
