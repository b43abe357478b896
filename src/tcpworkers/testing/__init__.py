"""Loopback servers, a throwaway CA and a fault-injecting proxy for testing network code.

The kit tcpworkers tests itself with, public so worker and driver authors can use it too. Every
server binds a loopback address (``127.0.0.1``, or ``::1`` with ``host="::1"``) on a port the
OS picks, uses plain asyncio (so it runs on the stdlib loop and on uvloop), and closes all its
connections when its ``async with`` block ends. Nothing here connects anywhere but loopback.

- :class:`EchoServer` echoes bytes over TCP or TLS and records what each connection did
  (bytes received, EOF, reset, closed) in :class:`ServerConnection` objects.
- :class:`StartTlsServer` speaks a tiny line protocol (``READY``, ``STARTTLS``, ``GO``) and then
  upgrades to TLS in place, for opportunistic-TLS clients.
- :class:`TestCA` makes certificates with trustme: server contexts (also expired, also requiring
  a client certificate), client contexts that trust it, and client certificates.
- :class:`FaultProxy` sits between a client and a loopback server and injects a :class:`Fault`:
  a reset or a clean close after n bytes, a stall, a truncated TLS record, a refused connection.
- :class:`PgBouncer` runs a real PgBouncer (Debian package ``pgbouncer``) in a temporary
  directory in front of a PostgreSQL server, transaction pooling, stopped by the test.

- :class:`LocalMariaDB` and :class:`LocalRedis` run a throwaway MariaDB or Redis server (the
  system's binaries) on a free loopback port, optionally with TLS from a :class:`TestCA`.
- :func:`serve_worker` serves a worker over real HTTP on loopback (uvicorn, in the test's own
  event loop) and yields a :class:`WorkerServer` with its ``url`` and an ``httpx`` ``client``.

Example::

    import asyncio
    import pytest
    from tcpworkers.testing import EchoServer, Fault, FaultProxy, TestCA

    async def test_tls_echo() -> None:
        ca = TestCA()
        async with EchoServer(ssl=ca.server_context()) as srv:
            reader, writer = await asyncio.open_connection(
                srv.host, srv.port, ssl=ca.client_context(), server_hostname="localhost"
            )
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            writer.close()
            (conn,) = await srv.wait_for_connections(1)
            await asyncio.wait_for(conn.closed.wait(), 5)  # the server saw the client go

    async def test_reset_mid_stream() -> None:
        async with EchoServer() as srv, FaultProxy(srv.host, srv.port) as proxy:
            proxy.fault = Fault.reset_after(3)
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            writer.write(b"hello")
            assert await reader.readexactly(3) == b"hel"
            with pytest.raises(ConnectionResetError):
                await reader.read()
            writer.close()

TLS helpers and ``serve_worker`` need the ``testing`` extra
(``pip install 'tcpworkers[testing]'``: trustme, uvicorn, httpx).
"""

from __future__ import annotations

from tcpworkers.testing._certs import ClientCert, TestCA, untrusted_ca
from tcpworkers.testing._mariadb import LocalMariaDB
from tcpworkers.testing._pgbouncer import PgBouncer
from tcpworkers.testing._proxy import Fault, FaultKind, FaultProxy
from tcpworkers.testing._redis import LocalRedis
from tcpworkers.testing._servers import (
    EchoServer,
    ServerConnection,
    StartTlsConnection,
    StartTlsServer,
)
from tcpworkers.testing._worker import WorkerServer, serve_worker

__all__ = [
    "ClientCert",
    "EchoServer",
    "Fault",
    "FaultKind",
    "FaultProxy",
    "PgBouncer",
    "LocalMariaDB",
    "LocalRedis",
    "ServerConnection",
    "StartTlsConnection",
    "StartTlsServer",
    "TestCA",
    "WorkerServer",
    "serve_worker",
    "untrusted_ca",
]
