"""The one exception hierarchy of tcpworkers.

Everything tcpworkers raises on purpose derives from :class:`TcpworkersError`. Socket errors
follow trio's split of "who broke it": *Closed* (you closed it), *Broken* (the peer or the network
broke it, the OS error kept as ``__cause__``) and *Busy* (two tasks used one direction at once).
Errors that stand for a failed network operation are also the builtin exception that code written
against plain sockets already catches (``OSError``, ``TimeoutError``, ``ConnectionError``,
``EOFError``), so ``except OSError`` keeps working.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "BodyTooLargeError",
    "BodyUsedError",
    "ClientDisconnectedError",
    "ConfigError",
    "ConnectError",
    "ConnectNotAllowedError",
    "CrossRequestError",
    "DsnError",
    "ConnectTimeoutError",
    "EgressDeniedError",
    "FetchError",
    "FetchTimeoutError",
    "IncompleteReadError",
    "LocalPostgresError",
    "PgProtocolError",
    "PoolClosedError",
    "PoolError",
    "PoolStateError",
    "PoolTimeoutError",
    "ReadLimitError",
    "ScopeClosedError",
    "SocketBrokenError",
    "ServerNotFoundError",
    "SocketBusyError",
    "SocketClosedError",
    "SocketLimitError",
    "SocketError",
    "StartTlsError",
    "TLSHandshakeError",
    "TcpworkersError",
    "WorkerLoadError",
    "UpstreamAuthError",
    "UpstreamConnectError",
    "UpstreamError",
    "UpstreamServerError",
    "UnmanagedSocketError",
]


class TcpworkersError(Exception):
    """Root of every error tcpworkers raises on purpose."""


class SocketError(TcpworkersError):
    """Root of the errors raised by :class:`tcpworkers.Socket` and :func:`tcpworkers.connect`."""


class ConnectError(SocketError, OSError):
    """The connection never opened: refused, unreachable, unknown name, timed out, TLS failed.

    Raised by awaiting ``Socket.opened`` and ``Socket.closed``; never by ``connect()`` itself.
    """


class ConnectTimeoutError(ConnectError, TimeoutError):
    """``connect_timeout`` elapsed before the connection (and any TLS handshake) completed."""


class TLSHandshakeError(ConnectError):
    """The TLS handshake failed: unknown CA, wrong hostname, expired certificate, protocol error."""


class EgressDeniedError(ConnectError):
    """The egress policy permits none of the addresses the name resolved to."""


class SocketLimitError(ConnectError):
    """The request already has its maximum of open connections and none closed in time."""


class ScopeClosedError(ConnectError):
    """The request that would own this connection has ended."""


class ConnectNotAllowedError(SocketError, RuntimeError):
    """Connections cannot be opened here at all (e.g. while a worker module is imported)."""


class CrossRequestError(SocketError, RuntimeError):
    """A socket was used by a request other than the one that opened it."""


class SocketClosedError(SocketError):
    """This side closed the socket (or its write side), or upgraded it with start_tls()."""


class SocketBrokenError(SocketError, ConnectionError):
    """The peer or the network broke the connection mid-stream (reset, timeout, TLS error).

    The underlying ``OSError`` or ``ssl.SSLError`` is kept as ``__cause__``.
    """


class SocketBusyError(SocketError):
    """Two tasks read (or wrote) one socket at the same time; one direction serves one task."""


class StartTlsError(SocketError):
    """``start_tls()`` cannot be called: wrong ``secure_transport``, or it was already called."""


class IncompleteReadError(SocketError, EOFError):
    """The stream ended before ``readexactly()``/``readuntil()`` got what it asked for.

    Attributes:
        partial: the bytes that were read before the end of the stream.
        expected: the number of bytes asked for (``None`` for ``readuntil()``).
    """

    def __init__(self, partial: bytes, expected: int | None) -> None:
        wanted = "the separator" if expected is None else f"{expected} bytes"
        super().__init__(f"stream ended after {len(partial)} bytes, before {wanted}")
        self.partial = partial
        self.expected = expected

    def __reduce__(self) -> tuple[type[IncompleteReadError], tuple[bytes, int | None]]:
        return type(self), (self.partial, self.expected)


class ReadLimitError(SocketError, ValueError):
    """``readuntil()`` found no separator within ``limit`` bytes; the data stays buffered."""


class FetchError(TcpworkersError):
    """The HTTP exchange failed after the connection opened: the server broke the protocol (or
    closed the connection without a response), too many redirects, a redirect to a URL that
    cannot be fetched, or a response that cannot be represented.

    Failures to open a connection are the ``ConnectError`` family instead (``EgressDeniedError``,
    ``ConnectTimeoutError``, ``TLSHandshakeError``, ...), and a connection reset mid-exchange
    is ``SocketBrokenError``, exactly as for ``connect()``.
    """


class FetchTimeoutError(FetchError, TimeoutError):
    """A read or write of the HTTP exchange made no progress within ``timeout`` seconds."""


# -- the runtime: workers, request and response bodies, configuration -------------------------


class WorkerLoadError(TcpworkersError, ValueError):
    """The worker could not be found or has no handler of an accepted shape."""


class BodyUsedError(TcpworkersError, RuntimeError):
    """The body was already read (a body can be consumed once), or was discarded."""


class BodyTooLargeError(TcpworkersError, ValueError):
    """``bytes()``/``text()``/``json()`` refused a body larger than their ``max_size``.

    Uncaught in a handler, it becomes a ``413 Content Too Large`` response.

    Attributes:
        max_size: the limit that was exceeded, in bytes.
        status: 413, the HTTP status that reports this to a client.
    """

    status: Final = 413

    def __init__(self, message: str, max_size: int) -> None:
        super().__init__(message)
        self.max_size = max_size


class ClientDisconnectedError(TcpworkersError, ConnectionError):
    """The client went away while its request body was being read."""


class ConfigError(TcpworkersError, ValueError):
    """The configuration is invalid; the message names the file, the key and the fix.

    Attributes:
        path: the file the problem is in (as shown in the message), or ``None`` for problems
            that come from the command line.
        key: the dotted key (``"limits.max_sockets"``), or ``None`` when the problem is not
            about one key (a missing file, invalid TOML).
    """

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None) -> None:
        super().__init__(message)
        self.path = path
        self.key = key


# -- internal control flow (never reaches user code) ------------------------------------------


class ClientGone(Exception):
    """Internal: the server's ``send`` raised ``OSError``: the client is gone (ASGI spec 2.4).

    Not exported: the runtime catches it around every ``send`` to the ASGI server.
    """


# -- pool: the Postgres pooler core (tcpworkers.pool: _wire, _pool, _relay) ------------------------
# What the pooler raises itself. A driver talking to the pooler sees these as PostgreSQL
# ErrorResponses (with a SQLSTATE), never as Python exceptions.


class PoolError(TcpworkersError):
    """Root of the errors of the pooler core."""


class PgProtocolError(PoolError, ValueError):
    """Bytes that are not valid PostgreSQL v3 protocol: an unknown message type, a length out of
    bounds, a malformed body. The stream's framing is lost; close the connection."""


