"""PostgreSQL servers for the tests: what the ``scram_postgres``, ``tls_postgres``, ``pg_server``
and ``pg_dsn`` fixtures (tests/conftest.py) hand out, and how the shared server is found or
started.

The machine's PostgreSQL (127.0.0.1:5432, trust, database ``test``) trusts every loopback
connection, so password and TLS tests run their own clusters with ``tcpworkers.localpg``. When
nothing answers on 127.0.0.1:5432 (a machine with only Python), the suite starts a trust cluster
with the same user and database (on 5432 when it is free, else on a free port). Tests reach the
shared server through the ``pg_server`` fixture, or :func:`shared` where a helper builds DSNs
outside a fixture, never through a hard-coded address.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, final

from tcpworkers.localpg import LocalPostgres

SHARED_HOST = "127.0.0.1"
SHARED_PORT = 5432
# The machine's server's Unix socket directory (Debian).
SYSTEM_SOCKET_DIR = Path("/var/run/postgresql")


@final
@dataclass(frozen=True, slots=True)
class PgServer:
    """A running PostgreSQL server and how to reach it."""

    host: str
    port: int
    user: str
    password: str | None
    database: str
    auth: str  # "scram-sha-256" | "md5" | "password" | "trust"
    socket_dir: Path | None  # unix socket directory (None: the machine's server has none here)
    ca_path: Path | None  # the CA that signed the server certificate (TLS clusters)
    cluster: LocalPostgres | None  # None for the machine's shared server

    def dsn(self, database: str | None = None, *, sslmode: str | None = None) -> str:
        """``postgresql://user[:password]@host:port/db``, with ``sslmode`` and the CA if given."""
        auth = self.user + (f":{self.password}" if self.password is not None else "")
        query = []
        if sslmode:
            query.append(f"sslmode={sslmode}")
            if self.ca_path is not None:
                query.append(f"sslrootcert={self.ca_path}")
        tail = ("?" + "&".join(query)) if query else ""
        return f"postgresql://{auth}@{self.host}:{self.port}/{database or self.database}{tail}"

    @classmethod
    def of(cls, pg: LocalPostgres, *, ca_path: Path | None = None) -> PgServer:
        return cls(
            host=pg.host,
            port=pg.port,
            user=pg.user,
            password=pg.password,
            database=pg.database,
            auth=pg.auth,
            socket_dir=pg.socket_dir,
            ca_path=ca_path,
            cluster=pg,
        )


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a PostgreSQL server answers there: an SSLRequest gets ``S`` or ``N`` back."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as probe:
            probe.sendall(b"\x00\x00\x00\x08\x04\xd2\x16\x2f")  # SSLRequest
            return probe.recv(1) in (b"S", b"N")
    except OSError:
        return False


def port_free(host: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def shared_postgres(host: str = SHARED_HOST, port: int = SHARED_PORT) -> Iterator[PgServer]:
    """The server at ``host:port`` (trust, user postgres, database test) when one answers there;
    otherwise a local trust cluster with that user and database, on ``port`` when it is free,
    else on a free port. The cluster stops when the block ends."""
    if answers(host, port):
        socket_dir = SYSTEM_SOCKET_DIR
        has_socket = (socket_dir / f".s.PGSQL.{port}").exists()
        yield PgServer(
            host=host,
            port=port,
            user="postgres",
            password=None,
            database="test",
            auth="trust",
            socket_dir=socket_dir if has_socket else None,
            ca_path=None,
            cluster=None,
        )
        return
    chosen = port if port_free(host, port) else None
    with LocalPostgres(auth="trust", user="postgres", database="test", port=chosen) as pg:
        yield PgServer.of(pg)


_shared: list[PgServer] = []  # the session's shared server, set by the pg_server fixture


def shared() -> PgServer:
    """The session's shared server (for helpers that build DSNs outside a fixture)."""
    if not _shared:
        raise RuntimeError(
            "the shared PostgreSQL is not started: use the pg_server fixture (tests/conftest.py), "
            "or add the test's directory to _SHARED_PG_USERS there"
        )
    return _shared[-1]


def pg() -> dict[str, Any]:
    """``asyncpg.connect()`` keyword arguments for the shared server."""
    server = shared()
    return {"host": server.host, "port": server.port, "user": server.user, "database": "test"}


@contextlib.contextmanager
def sharing(server: PgServer) -> Iterator[PgServer]:
    """Make ``server`` what :func:`shared` returns while the block runs."""
    _shared.append(server)
    try:
        yield server
    finally:
        _shared.remove(server)
