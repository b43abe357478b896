"""The binding a worker sees as ``env.NAME``: a Postgres pool behind a private unix socket.

How clients reach it (one connection string for every driver). At start the binding makes a
private directory (mode 0700, so only the runtime's user can open what is inside), listens on
``DIR/.s.PGSQL.PORT`` there, and invents a per-process secret. The worker's connection string is

    postgresql://USER:SECRET@/DATABASE?host=DIR&port=PORT

which libpq (psycopg) and asyncpg both understand as "the unix socket DIR/.s.PGSQL.PORT". Each
connection on that socket is served by the pooler (:func:`serve_client`): the client leg is a
cheap local startup (cleartext password over a unix socket: no TLS, no SCRAM), and its queries run
on the pool's warm server connections, which did TLS and SCRAM once.

The socket is registered as a *local endpoint* with the gate, with an in-process connector: a
driver running on the gated loop (asyncpg, whose ``loop.create_unix_connection`` the gate sees)
that opens the socket's path gets a transport pair served by the pooler in this process instead
(``_inprocess``: no kernel socket, no accept, no TLS or SCRAM), whatever the egress policy
(``serve`` refuses loopback). The connection still counts against the request's socket limit and
is closed when the request ends (the server connection then goes back to the pool, reset if it
was pinned or dirty), exactly as over the socket. libpq opens its sockets in C, outside asyncio:
psycopg uses the real socket, and its connections to the binding are not counted or closed by the
gate (close them yourself, ``async with``); their server connections still return to the pool at
the end of every transaction.

Pools are per process: ``serve --workers N`` runs N pools of ``max_size`` each.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import errno
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, final
from urllib.parse import quote

from tcpworkers.egress._local import register_local_endpoint, unregister_local_endpoint
from tcpworkers.errors import UpstreamConnectError, UpstreamServerError
from tcpworkers.pool._dsn import UpstreamParams
from tcpworkers.pool._inprocess import open_pipe
from tcpworkers.pool._pool import Pool, PoolSettings, PoolStats
from tcpworkers.pool._relay import serve_client
from tcpworkers.pool._streams import ClientReader, ClientWriter
from tcpworkers.pool._upstream import ServerConnection, cancel_query, open_server_connection
from tcpworkers.scope._trust import trusted_connections

__all__ = ["CheckResult", "PostgresBinding", "check_upstream"]

_log = logging.getLogger("tcpworkers.pool")
# The port in the socket's name (.s.PGSQL.5432): PostgreSQL's default, so tools that assume
# it (psql -h DIR) work too.
SOCKET_PORT: Final = 5432
# Background retries of the pool's start when the database was unreachable: 0.5 s doubling to 10 s.
_RETRY_FIRST: Final = 0.5
_RETRY_MAX: Final = 10.0
# How long stop() lets clients finish before their connections are closed.
_STOP_GRACE: Final = 2.0


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What ``tcpworkers check`` learned by opening one server connection."""

    address: str
    server_version: str
    auth_method: str
    tls: str | None


async def check_upstream(params: UpstreamParams) -> CheckResult:
    """Open one server connection, note what it is, close it.

    Raises:
        UpstreamError: what failed, naming the server and user.
    """
    conn = await open_server_connection(params)
    try:
        return CheckResult(params.address, conn.server_version, conn.auth_method, conn.tls)
    finally:
        await conn.close()