class PoolTimeoutError(PoolError, TimeoutError):
    """No server connection became free within ``acquire_timeout``; the message names the
    binding, its ``max_size`` and the setting to raise."""


class PoolClosedError(PoolError):
    """The pool was closed; no more server connections are handed out."""


class PoolStateError(PoolError, RuntimeError):
    """A pooler bug: a connection was asked to make a state transition its table forbids."""


# -- Postgres pool binding: connection strings and server (upstream) connections --------------
# Raised by tcpworkers.pool's _dsn.py and _upstream.py. Upstream errors are ConnectionErrors
# (so OSError): code that handles "the database is unreachable" keeps working.


class DsnError(TcpworkersError, ValueError):
    """A libpq connection string is malformed or uses a parameter the pool does not support.

    The message names the parameter and the fix, never the password.
    """


class UpstreamError(TcpworkersError, ConnectionError):
    """Opening a server connection for a pool failed; the message names the server, the user
    and the step that failed (connect, TLS, authentication, startup).

    Attributes:
        sqlstate: the SQLSTATE of the server's ErrorResponse, ``""`` when there was none.
    """

    def __init__(self, message: str, sqlstate: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate

    def __reduce__(self) -> tuple[type[UpstreamError], tuple[str, str]]:
        return type(self), (str(self), self.sqlstate)


class UpstreamConnectError(UpstreamError):
    """The server could not be reached, or TLS could not be set up as ``sslmode`` requires."""


class UpstreamAuthError(UpstreamError):
    """The server rejected the credentials, or asked for an authentication method the pool
    does not implement (only trust, password, md5 and SCRAM-SHA-256 are)."""


class UpstreamServerError(UpstreamError):
    """The server answered the startup with an ErrorResponse (no such database, too many
    connections, shutting down...)."""


# -- tcpworkers.localpg: the local PostgreSQL launcher (demo, tests)


class LocalPostgresError(TcpworkersError):
    """A local PostgreSQL cluster could not be initialised, started or stopped.

    The message says which step failed, quotes the server's log, and what to do.
    """


class ServerNotFoundError(TcpworkersError, FileNotFoundError):
    """A server program the test kit runs (``mariadbd``, ``redis-server``, ...) is not installed,
    or not in a build that can do what was asked (TLS).

    The message names the program and how to get it; the project's tests skip with it.
    """


# -- drivers through the gate (issue 11) --------------------------------------------------------


class UnmanagedSocketError(ConnectNotAllowedError):
    """Inside a request, a driver waited on a network socket it opened itself (libpq under
    psycopg 3), which the gate cannot check, count or close: use the pool binding instead."""
