"""``Socket``: one outbound TCP connection with the Workers ``connect()`` semantics.

Theory of operation. A ``Socket`` is created synchronously by ``connect()`` in the CONNECTING
state, with an opening task that resolves, connects (happy eyeballs) and, for
``secure_transport="on"``, completes the TLS handshake, all under ``connect_timeout``. Its life is
a small state machine (``State``; allowed moves in ``TRANSITIONS``, made only by ``_move``):

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

Layout: the states live in ``_state.py``, ``Outcome`` in ``_outcome.py``, the gated opener (shared
with the drivers' loop) in ``_open.py``, the readable and writable halves (each with its busy
flag) in ``_streams.py``. This module is over the ~450-line guideline on purpose: what is left
is the one object every transition touches (opening, upgrade, close, abort, the scope's
resource role), and scattering those moves over modules would make them harder to check
against the transition table.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final, Literal, cast, final

from tcpworkers.egress import default_policy
from tcpworkers.errors import (
    ConnectError,
    ConnectTimeoutError,
    CrossRequestError,
    SocketBusyError,
    SocketClosedError,
    StartTlsError,
)
from tcpworkers.scope import RequestScope, current_scope
from tcpworkers.scope._trust import trusted_connections
from tcpworkers.sockets._address import Address, format_hostport
from tcpworkers.sockets._dial import Dialer
from tcpworkers.sockets._open import open_gated
from tcpworkers.sockets._outcome import Outcome
from tcpworkers.sockets._protocol import protocol_class_for
from tcpworkers.sockets._state import LIVE, TRANSITIONS, State
from tcpworkers.sockets._streams import ReadableStream, WritableStream
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
# How long close() waits for buffered writes to reach a peer that is not reading before it
# drops them and aborts: close() must end, and a stalled peer must not pin a file descriptor.
# (A module variable, not a constant, so tests can shorten it.)
close_flush_timeout = 5.0

logger = logging.getLogger("tcpworkers.sockets")


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
        self._state = State.CONNECTING
        self._opened: Outcome[SocketInfo] = Outcome(loop)
        self._closed: Outcome[None] = Outcome(loop)
        self._failure: ConnectError | None = None
        self._transport: asyncio.Transport | None = None
        self._pending: list[bytes] = []  # writes made before the connection opened
        self._pending_size = 0
        self._write_closed = False  # writable.close() was called
        self._closing = False  # close() waits for the connection to flush queued writes
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
        return self._state is State.UPGRADED

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

        A socket still connecting with writes queued waits for the connection (at most its
        ``connect_timeout``), sends them, then closes; if it never opens, ``closed`` raises the
        ``ConnectError`` and a warning says how many bytes were dropped. A socket still
        connecting with nothing queued stops connecting at once. Later reads and writes raise
        ``SocketClosedError``.
        """
        state = self._state
        if state in (State.FAILED, State.UPGRADED):
            return
        if state is State.CLOSED:
            await self._closed
            return
        if state is State.CONNECTING and (self._closing or self._pending):
            await self._close_when_open()
            return
        self._move(State.CLOSED)
        self._protocol.wake_all()
        if state is State.CONNECTING:
            await self._abort_opening()
            return
        await self._close_transport()

    async def _close_when_open(self) -> None:
        """close() of a connecting socket with queued writes: deliver them, or report them lost."""
        opening = self._opening
        if self._closing or opening is None:  # a second close(): the first one reports
            await asyncio.wait([self._closed._future])
            return
        self._closing = True
        try:
            await asyncio.wait([opening], timeout=self._connect_timeout)
        except asyncio.CancelledError:
            self.abort()  # nothing may outlive a cancelled close()
            raise
        if self._state is State.CONNECTING:
            # Still waiting (for a free slot in its request): give up within the bound.
            self._opening = None
            opening.cancel()
            self._fail(
                ConnectTimeoutError(
                    f"could not connect to {self._where}: not open within the connect_timeout "
                    f"of {self._connect_timeout:g}s that close() waits for queued writes"
                )
            )
            await asyncio.wait([opening])
        elif self._state is State.OPEN or self._state is State.ENDED:
            self._move(State.CLOSED)
            self._protocol.wake_all()
            await self._close_transport()
        # FAILED: _fail() reported it (closed raises, the dropped bytes were logged).

    def _drop_pending(self, reason: object) -> None:
        """Discard writes queued before the connection opened, saying so if there were any."""
        if self._pending_size:
            logger.warning(
                "connection to %s: %d bytes written before it opened were dropped: %s",
                self._where,
                self._pending_size,
                reason,
            )
        self._pending.clear()
        self._pending_size = 0

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
        if self._state is State.UPGRADED:
            raise StartTlsError(
                "start_tls() was already called on this socket; use the socket it returned"
            )
        self._check_usable("start_tls()", () if self._closing else LIVE)
        if self.readable.busy or self.writable.busy:
            raise SocketBusyError(
                "start_tls() cannot run while a read or write is in progress; await it first"
            )
        if server_hostname is not None and not isinstance(server_hostname, str):
            raise TypeError("server_hostname must be a str")
        self._check_owner()
        self._move(State.UPGRADED)
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
            if self._state is State.CLOSED:
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
        policy = self._scope.policy if self._scope is not None else default_policy()
        tls: dict[str, Any] = {}
        if self._secure_transport == "on":
            tls = {
                "ssl": self._tls_context,
                "server_hostname": self._server_hostname or self._address.host,
                "ssl_handshake_timeout": self._connect_timeout,
                "before_tls": self._start_handshake,
            }
        # Trusted: on a gated loop, its create_connection must not gate this connection a
        # second time (a second slot, a second count). Safe for the transport's context: the
        # callbacks are this socket's own protocol, which runs no code of the caller's.
        with trusted_connections():
            transport, _ = await open_gated(
                self._loop.create_connection,
                lambda: self._protocol,
                self._address.host,
                self._address.port,
                policy=policy,
                scope=self._scope,
                dialer=self._dialer,
                **tls,
            )
        return cast(asyncio.Transport, transport)

    def _start_handshake(self) -> None:
        self._handshaking = True  # a failure from here on is a TLS failure (error messages)

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
            if self._state is State.CLOSED:
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
        if self._state is State.CLOSED:  # defensive: close() won the race, drop the connection
            transport.abort()
            return
        if self._state is not State.CONNECTING:
            # start_tls() was called while connecting: the upgrade takes the transport over.
            self._flush_pending(transport)
            self._opened.resolve(self._info(transport))
            return
        transport.set_write_buffer_limits(high=self._high_water_mark)
        self._flush_pending(transport)
        if self._write_closed:
            self._send_eof()
        self._move(State.OPEN)
        self._opened.resolve(self._info(transport))
        if self._protocol.lost:
            self._on_lost()
        else:
            self._protocol.on_lost = self._on_lost

    def _flush_pending(self, transport: asyncio.Transport) -> None:
        if self._pending:
            self.bytes_out += self._pending_size  # counted once handed to the connection
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
        if self._state is State.CONNECTING:
            self._move(State.FAILED)
        self._drop_pending(error)
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
        self._drop_pending("close() was called before it opened")
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
        if self._state is State.OPEN:
            self._move(State.ENDED)
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
        if self._state in (State.CONNECTING, State.OPEN, State.ENDED):
            self._move(State.CLOSED)
            self._protocol.wake_all()
        if self._opening is not None:
            self._opening.cancel()
            self._opening = None
        self._drop_pending("the connection was aborted")
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

    def _move(self, new: State) -> None:
        if new not in TRANSITIONS[self._state]:
            raise AssertionError(f"invalid socket state transition {self._state} -> {new}")
        self._state = new

    def _closed_error(self, action: str) -> Exception:
        """The error for ``action`` on a socket that is not usable in its current state."""
        if self._state is State.UPGRADED:
            return SocketClosedError(
                f"{action} on a socket that was upgraded with start_tls(); "
                "use the socket start_tls() returned"
            )
        if self._state is State.FAILED:
            assert self._failure is not None
            return self._failure
        if self._state is State.ENDED:
            return SocketClosedError(f"{action} on a socket whose connection has ended")
        return SocketClosedError(f"{action} on a closed socket")

    def _check_usable(self, action: str, states: tuple[State, ...] = LIVE) -> None:
        """Raise the error for ``action`` unless the socket is in one of ``states``."""
        if self._state not in states:
            raise self._closed_error(action)

    # -- reading ----------------------------------------------------------------------------

    def _check_owner(self) -> None:
        if self._scope is not None and current_scope() is not self._scope:
            raise CrossRequestError(
                f"{self.describe()} belongs to {self._scope.label}, which opened it; a socket "
                "cannot be used by another request. To reuse database connections across "
                "requests, connect through a pool binding (env.DB.connection_string) instead"
            )

    async def _await_opened(self) -> None:
        try:
            await self._opened
        except ConnectError:
            if self._state is State.CLOSED:
                raise self._closed_error("read or write") from None
            raise

    def _raise_if_broken(self) -> None:
        protocol = self._protocol
        if protocol.lost and protocol.lost_exc is not None:
            raise broken_error(protocol.lost_exc, self._where)

    # -- writing ----------------------------------------------------------------------------

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


def _format_sockaddr(sockaddr: Any) -> str:
    if not sockaddr:
        return ""
    return format_hostport(str(sockaddr[0]), int(sockaddr[1]))
