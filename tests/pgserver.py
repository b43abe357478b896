"""PostgreSQL servers for the tests: what the ``scram_postgres``, ``tls_postgres`` and ``pg_dsn``
fixtures (tests/conftest.py) hand out, and how the shared server is found or started.

The machine's PostgreSQL (127.0.0.1:5432, trust, database ``test``) trusts every loopback
connection, so password and TLS tests run their own clusters with ``tcpworkers.localpg``. When
nothing answers on 127.0.0.1:5432 (a machine with only Python), the suite starts a trust cluster
there (or on a free port) with the same user and database, so the tests that use the shared
server run too.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import final

from tcpworkers.localpg import LocalPostgres

SHARED_HOST = "127.0.0.1"
SHARED_PORT = 5432
SHARED_DSN = f"postgresql://postgres@{SHARED_HOST}:{SHARED_PORT}/test"


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
    socket_dir: Path | None  # unix socket directory (None for the machine's shared server)
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
def shared_postgres(host: str = SHARED_HOST, port: int = SHARED_PORT) -> Iterator[str]:
    """The DSN of the server at ``host:port`` (trust, user postgres, database test) when one
    answers there; otherwise of a local trust cluster with that user and database, on ``port``
    when it is free, else on a free port. The cluster stops when the block ends."""
    if answers(host, port):
        yield f"postgresql://postgres@{host}:{port}/test"
        return
    chosen = port if port_free(host, port) else None
    with LocalPostgres(auth="trust", user="postgres", database="test", port=chosen) as pg:
        yield pg.dsn()
