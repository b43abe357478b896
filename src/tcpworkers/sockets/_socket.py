"""``Socket``: one outbound TCP connection with the Workers ``connect()`` semantics.

Theory of operation. A ``Socket`` is created synchronously by ``connect()`` in the CONNECTING
state, with an opening task that resolves, connects (happy eyeballs) and, for
``secure_transport="on"``, completes the TLS handshake, all under ``connect_timeout``. Its life is
a small state machine (``_State``; allowed moves in ``_TRANSITIONS``, made only by ``_move``):

    CONNECTING -> OPEN | FAILED | CLOSED | UPGRADED
    OPEN       -> ENDED | CLOSED | UPGRADED
    ENDED      -> CLOSED

ENDED means the transport went away on its own (the peer finished, or reset): reads still return
what was buffered, then ``b""`` (or raise ``SocketBrokenError`` after a reset). CLOSED means *we*
closed it: reads and writes raise ``SocketClosedError``. UPGRADED means ``start_tls()`` handed the
connection to a new ``Socket``. FAILED means it never opened: ``opened``, ``closed`` and any
read or write raise the same ``ConnectError``.

STARTTLS: ``start_tls()`` moves this socket to UPGRADED and returns a new ``Socket`` whose opening
task waits for this one to open (so writes queued before the upgrade are flushed in plaintext
first, in order, since the transport's buffer is FIFO), then runs ``loop.start_tls`` on the same
transport. Plaintext received but not read before the upgrade is discarded: it arrived before the
TLS session and must not be mistaken for protected data (the STARTTLS injection class of bugs,
CVE-2011-0411).
"""

from __future__ import annotations

import asyncio
import enum
import ssl
import sys
import time
from collections.abc import AsyncIterator, Generator
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Generic, Literal, TypeVar, final

from tcpworkers.egress import default_policy
from tcpworkers.errors import (
    ConnectError,
    CrossRequestError,
    IncompleteReadError,
    ReadLimitError,
    SocketBusyError,
    SocketClosedError,
    StartTlsError,
)
from tcpworkers.scope import RequestScope, current_scope
from tcpworkers.scope._trust import trusted_connections
from tcpworkers.sockets._address import Address, format_hostport
from tcpworkers.sockets._dial import Dialer, system_connect
from tcpworkers.sockets._gate import permitted_targets
from tcpworkers.sockets._protocol import protocol_class_for
from tcpworkers.sockets._translate import broken_error, connect_error

__all__ = [
    "Outcome",
    "ReadableStream",
    "SecureTransport",
    "Socket",
    "SocketInfo",
    "WritableStream",
]

SecureTransport = Literal["off", "on", "starttls"]
T = TypeVar("T")

DEFAULT_READ_SIZE: Final = 65536
# How long close() waits for buffered writes to reach a peer that is not reading before it
# drops them and aborts: close() must end, and a stalled peer must not pin a file descriptor.
# (A module variable, not a constant, so tests can shorten it.)
close_flush_timeout = 5.0


@final
@dataclass(frozen=True, slots=True)
class SocketInfo:
    """What ``Socket.opened`` resolves to.

    Attributes:
        remote_address: the TCP peer actually connected to, ``"ip:port"`` or ``"[v6]:port"``.
        local_address: our end of the connection, in the same form.
        alpn: the ALPN protocol the TLS server selected, or ``None``.
    """

    remote_address: str
    local_address: str
    alpn: str | None = None


class _State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    ENDED = "ended"
    CLOSED = "closed"
    UPGRADED = "upgraded"
    FAILED = "failed"


_TRANSITIONS: Final[dict[_State, frozenset[_State]]] = {
    _State.CONNECTING: frozenset({_State.OPEN, _State.FAILED, _State.CLOSED, _State.UPGRADED}),
    _State.OPEN: frozenset({_State.ENDED, _State.CLOSED, _State.UPGRADED}),
    _State.ENDED: frozenset({_State.CLOSED}),
    _State.CLOSED: frozenset(),
    _State.UPGRADED: frozenset(),
    _State.FAILED: frozenset(),
}


