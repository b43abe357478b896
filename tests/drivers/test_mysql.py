"""MySQL-protocol drivers (asyncmy, aiomysql) through the gate, against real MariaDB servers.

The session's MariaDB (``LocalMariaDB``: its own data directory, TLS with a trustme certificate,
one user per authentication plugin; without ``mariadbd`` the tests skip, saying so). Both
drivers open with ``loop.create_connection`` and upgrade to TLS by closing that transport and
calling ``create_connection(sock=<dup of the socket>, ssl=...)``: the gate must see that as the
same connection (one slot, one count), not a second.
"""

from __future__ import annotations

import asyncio
import ssl
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiomysql
import asyncmy
import pytest

from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import EgressDeniedError
from tcpworkers.scope import request_scope

from .conftest import MySQLServer

NO_LOOPBACK = EgressPolicy.from_config({"preset": "dev", "deny": ["loopback"]})


@dataclass(frozen=True)
class Driver:
    """What the tests need from a MySQL driver, the same way for both."""

    name: str
    open: Callable[..., Awaitable[Any]]
    error: type[Exception]

    async def connect(self, **kwargs: Any) -> Any:
        kwargs.setdefault("connect_timeout", 10)
        return await self.open(**kwargs)

    async def query(self, conn: Any, sql: str) -> list[tuple[Any, ...]]:
        async with conn.cursor() as cur:
            await cur.execute(sql)
            return list(await cur.fetchall())

    async def close(self, conn: Any) -> None:
        await conn.ensure_closed()


def _aiomysql_open(**kwargs: Any) -> Awaitable[Any]:
    kwargs["db"] = kwargs.pop("database", None)
    return aiomysql.connect(**kwargs)


def _asyncmy_open(**kwargs: Any) -> Awaitable[Any]:
    kwargs["db"] = kwargs.pop("database", None)
    return asyncmy.connect(**kwargs)


DRIVERS = [
    Driver("asyncmy", _asyncmy_open, asyncmy.errors.OperationalError),
    Driver("aiomysql", _aiomysql_open, aiomysql.OperationalError),
]


@pytest.fixture(params=DRIVERS, ids=[d.name for d in DRIVERS])
def driver(request: pytest.FixtureRequest) -> Driver:
    param: Driver = request.param
    return param


async def wait_for_sessions(server: MySQLServer, user: str, expected: int) -> None:
    async with asyncio.timeout(5):
        # The server is another process: polling is the only way to watch it.
        while await asyncio.to_thread(server.sessions, user) != expected:  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def login(server: MySQLServer, user: str) -> dict[str, Any]:
    return {
        "host": server.host,
        "port": server.port,
        "user": user,
        "password": server.password(user),
        "database": "test",
    }


async def test_plain_query_is_counted_and_closed(driver: Driver, mysql_server: MySQLServer) -> None:
    """Plaintext, native password, on the session's MariaDB (not the machine's: tests start
    their own servers, so a machine without a MariaDB service skips with the reason)."""
    table = f"tcpw_drivers_{driver.name}_{uuid.uuid4().hex[:8]}"
    async with request_scope() as scope:
        conn = await driver.connect(**login(mysql_server, "tcpw_native"))
        await driver.query(conn, f"CREATE TEMPORARY TABLE {table} (n INT)")
        await driver.query(conn, f"INSERT INTO {table} VALUES (40), (2)")
        assert await driver.query(conn, f"SELECT SUM(n) FROM {table}") == [(42,)]
        assert len(scope.open_resources) == 1
        assert f"127.0.0.1:{mysql_server.port}" in scope.open_resources[0].describe()
    assert scope.stats.sockets_opened == 1
    assert scope.stats.closed_at_end == 1
    assert scope.stats.bytes_in > 0


async def test_plain_left_open_is_closed_at_scope_end(
    driver: Driver, mysql_server: MySQLServer
) -> None:
    async with request_scope() as scope:
        conn = await driver.connect(**login(mysql_server, "tcpw_native"))
        assert await driver.query(conn, "SELECT CURRENT_USER()") == [("tcpw_native@%",)]
        assert await driver.query(conn, "SHOW SESSION STATUS LIKE 'Ssl_version'") == [
            ("Ssl_version", "")
        ]
    assert scope.stats.sockets_opened == 1
    assert scope.stats.closed_at_end == 1
    await wait_for_sessions(mysql_server, "tcpw_native", 0)