@final
class PostgresBinding:
    """``env.NAME`` for a ``[bindings.NAME] type = "postgres"``: the fields a Cloudflare
    Hyperdrive binding has (``connection_string``, ``host``, ``port``, ``user``, ``password``,
    ``database``), served by a pool of server connections to ``upstream``.

    Args:
        name: the binding's name (``DB``), used in metrics and messages.
        upstream: where the server connections go (a parsed ``url``).
        settings: the pool's sizes and timeouts.
        socket_dir: the parent of the private socket directory (default: the system's temp).
        in_process: serve asyncio drivers on the gated loop in-process (``_inprocess``);
            False makes them use the unix socket like libpq (for comparisons and tests).
    """

    def __init__(
        self,
        name: str,
        upstream: UpstreamParams,
        settings: PoolSettings,
        *,
        socket_dir: str | None = None,
        in_process: bool = True,
    ) -> None:
        self.name = name
        self.upstream = upstream
        self.settings = settings
        self._parent = socket_dir
        self._secret = secrets.token_urlsafe(24)
        self._dir: str | None = None
        self._server: asyncio.AbstractServer | None = None
        self._pool: Pool | None = None
        # Each client connection's serving task -> how to cut it off (stop()).
        self._clients: dict[asyncio.Task[None], Callable[[], None]] = {}
        self._context: contextvars.Context | None = None  # the runtime's, for in-process tasks
        self.in_process = in_process
        self.connections_accepted = 0  # on the unix socket
        self.connections_in_process = 0
        self._stopping = False
        self._retry: asyncio.Task[None] | None = None
        self._dsn: tuple[str, str] | None = None  # (host, connection string)
        self._path: tuple[str, str] | None = None  # (host, socket path)

    # -- what the worker sees -------------------------------------------------------------------

    @property
    def connection_string(self) -> str:
        """``postgresql://USER:SECRET@/DATABASE?host=DIR&port=5432`` (for every driver)."""
        host = self.host  # raises before start
        cached = self._dsn
        if cached is None or cached[0] != host:  # made once per start, read per request
            dsn = (
                f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}@/"
                f"{quote(self.database, safe='')}?host={quote(host, safe='/')}&port={self.port}"
            )
            cached = self._dsn = (host, dsn)
        return cached[1]

    @property
    def connectionString(self) -> str:  # the Workers API spells it in camelCase
        """``connection_string`` under the name Cloudflare's Workers use
        (``env.HYPERDRIVE.connectionString``), so ported code runs unchanged."""
        return self.connection_string

    @property
    def host(self) -> str:
        """The socket directory (what libpq calls ``host`` for unix sockets)."""
        if self._dir is None:
            raise RuntimeError(
                f"env.{self.name} is not started yet; use it while handling a request"
            )
        return self._dir

    @property
    def port(self) -> int:
        return SOCKET_PORT

    @property
    def user(self) -> str:
        """The upstream user's name (the pool logs in as that user)."""
        return self.upstream.user

    @property
    def password(self) -> str:
        """The per-process secret the binding's socket accepts (not the upstream password)."""
        return self._secret

    @property
    def database(self) -> str:
        return self.upstream.database

    @property
    def socket_path(self) -> str:
        host = self.host
        cached = self._path
        if cached is None or cached[0] != host:
            cached = self._path = (host, os.path.join(host, f".s.PGSQL.{self.port}"))
        return cached[1]

    def stats(self) -> PoolStats | None:
        """The pool's counters, or None before start."""
        return None if self._pool is None else self._pool.stats()

    def __repr__(self) -> str:
        state = "stopped" if self._server is None else self.socket_path
        return f"<PostgresBinding {self.name} -> {self.upstream.address} ({state})>"

    # -- life (the runtime calls these outside any request) -------------------------------------

    async def start(self) -> None:
        """Start the pool, then listen on the private socket.

        A database that cannot be reached (or is starting up) does not stop the runtime from
        starting: the binding logs a warning, serves anyway (clients get an error naming the
        binding and the server until it is back) and keeps trying to open ``min_size``
        connections in the background. Rejected credentials do stop it (a configuration error).

        Raises:
            UpstreamAuthError: the server rejected the url's user or password.
        """
        if self._server is not None:
            return
        self._stopping = False
        with trusted_connections():  # the runtime's own listener and upstream
            pool = Pool(self.name, self.settings, self._connect, self._cancel)
            try:
                await pool.start()
            except (UpstreamConnectError, UpstreamServerError) as exc:
                _log.warning(
                    "pool binding %s: could not open its first server connections (%s); "
                    "serving anyway and retrying in the background",
                    self.name,
                    exc,
                )
                self._retry = asyncio.create_task(self._start_later(pool))
            except BaseException:
                await pool.close()  # what it opened before the failure
                raise
            self._pool = pool
            try:
                self._dir = await asyncio.to_thread(self._make_dir)
                self._server = await asyncio.start_unix_server(self._on_client, self.socket_path)
            except BaseException:
                await self.stop()
                raise
            self._context = contextvars.copy_context()  # trusted: not any request's
        register_local_endpoint(
            self.socket_path, self._connect_in_process if self.in_process else None
        )

    def _make_dir(self) -> str:
        """A new private directory (mkdtemp: mode 0700) named after this process, after
        removing those that processes which no longer exist left behind (killed, not stopped)."""
        parent = self._parent or tempfile.gettempdir()
        stem = f"tcpworkers-{self.name}-"
        with contextlib.suppress(OSError):
            for entry in os.scandir(parent):
                pid = entry.name[len(stem) :].partition("-")[0]
                if (
                    entry.name.startswith(stem)
                    and pid.isdigit()
                    and not _alive(int(pid))
                    and entry.is_dir(follow_symlinks=False)
                    and entry.stat().st_uid == os.getuid()
                ):
                    shutil.rmtree(entry.path, ignore_errors=True)
        return tempfile.mkdtemp(prefix=f"{stem}{os.getpid()}-", dir=parent)

    async def _start_later(self, pool: Pool) -> None:
        delay = _RETRY_FIRST
        while True:
            await asyncio.sleep(delay)
            try:
                await pool.start()
            except (UpstreamConnectError, UpstreamServerError):
                delay = min(delay * 2, _RETRY_MAX)
                continue
            except Exception:
                _log.exception("pool binding %s: starting the pool failed", self.name)
                return
            _log.info("pool binding %s: server connections open", self.name)
            return

    async def stop(self) -> None:
        """Stop listening, end client connections, close the pool, remove the directory."""
        self._stopping = True
        retry, self._retry = self._retry, None
        if retry is not None:
            retry.cancel()
            await asyncio.gather(retry, return_exceptions=True)
        server, self._server = self._server, None
        if self._dir is not None:
            unregister_local_endpoint(self.socket_path)
        if server is not None:
            server.close()
        if self._clients:
            # Closing a client's connection ends its serve_client (its server connection goes
            # back to the pool, rolled back); what does not end in time is cancelled.
            for abort in self._clients.values():
                abort()
            _done, pending = await asyncio.wait(list(self._clients), timeout=_STOP_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), _STOP_GRACE)
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()
        directory, self._dir = self._dir, None
        if directory is not None:
            await asyncio.to_thread(shutil.rmtree, directory, True)

    async def _connect_in_process(
        self, protocol_factory: Callable[[], asyncio.BaseProtocol]
    ) -> tuple[asyncio.Transport, asyncio.BaseProtocol]:
        """The gated loop's door to this binding for asyncio drivers: a transport pair served
        by the pooler in this process (see ``_inprocess``), where a socket would be."""
        if self._server is None or self._context is None or self._stopping:
            raise ConnectionRefusedError(
                errno.ECONNREFUSED, f"pool binding {self.name} is not serving"
            )
        loop = asyncio.get_running_loop()
        protocol = protocol_factory()
        transport, end = open_pipe(loop, protocol, self.socket_path)
        # Served in the runtime's context, not the request's: the pool's server connections
        # are not the request's (its policy, its socket limit).
        task = loop.create_task(self._serve(end, end, None), context=self._context.copy())
        self._clients[task] = end.abort
        self.connections_in_process += 1
        protocol.connection_made(transport)
        return transport, protocol

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients[task] = writer.transport.abort
        self.connections_accepted += 1
        await self._serve(reader, writer, self._secret)

    async def _serve(
        self, reader: ClientReader, writer: ClientWriter, password: str | None
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        assert self._pool is not None
        try:
            await serve_client(
                reader,
                writer,
                self._pool,
                user=self.user,
                database=self.database,
                password=password,
            )
        except asyncio.CancelledError:
            # stop() cancels what did not end in time; this is the connection's own task
            # (asyncio's stream server would log a cancelled one), so end quietly then.
            if not self._stopping:
                raise
        except Exception:
            # serve_client answers client and server failures itself: what escapes it is a bug.
            # Log it with the binding's name; the client's connection is closed below.
            _log.exception("pool binding %s: serving a client connection failed", self.name)
        finally:
            self._clients.pop(task, None)
            if not writer.is_closing():
                writer.close()

    async def _connect(self) -> ServerConnection:
        return await open_server_connection(self.upstream)

    async def _cancel(self, backend_pid: int, backend_secret: int) -> None:
        await cancel_query(self.upstream, backend_pid, backend_secret)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True
