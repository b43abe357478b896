"""The one exception hierarchy of tcpworkers.

Everything tcpworkers raises on purpose derives from :class:`TcpworkersError`. Socket errors
follow trio's split of "who broke it": *Closed* (you closed it), *Broken* (the peer or the network
broke it, the OS error kept as ``__cause__``) and *Busy* (two tasks used one direction at once).
Errors that stand for a failed network operation are also the builtin exception that code written
against plain sockets already catches (``OSError``, ``TimeoutError``, ``ConnectionError``,
``EOFError``), so ``except OSError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "ConnectError",
    "ConnectNotAllowedError",
    "CrossRequestError",
    "ConnectTimeoutError",
    "EgressDeniedError",
    "FetchError",
    "FetchTimeoutError",
    "IncompleteReadError",
    "LocalPostgresError",
    "ReadLimitError",
    "ScopeClosedError",
    "SocketBrokenError",
    "SocketBusyError",
    "SocketClosedError",
    "SocketLimitError",
    "SocketError",
    "StartTlsError",
    "TLSHandshakeError",
    "TcpworkersError",
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


# -- tcpworkers.localpg: the local PostgreSQL launcher (demo, tests)


class LocalPostgresError(TcpworkersError):
    """A local PostgreSQL cluster could not be initialised, started or stopped.

    The message says which step failed, quotes the server's log, and what to do.
    """
