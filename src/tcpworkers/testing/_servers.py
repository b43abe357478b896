"""Loopback servers for tests: a byte echo (plain or TLS) and a line-based STARTTLS echo.

Theory of operation: the listener accepts sockets itself and wraps each one with
``loop.connect_accepted_socket`` and an :class:`_EchoProtocol`; for a TLS ``EchoServer`` that
call runs the server-side handshake. The connection is recorded when the socket is accepted, so
the server also sees connections whose handshake fails (``tls_error``). (``create_server(ssl=)``
would hide those; and upgrading a plain transport from ``connection_made`` is racy on uvloop,
which starts reading after ``connection_made`` returns, even if the protocol paused reading.)

``StartTlsServer`` upgrades with ``loop.start_tls`` after the ``STARTTLS`` line. Reading is
paused in the same callback that writes ``GO``, so the ClientHello (which the client sends only
after reading ``GO``) cannot be read as plaintext. ``start_tls`` hands decrypted data to the
protocol as soon as the handshake completes, which can be before the coroutine awaiting it
resumes with the new transport; the protocol buffers such early data and echoes it then.

Echo uses write flow control: when the client does not read, the server stops reading, so a
client that only writes eventually blocks, as against a real peer. The same code runs on the
stdlib loop and on uvloop.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import socket
import ssl as _ssl
from typing import Any, ClassVar, Generic, TypeVar, cast, final

from tcpworkers.testing._listener import LoopbackListener

__all__ = ["EchoServer", "ServerConnection", "StartTlsConnection", "StartTlsServer"]

# A client that connects and never completes the TLS handshake is dropped after this long.
_HANDSHAKE_TIMEOUT = 10.0

_READY = b"READY\n"
_STARTTLS = b"STARTTLS\n"
_GO = b"GO\n"


class _ConnectionRecord:
    """What a server observed of one connection (shared by both record types)."""

    def __init__(self, peer: tuple[Any, ...]) -> None:
        self.peer = peer
        self.bytes_received = 0
        self.closed = asyncio.Event()
        self.eof_received = asyncio.Event()
        self.reset = False
        self.tls_error: OSError | None = None

    def __repr__(self) -> str:
        state = "closed" if self.closed.is_set() else "open"
        return f"<{type(self).__name__} peer={self.peer!r} {state} rx={self.bytes_received}>"


@final
class ServerConnection(_ConnectionRecord):
    """What an :class:`EchoServer` observed of one accepted connection.

    Attributes:
        peer: the client's address as the server saw it, e.g. ``("127.0.0.1", 50123)``.
        bytes_received: application bytes received (decrypted bytes under TLS).
        closed: set when the connection ended other than by the server shutting down: the
            client closed or reset it, or half-closed it and the server then finished echoing
            and closed too (TCP carries nothing more after that), or its TLS handshake failed.
            ``await asyncio.wait_for(conn.closed.wait(), 5)`` proves a client let go.
        eof_received: set when the client sent EOF (a TCP FIN, or a TLS close_notify).
        reset: True if the connection ended with an error such as ``ConnectionResetError``.
        tls_error: why the TLS handshake failed (for example the client sent no certificate to
            a server that requires one), else ``None``.
    """


@final
class StartTlsConnection(_ConnectionRecord):
    """What a :class:`StartTlsServer` observed of one accepted connection.

    Attributes:
        peer: the client's address as the server saw it.
        bytes_received: application bytes received, plaintext and decrypted TLS together.
        closed: see :class:`ServerConnection`.
        eof_received: see :class:`ServerConnection`.
        reset: see :class:`ServerConnection`.
        tls_error: why the TLS handshake failed, else ``None``.
        upgraded: True once the TLS handshake after ``STARTTLS`` completed.
        plaintext_received: every byte received before the upgrade, the ``STARTTLS`` line
            included, so a test can check what a client flushed before its ClientHello.
    """

    def __init__(self, peer: tuple[Any, ...]) -> None:
        super().__init__(peer)
        self.upgraded = False
        self.plaintext_received = b""


_R = TypeVar("_R", bound=_ConnectionRecord)


class _State(enum.Enum):
    OPENING = enum.auto()  # accepted; transport (and TLS handshake, for EchoServer) pending
    LINES = enum.auto()  # StartTlsServer before STARTTLS: echo complete lines
    UPGRADING = enum.auto()  # TLS handshake in progress
    ECHO = enum.auto()  # echo raw bytes (plain TCP, or TLS after the handshake)
    GONE = enum.auto()  # connection lost


class _RecordingServer(LoopbackListener, Generic[_R]):
    """Shared part of both servers: connection records, waiters and shutdown."""

    _starttls: ClassVar[bool]

    def __init__(self, host: str, ssl: _ssl.SSLContext | None) -> None:
        super().__init__(host)
        if ssl is not None and not isinstance(ssl, _ssl.SSLContext):
            raise TypeError(
                f"ssl must be an ssl.SSLContext (see TestCA.server_context()), "
                f"got {type(ssl).__name__}"
            )
        self._ssl = ssl
        self.connections: list[_R] = []
        """Every connection accepted so far, in accept order."""
        self._live: set[_EchoProtocol[_R]] = set()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def accepted(self) -> int:
        """How many TCP connections the server has accepted."""
        return len(self.connections)

    async def wait_for_connections(self, n: int, timeout: float = 5.0) -> list[_R]:  # noqa: ASYNC109
        """Wait until the server has accepted at least ``n`` connections.

        Args:
            n: how many accepted connections to wait for (counted since the server started).
            timeout: seconds to wait.

        Returns:
            The first ``n`` connection records.

        Raises:
            TimeoutError: fewer than ``n`` connections arrived within ``timeout`` seconds.
        """
        if len(self.connections) < n:
            waiter = asyncio.get_running_loop().create_future()
            entry = (n, waiter)
            self._waiters.append(entry)
            try:
                async with asyncio.timeout(timeout):
                    await waiter
            except TimeoutError:
                raise TimeoutError(
                    f"{type(self).__name__} accepted {len(self.connections)} connection(s), "
                    f"not {n}, within {timeout} s"
                ) from None
            finally:
                self._waiters.remove(entry)
        return self.connections[:n]

    @abc.abstractmethod
    def _new_record(self, peer: tuple[Any, ...]) -> _R:
        """Return the record for a connection from ``peer``."""

    def _on_accept(self, sock: socket.socket) -> None:
        try:
            peer = tuple(sock.getpeername())
        except OSError:  # the client is already gone (reset before we accepted)
            sock.close()
            return
        record = self._new_record(peer)
        protocol = _EchoProtocol(self, record, self._ssl, starttls=self._starttls)
        self._live.add(protocol)
        self.connections.append(record)
        for n, waiter in self._waiters:
            if len(self.connections) >= n and not waiter.done():
                waiter.set_result(None)
        self._spawn(protocol.open(sock))

    def _unregister(self, protocol: _EchoProtocol[_R]) -> None:
        self._live.discard(protocol)

    def _abort_connections(self) -> list[asyncio.Future[None]]:
        waits: list[asyncio.Future[None]] = []
        for protocol in list(self._live):
            waits.extend(protocol.abort())
        return waits


@final
class EchoServer(_RecordingServer[ServerConnection]):
    """A loopback server that echoes every byte it receives, over plain TCP or TLS.

    When the client half-closes, the server writes what it still has to echo and then closes
    (a FIN; under TLS a close_notify). Every accepted connection is recorded in
    :attr:`connections`.

    Example::

        async with EchoServer() as srv:
            reader, writer = await asyncio.open_connection(srv.host, srv.port)
            writer.write(b"ping")
            assert await reader.readexactly(4) == b"ping"
            writer.close()
            (conn,) = await srv.wait_for_connections(1)
            await asyncio.wait_for(conn.closed.wait(), 5)

    Args:
        host: loopback address to bind, ``"127.0.0.1"`` or ``"::1"``.
        ssl: a server-side context (see :meth:`TestCA.server_context`) to serve TLS.
    """

    _starttls = False

    def __init__(self, *, host: str = "127.0.0.1", ssl: _ssl.SSLContext | None = None) -> None:
        super().__init__(host, ssl)

    def _new_record(self, peer: tuple[Any, ...]) -> ServerConnection:
        return ServerConnection(peer)


@final
class StartTlsServer(_RecordingServer[StartTlsConnection]):
    """A line-based plaintext server that upgrades to TLS on ``STARTTLS``, for opportunistic TLS.

    The dialog, as in SMTP or Postgres: on connect the server sends ``b"READY\\n"``; in
    plaintext it echoes each complete line; on the line ``b"STARTTLS\\n"`` it answers
    ``b"GO\\n"`` and starts a server-side TLS handshake. After the handshake it echoes raw bytes
    and handles EOF like :class:`EchoServer`. A client must read ``GO`` before sending its
    ClientHello; bytes that arrive together with the ``STARTTLS`` line (the client did not
    wait) end the connection, and they are kept in ``plaintext_received`` to show why.

    Args:
        ssl: the server-side context for the upgrade (see :meth:`TestCA.server_context`).
        host: loopback address to bind, ``"127.0.0.1"`` or ``"::1"``.
    """

    _starttls = True

    def __init__(self, ssl: _ssl.SSLContext, *, host: str = "127.0.0.1") -> None:
        if ssl is None:
            raise TypeError("StartTlsServer needs an ssl.SSLContext to upgrade connections with")
        super().__init__(host, ssl)

    def _new_record(self, peer: tuple[Any, ...]) -> StartTlsConnection:
        return StartTlsConnection(peer)


class _EchoProtocol(asyncio.Protocol, Generic[_R]):
    """One server-side connection: plaintext lines, TLS upgrade, then raw echo."""

    def __init__(
        self,
        server: _RecordingServer[_R],
        record: _R,
        ssl: _ssl.SSLContext | None,
        *,
        starttls: bool,
    ) -> None:
        self.record = record
        self._server = server
        self._ssl = ssl
        self._starttls = starttls
        self._state = _State.OPENING
        self._sock: socket.socket | None = None
        self._transport: asyncio.Transport | None = None
        self._lines = bytearray()
        self._early: list[bytes] = []
        self._gone: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def open(self, sock: socket.socket) -> None:
        """Wrap the accepted socket in a transport (doing the TLS handshake for EchoServer)."""
        self._sock = sock
        loop = asyncio.get_running_loop()
        try:
            if self._ssl is not None and not self._starttls:
                await loop.connect_accepted_socket(
                    lambda: self, sock, ssl=self._ssl, ssl_handshake_timeout=_HANDSHAKE_TIMEOUT
                )
            else:
                await loop.connect_accepted_socket(lambda: self, sock)
        except OSError as exc:  # ssl.SSLError, ConnectionResetError, handshake timeout
            if self._ssl is not None and not self._starttls:
                self.record.tls_error = exc
            self._finish(reset=isinstance(exc, ConnectionResetError))

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        if self._server._shutting_down:
            self._transport.abort()
        elif self._starttls:
            self._state = _State.LINES
            self._transport.write(_READY)
        else:
            self._state = _State.ECHO

    def data_received(self, data: bytes) -> None:
        self.record.bytes_received += len(data)
        if self._state is _State.ECHO:
            assert self._transport is not None
            self._transport.write(data)
        elif self._state is _State.LINES:
            self._on_plaintext(data)
        elif self._state is _State.UPGRADING:
            self._early.append(data)  # decrypted before start_tls() returned; echoed after

    def eof_received(self) -> bool | None:
        self.record.eof_received.set()
        if self._state is _State.LINES and self._lines:
            assert self._transport is not None
            self._transport.write(bytes(self._lines))  # echo an unterminated last line too
            self._lines.clear()
        # Returning a false value makes the transport close itself once the pending echo has
        # been written: a FIN for TCP, close_notify then FIN for TLS.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        # ECONNRESET while reading, EPIPE while echoing: either way the client reset it.
        self._finish(reset=isinstance(exc, (ConnectionResetError, BrokenPipeError)))

    def pause_writing(self) -> None:
        if self._transport is not None and self._state in (_State.ECHO, _State.LINES):
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and self._state in (_State.ECHO, _State.LINES):
            self._transport.resume_reading()

    # -- internals --------------------------------------------------------------------------

    def _on_plaintext(self, data: bytes) -> None:
        assert self._transport is not None
        assert isinstance(self.record, StartTlsConnection)
        self.record.plaintext_received += data
        self._lines += data
        while (end := self._lines.find(b"\n")) >= 0:
            line = bytes(self._lines[: end + 1])
            del self._lines[: end + 1]
            if line != _STARTTLS:
                self._transport.write(line)
                continue
            self._transport.write(_GO)
            if self._lines:
                # The client sent more (probably its ClientHello) without waiting for GO.
                self._transport.abort()
                return
            self._begin_upgrade()
            return

    def _begin_upgrade(self) -> None:
        assert self._transport is not None
        self._state = _State.UPGRADING
        # start_tls() pauses reading too, but only once the task runs; pausing now keeps the
        # ClientHello from being read as plaintext in between.
        self._transport.pause_reading()
        self._server._spawn(self._upgrade())

    async def _upgrade(self) -> None:
        assert self._transport is not None
        assert self._ssl is not None
        raw = self._transport
        loop = asyncio.get_running_loop()
        try:
            tls = await loop.start_tls(
                raw, self, self._ssl, server_side=True, ssl_handshake_timeout=_HANDSHAKE_TIMEOUT
            )
        except OSError as exc:  # ssl.SSLError, ConnectionResetError, handshake timeout
            self.record.tls_error = exc
            raw.abort()
            self._finish(reset=isinstance(exc, ConnectionResetError))
            return
        if tls is None or tls.is_closing():
            # The connection was lost (or aborted by aclose()) as the handshake ended.
            raw.abort()
            self._finish(reset=False)
            return
        self._transport = tls
        self._state = _State.ECHO
        if isinstance(self.record, StartTlsConnection):
            self.record.upgraded = True
        early, self._early = b"".join(self._early), []
        if early:
            tls.write(early)

    def _finish(self, *, reset: bool) -> None:
        if self._state is _State.GONE:
            return
        self._state = _State.GONE
        self.record.reset = reset
        if not self._server._shutting_down:
            self.record.closed.set()
        self._server._unregister(self)
        self._gone.set_result(None)

    def abort(self) -> list[asyncio.Future[None]]:
        """End the connection now (server shutdown); return what to wait for."""
        if self._state is _State.GONE:
            return []
        if self._transport is not None:
            # During a STARTTLS handshake this is the plain transport: start_tls() then fails
            # or returns a closed transport, and _upgrade() finishes the connection.
            self._transport.abort()
        elif self._sock is not None:
            # The TLS handshake of connect_accepted_socket() is running: make it fail now.
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
        return [self._gone]
