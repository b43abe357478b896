"""Servers the driver tests start themselves, once per session: a MariaDB and a Redis, each with
TLS from a throwaway CA (``tcpworkers.testing.LocalMariaDB`` / ``LocalRedis``).

They need the Debian packages ``mariadb-server`` and ``redis-server`` (``scripts/services``
installs neither: both are on the machine, as the shared services on 3306/6379 prove); a missing
binary fails the test that needs it with the package to install.
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
