"""tests/_skips.py: a missing program skips with its reason; TCPWORKERS_REQUIRE_SERVICES=1
(CI) turns every skip into a failure. Each case runs a small pytest session in memory."""

from __future__ import annotations

import pytest

from .._skips import REQUIRE_ENV

SUITE = """
import pytest
from tcpworkers.errors import ServerNotFoundError

@pytest.fixture
def bouncer():
    raise ServerNotFoundError("PgBouncer not found (pgbouncer): apt-get install pgbouncer")

def test_passes():
    pass

def test_skips_itself():
    pytest.skip("no frobnicator here")

@pytest.mark.skipif(True, reason="marked skip")
def test_marked():
    pass

def test_needs_a_missing_program(bouncer):
    pass

def test_missing_program_in_the_body():
    raise ServerNotFoundError("MariaDB server not found (mariadbd): apt-get install mariadb-server")

def test_other_file_not_found_stays_a_failure():
    raise FileNotFoundError("a bug, not a missing server")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False
"""

CONFTEST = "from tests._skips import pytest_make_collect_report, pytest_runtest_makereport\n"
INI = "[pytest]\nasyncio_default_fixture_loop_scope = function\n"


@pytest.fixture
def session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_a_missing_program_skips_with_its_reason(session: pytest.Pytester) -> None:
    result = session.runpytest_inprocess("-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=4, failed=1, xfailed=1)
    result.stdout.fnmatch_lines(
        [
            "*SKIPPED*PgBouncer not found (pgbouncer): apt-get install pgbouncer",
            "*SKIPPED*MariaDB server not found (mariadbd): apt-get install mariadb-server",
        ]
    )


@pytest.mark.parametrize("value", ["1", "yes"])
def test_required_services_turn_every_skip_into_a_failure(
    session: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv(REQUIRE_ENV, value)
    result = session.runpytest_inprocess("-p", "no:cacheprovider")
    # The two in-body skips fail; the fixture's and the mark's fail at set-up (errors).
    result.assert_outcomes(passed=1, failed=3, errors=2, xfailed=1, skipped=0)
    result.stdout.fnmatch_lines(
        ["*no frobnicator here*", f"*skipped, and {REQUIRE_ENV}=1 turns every skip into a failure*"]
    )
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_a_module_level_skip_fails_too(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    pytester.makepyfile(
        test_module='import pytest\npytest.skip("whole module", allow_module_level=True)\n'
    )
    monkeypatch.setenv(REQUIRE_ENV, "0")  # "0" means not required
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(skipped=1)
    monkeypatch.setenv(REQUIRE_ENV, "1")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*whole module*"])