async def test_tls_verify_full_is_one_counted_connection(
    driver: Driver, mysql_server: MySQLServer
) -> None:
    """TLS with the CA checked and the host name matched; the user REQUIRES SSL server-side."""
    async with request_scope(max_sockets=1, slot_timeout=2) as scope:
        conn = await driver.connect(
            **login(mysql_server, "tcpw_tls"), ssl=mysql_server.client_tls()
        )
        ((_, version),) = await driver.query(conn, "SHOW SESSION STATUS LIKE 'Ssl_version'")
        assert version.startswith("TLSv1.")
        # The upgrade (close the plain transport, re-connect a duplicate of the same socket
        # with TLS) is the same connection to the gate: one slot, one count.
        (resource,) = scope.open_resources
        assert f"127.0.0.1:{mysql_server.port}" in resource.describe()
        assert scope.stats.sockets_opened == 1
        await driver.close(conn)
        assert scope.open_resources == ()
        conn = await driver.connect(
            **login(mysql_server, "tcpw_tls"), ssl=mysql_server.client_tls()
        )
        assert await driver.query(conn, "SELECT 7") == [(7,)]
    assert scope.stats.sockets_opened == 2
    assert scope.stats.peak_open == 1
    assert scope.stats.closed_at_end == 1
    assert scope.stats.bytes_in > 0
    await wait_for_sessions(mysql_server, "tcpw_tls", 0)


async def test_tls_with_an_unknown_ca_fails_and_leaks_nothing(
    driver: Driver, mysql_server: MySQLServer
) -> None:
    from tcpworkers.testing import untrusted_ca

    async with request_scope() as scope:
        with pytest.raises((ssl.SSLCertVerificationError, driver.error)) as info:
            await driver.connect(
                **login(mysql_server, "tcpw_tls"), ssl=untrusted_ca().client_context()
            )
        assert "CERTIFICATE_VERIFY_FAILED" in repr(info.value) + repr(info.value.__cause__)
        assert scope.open_resources == ()
    assert scope.stats.closed_at_end == 0


async def test_require_ssl_user_without_tls_is_refused(
    driver: Driver, mysql_server: MySQLServer
) -> None:
    async with request_scope() as scope:
        with pytest.raises(driver.error, match="Access denied"):
            await driver.connect(**login(mysql_server, "tcpw_tls"))
        assert scope.open_resources == ()


async def test_native_password_plugin(driver: Driver, mysql_server: MySQLServer) -> None:
    async with request_scope():
        conn = await driver.connect(**login(mysql_server, "tcpw_native"))
        assert await driver.query(conn, "SELECT 1") == [(1,)]
        await driver.close(conn)


async def test_ed25519_plugin_with_asyncmy(mysql_server: MySQLServer) -> None:
    """MariaDB's ed25519 plugin: asyncmy implements it (with PyNaCl), over TLS too."""
    driver = DRIVERS[0]
    async with request_scope() as scope:
        for tls in (None, mysql_server.client_tls()):
            conn = await driver.connect(**login(mysql_server, "tcpw_ed25519"), ssl=tls)
            assert await driver.query(conn, "SELECT CURRENT_USER()") == [("tcpw_ed25519@%",)]
            await driver.close(conn)
    assert scope.stats.sockets_opened == 2


async def test_ed25519_plugin_is_not_in_aiomysql(mysql_server: MySQLServer) -> None:
    """A known limit of aiomysql 0.3 (not of the gate): it has no client_ed25519."""
    driver = DRIVERS[1]
    async with request_scope() as scope:
        with pytest.raises(driver.error, match="client_ed25519"):
            await driver.connect(**login(mysql_server, "tcpw_ed25519"))
        assert scope.open_resources == ()


async def test_unix_socket_follows_the_loopback_rule(
    driver: Driver, mysql_server: MySQLServer
) -> None:
    """A Unix-socket DSN is a destination like any other: loopback for the policy."""
    unix = {"unix_socket": mysql_server.db.unix_socket, "user": "root", "password": ""}
    async with request_scope() as scope:
        conn = await driver.connect(**unix, database="test")
        assert await driver.query(conn, "SELECT 5") == [(5,)]
        assert "unix:" in scope.open_resources[0].describe()
    assert scope.stats.closed_at_end == 1
    async with request_scope(EgressPolicy.serve()) as scope:
        with pytest.raises((EgressDeniedError, driver.error)) as info:
            await driver.connect(**unix, database="test")
        # aiomysql wraps it in its own OperationalError 2003; ours is the cause.
        assert _caused_by(info.value, EgressDeniedError)
    assert scope.stats.sockets_denied == 1


async def test_denied_host(driver: Driver, mysql_server: MySQLServer) -> None:
    async with request_scope(NO_LOOPBACK) as scope:
        with pytest.raises((EgressDeniedError, driver.error)) as info:
            await driver.connect(**login(mysql_server, "tcpw_native"))
        assert _caused_by(info.value, EgressDeniedError)
    assert scope.stats.sockets_denied == 1
    assert scope.open_resources == ()


def _caused_by(exc: BaseException | None, kind: type[BaseException]) -> bool:
    while exc is not None:
        if isinstance(exc, kind):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