@final
class Outcome(Generic[T]):
    """A one-shot result (``Socket.opened``, ``Socket.closed``) that any number of tasks may
    await, any number of times, like a settled JavaScript promise.

    Awaiting is shielded: cancelling one awaiting task does not cancel the outcome for others.
    A failure nobody awaits is never logged as "exception was never retrieved".
    """

    __slots__ = ("_future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._future: asyncio.Future[T] = loop.create_future()

    def done(self) -> bool:
        """True once the outcome is settled (resolved or rejected)."""
        return self._future.done()

    def resolve(self, value: T) -> None:
        if not self._future.done():
            self._future.set_result(value)

    def reject(self, exc: BaseException) -> None:
        if not self._future.done():
            self._future.set_exception(exc)
            self._future.exception()  # mark retrieved: failure is reported to whoever awaits

    def __await__(self) -> Generator[Any, None, T]:
        if self._future.done():
            return self._future.result()
        return (yield from asyncio.shield(self._future).__await__())


@final
class Socket:
    """An outbound TCP connection, plain or TLS. Create one with :func:`tcpworkers.connect`.

    Attributes:
        readable: the receiving half (``read``, ``readexactly``, ``readuntil``, ``async for``).
        writable: the sending half (``write``, ``close`` for a half-close).
    """

    def __init__(
        self,
        address: Address,
        *,
        secure_transport: SecureTransport,
        allow_half_open: bool,
        tls_context: ssl.SSLContext | None,
        server_hostname: str | None,
        connect_timeout: float,
        high_water_mark: int,
        dialer: Dialer,
        scope: RequestScope | None,
        upgrade_of: Socket | None = None,
    ) -> None:
        """Internal: use :func:`tcpworkers.connect`, which validates every argument."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._address = address
        self._where = str(address)
        self._secure_transport: SecureTransport = secure_transport
        self._tls_context = tls_context
        self._server_hostname = server_hostname
        self._connect_timeout = connect_timeout
        self._high_water_mark = high_water_mark
        self._dialer = dialer
        self._scope = scope  # the request that owns this socket (None outside requests)
        self._upgrade_of = upgrade_of
        self._handshaking = False  # the TLS handshake is running (for error messages)
        self._state = _State.CONNECTING
        self._opened: Outcome[SocketInfo] = Outcome(loop)
        self._closed: Outcome[None] = Outcome(loop)
        self._failure: ConnectError | None = None
        self._transport: asyncio.Transport | None = None
        self._pending: list[bytes] = []  # writes made before the connection opened
        self._pending_size = 0
        self._write_closed = False  # writable.close() was called
        self._reading = False
        self._writing = False
        self.bytes_out = 0
        # TLS cannot be half-open (asyncio's TLS transport ends the session on EOF), so the
        # transport closes itself on EOF for TLS whatever allow_half_open says.
        self._allow_half_open = allow_half_open
        self._protocol = protocol_class_for(loop)(
            keep_open_after_eof=allow_half_open and secure_transport != "on",
            read_high_water=max(high_water_mark, 1),
        )
        self.readable: Final = ReadableStream(self)
        self.writable: Final = WritableStream(self)
        opening = self._open() if upgrade_of is None else self._upgrade_from(upgrade_of)
        self._opening: asyncio.Task[None] | None = loop.create_task(opening)

    # -- public API -------------------------------------------------------------------------

    @property
    def opened(self) -> Outcome[SocketInfo]:
        """Awaitable: ``SocketInfo`` once connected; raises ``ConnectError`` if it never was."""
        return self._opened

    @property
    def closed(self) -> Outcome[None]:
        """Awaitable: ``None`` once the socket is closed; raises ``ConnectError`` if it never
        opened."""
        return self._closed

    @property
    def secure_transport(self) -> SecureTransport:
        """``"off"``, ``"on"`` or ``"starttls"`` (a socket returned by ``start_tls()`` is "on")."""
        return self._secure_transport

    @property
    def upgraded(self) -> bool:
        """True once ``start_tls()`` handed this connection to a new socket."""
        return self._state is _State.UPGRADED

    @property
    def bytes_in(self) -> int:
        """Bytes received from the peer (after TLS decryption)."""
        return self._protocol.bytes_in

    def __repr__(self) -> str:
        return f"<tcpworkers.Socket {self._where} {self._secure_transport} {self._state.value}>"

    async def __aenter__(self) -> Socket:
        await self._opened
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Flush pending writes and close both directions. Idempotent; never raises because
        the connection failed to open (``opened``/``closed`` report that).

        A socket still connecting stops connecting at once. Pending and later reads and writes
        raise ``SocketClosedError``.
        """
        state = self._state
        if state in (_State.FAILED, _State.UPGRADED):
            return
        if state is _State.CLOSED:
            await self._closed
            return
        self._move(_State.CLOSED)
        self._protocol.wake_all()
        if state is _State.CONNECTING:
            await self._abort_opening()
            return
        await self._close_transport()

    def start_tls(self, *, server_hostname: str | None = None) -> Socket:
        """Upgrade this connection to TLS (opportunistic TLS, STARTTLS) and return the TLS socket.

        Writes already made on this socket are sent in plaintext before the handshake. This
        socket becomes ``upgraded`` and closed; use the returned one.

        Args:
            server_hostname: the name to send as SNI and verify; defaults to the connect host
                (or ``TlsOptions.server_hostname``).

        Raises:
            StartTlsError: the socket was not created with ``secure_transport="starttls"``, or
                ``start_tls()`` was already called.
            SocketClosedError: the socket is closed, or its connection ended or never opened.
            SocketBusyError: a read or write is in progress; await it first.
        """
        if self._secure_transport != "starttls":
            raise StartTlsError(
                f"start_tls() needs a socket created with secure_transport='starttls', this one "
                f"has secure_transport={self._secure_transport!r}; pass "
                "secure_transport='starttls' to connect()"
            )
        if self._state is _State.UPGRADED:
            raise StartTlsError(
                "start_tls() was already called on this socket; use the socket it returned"
            )
        if self._state is not _State.OPEN and self._state is not _State.CONNECTING:
            raise self._closed_error("start_tls()")
        if self._reading or self._writing:
            raise SocketBusyError(
                "start_tls() cannot run while a read or write is in progress; await it first"
            )
        if server_hostname is not None and not isinstance(server_hostname, str):
            raise TypeError("server_hostname must be a str")
        self._check_owner()
        self._move(_State.UPGRADED)
        tls = Socket(
            self._address,
            secure_transport="on",
            allow_half_open=self._allow_half_open,
            tls_context=self._tls_context,
            server_hostname=server_hostname or self._server_hostname,
            connect_timeout=self._connect_timeout,
            high_water_mark=self._high_water_mark,
            dialer=self._dialer,
            scope=self._scope,
            upgrade_of=self,
        )
        if self._scope is not None:
            self._scope.hand_over(self, tls)  # same connection: the slot moves with it
        self._closed.resolve(None)
        return tls

    # -- opening ----------------------------------------------------------------------------

    async def _open(self) -> None:
        scope = self._scope
        started = time.perf_counter()
        try:
            if scope is not None:
                await scope.acquire(self)  # waits for a free slot; not part of connect_timeout
                started = time.perf_counter()
            async with asyncio.timeout(self._connect_timeout):
                transport = await self._connect()
        except asyncio.CancelledError:
            if self._state is _State.CLOSED:
                return  # close() aborted the attempt and already reported it
            raise
        except Exception as exc:
            self._fail(
                connect_error(
                    exc, self._where, timeout=self._connect_timeout, during_tls=self._handshaking
                )
            )
            return
        finally:
            if scope is not None:
                scope.record_connect(time.perf_counter() - started)
        self._on_open(transport)

    async def _connect(self) -> asyncio.Transport:
        dialer = self._dialer
        host, port = self._address
        policy = self._scope.policy if self._scope is not None else default_policy()
        targets = await permitted_targets(dialer, policy, host, port, self._scope)
        # The gate has decided: on a gated loop, create_connection must not gate (and count)
        # this connection a second time.
        with trusted_connections():
            plain = self._secure_transport != "on"
            if plain and len(targets) == 1 and dialer.connect is system_connect:
                # One permitted address and the system connector: let the loop connect to that
                # very IP literal itself (no lookup happens for a literal); on uvloop this is
                # ~60 us cheaper than sock_connect + create_connection(sock=).
                target = targets[0]
                transport, _ = await self._loop.create_connection(
                    lambda: self._protocol, target.ip, target.sockaddr[1]
                )
                return transport
            sock = await dialer.connect_first(targets)
            try:
                if self._secure_transport == "on":
                    self._handshaking = True
                    transport, _ = await self._loop.create_connection(
                        lambda: self._protocol,
                        sock=sock,
                        ssl=self._tls_context,
                        server_hostname=self._server_hostname or host,
                        ssl_handshake_timeout=self._connect_timeout,
                    )
                else:
                    transport, _ = await self._loop.create_connection(
                        lambda: self._protocol, sock=sock
                    )
            except BaseException:
                sock.close()
                raise
        return transport

    async def _upgrade_from(self, plain: Socket) -> None:
        try:
            async with asyncio.timeout(self._connect_timeout):
                await plain._opened
                transport = plain._transport
                assert transport is not None
                assert self._tls_context is not None
                if plain._protocol.lost:
                    raise ConnectionResetError("the connection closed before the TLS upgrade")
                plain._protocol.buffer.clear()  # see the module docstring: never trust it
                self._handshaking = True
                tls_transport = await self._loop.start_tls(
                    transport,
                    self._protocol,
                    self._tls_context,
                    server_hostname=self._server_hostname or self._address.host,
                    ssl_handshake_timeout=self._connect_timeout,
                )
        except asyncio.CancelledError:
            plain._abandon()
            if self._state is _State.CLOSED:
                return
            raise
        except ConnectError as exc:
            self._fail(exc)  # the plaintext connection never opened: same error here
            return
        except Exception as exc:
            plain._abandon()
            self._fail(
                connect_error(
                    exc, self._where, timeout=self._connect_timeout, during_tls=self._handshaking
                )
            )
            return
        if tls_transport is None:  # the loop gives None when the transport closed meanwhile
            self._fail(
                connect_error(
                    ConnectionResetError("the connection closed during the TLS handshake"),
                    self._where,
                    timeout=self._connect_timeout,
                )
            )
            return
        self._protocol.connection_made(tls_transport)
        self._on_open(tls_transport)

    def _abandon(self) -> None:
        """Drop the connection of an upgraded socket whose TLS socket failed or was closed."""
        if self._opening is not None:
            self._opening.cancel()
            self._opening = None
        if self._transport is not None:
            self._transport.abort()
        self._opened.reject(
            ConnectError(
                f"connection to {self._where} was abandoned: the TLS "
                "socket start_tls() returned failed or was closed"
            )
        )

    def _on_open(self, transport: asyncio.Transport) -> None:
        self._opening = None
        self._transport = transport
        if self._state is _State.CLOSED:  # defensive: close() won the race, drop the connection
            transport.abort()
            return
        if self._state is not _State.CONNECTING:
            # start_tls() was called while connecting: the upgrade takes the transport over.
            self._flush_pending(transport)
            self._opened.resolve(self._info(transport))
            return
        transport.set_write_buffer_limits(high=self._high_water_mark)
        self._flush_pending(transport)
        if self._write_closed:
            self._send_eof()
        self._move(_State.OPEN)
        self._opened.resolve(self._info(transport))
        if self._protocol.lost:
            self._on_lost()
        else:
            self._protocol.on_lost = self._on_lost

    def _flush_pending(self, transport: asyncio.Transport) -> None:
        if self._pending:
            transport.write(b"".join(self._pending))
            self._pending.clear()
            self._pending_size = 0

    def _info(self, transport: asyncio.Transport) -> SocketInfo:
        ssl_object = transport.get_extra_info("ssl_object")
        alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
        return SocketInfo(
            remote_address=_format_sockaddr(transport.get_extra_info("peername")),
            local_address=_format_sockaddr(transport.get_extra_info("sockname")),
            alpn=alpn,
        )

    def _fail(self, error: ConnectError) -> None:
        self._opening = None
        self._failure = error
        if self._state is _State.CONNECTING:
            self._move(_State.FAILED)
        self._pending.clear()
        self._opened.reject(error)
        self._closed.reject(error)
        self._protocol.wake_all()
        self._release_slot()

    async def _abort_opening(self) -> None:
        error = ConnectError(
            f"connection to {self._where} was aborted: close() was called before it opened"
        )
        self._opened.reject(error)
        self._closed.resolve(None)
        self._pending.clear()
        self._release_slot()
        if self._upgrade_of is not None:
            # The upgrade task may be cancelled before it ever ran: drop the plaintext
            # connection here rather than in its exception handler.
            self._upgrade_of._abandon()
        task, self._opening = self._opening, None
        if task is not None:
            task.cancel()
            # Let the cancellation close the half-open socket before close() returns.
            await asyncio.wait([task])

    def _on_lost(self) -> None:
        if self._state is _State.OPEN:
            self._move(_State.ENDED)
        self._closed.resolve(None)
        self._release_slot()

    def _release_slot(self) -> None:
        if self._scope is not None:
            self._scope.release(self)

    # -- as a scope's resource --------------------------------------------------------------

    def describe(self) -> str:
        """How errors and logs name this socket: ``"socket to db:5432 (tls, open)"``."""
        mode = {"off": "tcp", "on": "tls", "starttls": "starttls"}[self._secure_transport]
        return f"socket to {self._where} ({mode}, {self._state.value})"

    def is_done(self) -> bool:
        """Always False: a socket frees its scope slot itself, the moment it closes."""
        return False

    def abort(self) -> None:
        """Drop the connection at once, without flushing (the scope's last resort)."""
        if self._state in (_State.CONNECTING, _State.OPEN, _State.ENDED):
            self._move(_State.CLOSED)
            self._protocol.wake_all()
        if self._opening is not None:
            self._opening.cancel()
            self._opening = None
        self._opened.reject(ConnectError(f"connection to {self._where} was aborted"))
        if self._transport is not None:
            self._transport.abort()
        self._closed.resolve(None)
        self._release_slot()

    async def _close_transport(self) -> None:
        transport = self._transport
        protocol = self._protocol
        if transport is None or protocol.lost:
            self._closed.resolve(None)
            return
        lost = protocol.lost_future()
        # With nothing left to send, a plain TCP close completes on the next loop pass: skip the
        # timer. Unsent data (a peer that may never read it) and TLS (the close_notify
        # exchange) can stall, so those are bounded by close_flush_timeout.
        bounded = transport.get_write_buffer_size() > 0 or self._secure_transport == "on"
        transport.close()
        try:
            if bounded:
                await asyncio.wait_for(lost, close_flush_timeout)
            else:
                await lost
        except TimeoutError:
            transport.abort()
        except asyncio.CancelledError:
            transport.abort()  # nothing may outlive a cancelled close()
            raise
        finally:
            self._closed.resolve(None)
            self._release_slot()

    # -- state ------------------------------------------------------------------------------

    def _move(self, new: _State) -> None:
        if new not in _TRANSITIONS[self._state]:
            raise AssertionError(f"invalid socket state transition {self._state} -> {new}")
        self._state = new

    def _closed_error(self, action: str) -> Exception:
        """The error for ``action`` on a socket that is not usable in its current state."""
        if self._state is _State.UPGRADED:
            return SocketClosedError(
                f"{action} on a socket that was upgraded with start_tls(); "
                "use the socket start_tls() returned"
            )
        if self._state is _State.FAILED:
            assert self._failure is not None
            return self._failure
        if self._state is _State.ENDED:
            return SocketClosedError(f"{action} on a socket whose connection has ended")
        return SocketClosedError(f"{action} on a closed socket")

    def _check_usable(self, action: str) -> None:
        if self._state is not _State.OPEN and self._state is not _State.CONNECTING:
            raise self._closed_error(action)

    # -- reading ----------------------------------------------------------------------------

    def _check_owner(self) -> None:
        if self._scope is not None and current_scope() is not self._scope:
            raise CrossRequestError(
                f"{self.describe()} belongs to {self._scope.label}, which opened it; a socket "
                "cannot be used by another request. To reuse database connections across "
                "requests, connect through a pool binding (env.DB.connection_string) instead"
            )

    async def _wait_for_data(self, need: int) -> None:
        """Wait until ``need`` bytes are buffered, or the stream ended or broke."""
        if self._reading:
            raise SocketBusyError(
                "another task is already reading from this socket; one "
                "direction serves one task at a time"
            )
        protocol = self._protocol
        self._reading = True
        try:
            if self._state is _State.CONNECTING:
                await self._await_opened()
            while True:
                self._check_readable()
                if protocol.readable_now(need):
                    return
                await protocol.wait_readable(need)
        finally:
            self._reading = False

    async def _await_opened(self) -> None:
        try:
            await self._opened
        except ConnectError:
            if self._state is _State.CLOSED:
                raise self._closed_error("read or write") from None
            raise

    def _check_readable(self) -> None:
        if self._state is not _State.OPEN and self._state is not _State.ENDED:
            raise self._closed_error("read")

    def _raise_if_broken(self) -> None:
        protocol = self._protocol
        if protocol.lost and protocol.lost_exc is not None:
            raise broken_error(protocol.lost_exc, self._where)

    async def _read(self, max_bytes: int) -> bytes:
        self._check_owner()
        protocol = self._protocol
        if self._reading or not (self._state is _State.OPEN and len(protocol.buffer)):
            await self._wait_for_data(1)
        data = protocol.buffer.take(max_bytes)
        if data:
            protocol.consumed()
            return data
        self._raise_if_broken()
        return b""

    async def _readexactly(self, n: int) -> bytes:
        self._check_owner()
        protocol = self._protocol
        if self._reading or not (self._state is _State.OPEN and len(protocol.buffer) >= n):
            await self._wait_for_data(n)
        if len(protocol.buffer) < n:
            self._raise_if_broken()
            raise IncompleteReadError(protocol.buffer.take_exactly(n), n)
        data = protocol.buffer.take_exactly(n)
        protocol.consumed()
        return data

    async def _readuntil(self, sep: bytes, limit: int) -> bytes:
        self._check_owner()
        protocol = self._protocol
        searched = 0
        while True:
            await self._wait_for_data(searched + len(sep))
            index = protocol.buffer.find(sep, max(0, searched - len(sep) + 1))
            if index >= 0:
                end = index + len(sep)
                if end > limit:
                    break
                data = protocol.buffer.take_exactly(end)
                protocol.consumed()
                return data
            searched = len(protocol.buffer)
            if searched >= limit:
                break
            if protocol.eof or protocol.lost:
                self._raise_if_broken()
                raise IncompleteReadError(protocol.buffer.take_exactly(searched), None)
        raise ReadLimitError(
            f"no {sep!r} within limit={limit} bytes; the data is still "
            "buffered: read it with read() or raise the limit"
        )

    # -- writing ----------------------------------------------------------------------------

    def _check_writable(self) -> None:
        state = self._state
        if state not in (_State.OPEN, _State.ENDED, _State.CONNECTING):
            raise self._closed_error("write")
        protocol = self._protocol
        if self._write_closed:
            raise SocketClosedError("write after writable.close(); the write side is closed")
        self._raise_if_broken()
        if protocol.eof and not protocol.keep_open_after_eof:
            raise SocketClosedError(
                "write after the peer ended the stream: with allow_half_open=False the write "
                "side closes at EOF; pass allow_half_open=True to keep writing"
            )
        if protocol.lost:
            raise SocketClosedError("write on a socket whose connection has ended")

    async def _write(self, data: bytes) -> None:
        self._check_owner()
        self._check_writable()
        if self._writing:
            raise SocketBusyError(
                "another task is already writing to this socket; one "
                "direction serves one task at a time"
            )
        if not data:
            return
        self.bytes_out += len(data)
        if self._state is _State.CONNECTING:
            self._pending.append(data)
            self._pending_size += len(data)
            if self._pending_size <= self._high_water_mark:
                return
            self._writing = True
            try:
                await self._await_opened()
            finally:
                self._writing = False
            self._check_writable()
        else:
            assert self._transport is not None
            self._transport.write(data)
        if self._protocol.write_paused:
            await self._drain()

    async def _drain(self) -> None:
        protocol = self._protocol
        self._writing = True
        try:
            while protocol.write_paused:
                self._check_usable("write")
                if protocol.lost:
                    self._raise_if_broken()
                    raise SocketClosedError("write on a socket whose connection has ended")
                await protocol.wait_drained()
        finally:
            self._writing = False

    async def _close_write(self) -> None:
        if self._state is not _State.OPEN and self._state is not _State.CONNECTING:
            return
        if self._write_closed:
            return
        self._write_closed = True
        if self._state is _State.OPEN:
            self._send_eof()

    def _send_eof(self) -> None:
        transport = self._transport
        protocol = self._protocol
        assert transport is not None
        protocol.write_eof_sent = True
        if protocol.lost:
            return
        if protocol.eof or not transport.can_write_eof():
            # Both directions are done, or TLS, which cannot be half-closed (asyncio's TLS
            # transport has no write EOF): flush and release the whole connection.
            protocol.tls_shutdown_started = not transport.can_write_eof()
            transport.close()
        else:
            transport.write_eof()


@final
class ReadableStream:
    """The receiving half of a :class:`Socket`."""

    __slots__ = ("_socket",)

    def __init__(self, socket: Socket) -> None:
        self._socket = socket

    async def read(self, max_bytes: int = DEFAULT_READ_SIZE) -> bytes:
        """Return up to ``max_bytes`` received bytes, waiting for at least one.

        Returns ``b""`` at the end of the stream, every time it is called after that.

        Raises:
            SocketClosedError: the socket was closed (or upgraded) by this side.
            SocketBrokenError: the connection was reset or failed (after buffered data is read).
            SocketBusyError: another task is reading.
            ConnectError: the connection never opened.
        """
        _check_positive("max_bytes", max_bytes)
        return await self._socket._read(max_bytes)

    async def readexactly(self, n: int) -> bytes:
        """Return exactly ``n`` bytes.

        Raises:
            IncompleteReadError: the stream ended first; ``.partial`` holds what was read.
            (and the errors of :meth:`read`)
        """
        _check_positive("n", n)
        return await self._socket._readexactly(n)

    async def readuntil(self, sep: bytes = b"\n", limit: int = DEFAULT_READ_SIZE) -> bytes:
        """Return the bytes up to and including ``sep``.

        Raises:
            ReadLimitError: no ``sep`` within ``limit`` bytes; nothing is consumed.
            IncompleteReadError: the stream ended first; ``.partial`` holds what was read.
            (and the errors of :meth:`read`)
        """
        if not isinstance(sep, bytes) or not sep:
            raise TypeError("sep must be non-empty bytes")
        _check_positive("limit", limit)
        return await self._socket._readuntil(sep, limit)

    def __aiter__(self) -> AsyncIterator[bytes]:
        """Iterate over received data until EOF, one received chunk (of any size) at a time."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        # Iteration has no size argument: hand each received chunk over whole, uncopied.
        while chunk := await self._socket._read(sys.maxsize):
            yield chunk


@final
class WritableStream:
    """The sending half of a :class:`Socket`."""

    __slots__ = ("_socket",)

    def __init__(self, socket: Socket) -> None:
        self._socket = socket

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Queue ``data`` for sending; wait while more than ``high_water_mark`` is unsent.

        Writes made before the connection opened are sent, in order, once it does.

        Raises:
            TypeError: ``data`` is not bytes-like (``str`` must be encoded first).
            SocketClosedError: the socket or its write side was closed.
            SocketBrokenError: the connection was reset or failed.
            SocketBusyError: another task is writing.
            ConnectError: the connection never opened.
        """
        await self._socket._write(_as_bytes(data))

    async def close(self) -> None:
        """Half-close: flush, then send FIN; reading still works.

        TLS connections cannot be half-closed (asyncio's TLS transport has no write EOF): on a
        TLS socket this flushes, sends close_notify and ends the connection; reads then return
        what was already received, then ``b""``.
        """
        await self._socket._close_write()


def _as_bytes(data: object) -> bytes:
    if type(data) is bytes:
        return data
    if isinstance(data, str):
        raise TypeError(
            "write() takes bytes-like data, not str; encode it first, e.g. text.encode()"
        )
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"write() takes bytes-like data, not {type(data).__name__}") from None
    # Copy: the caller may reuse a bytearray as soon as write() returns.
    return view.tobytes()


def _check_positive(name: str, value: object) -> None:
    if type(value) is int and value > 0:
        return  # the common case, without the isinstance calls
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value <= 0:
        raise ValueError(f"{name} must be positive, got {value}")


def _format_sockaddr(sockaddr: Any) -> str:
    if not sockaddr:
        return ""
    return format_hostport(str(sockaddr[0]), int(sockaddr[1]))
