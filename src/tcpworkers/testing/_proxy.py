"""A TCP proxy to a loopback target that injects one fault per connection.

Size: a little over the ~450-line guideline: the relay, its two sides and the fault kinds are
one state machine (who forwards what, when a fault fires), kept in one file.

Theory of operation: every accepted client connection gets a :class:`_Relay` holding two
transports, the client side (accepted) and the upstream side (opened to the target once the
client connected). Each side's protocol (:class:`_Side`) only forwards its events to the relay,
which moves bytes across, propagates half-closes and flow control, and applies the connection's
:class:`Fault`. The fault is read when the connection is accepted, so changing
``FaultProxy.fault`` affects new connections only.

Faults that trigger "after n bytes" count bytes going server→client, the direction in which a
client notices a broken server. A reset is a real TCP RST (``SO_LINGER`` on with a zero timeout,
then close); it is sent only once the n bytes have left the proxy's socket (the kernel keeps
data it received before the RST readable, so the client can read them first).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import socket
import struct
import sys
from collections.abc import Coroutine
from typing import ClassVar, cast, final

from tcpworkers.testing._listener import LoopbackListener, check_loopback_host

__all__ = ["Fault", "FaultKind", "FaultProxy"]

# struct linger {int l_onoff; int l_linger;} (<sys/socket.h>): on, zero seconds = RST on close.
_LINGER_RST = struct.pack("ii", 1, 0)

# TLS record header: type (1 byte), legacy version (2), length (2, big-endian); RFC 8446 §5.1.
_TLS_HEADER_LEN = 5

# How long a reset waits for the bytes before it to leave the proxy's socket.
_FLUSH_TIMEOUT = 2.0


class FaultKind(enum.Enum):
    """The kinds of :class:`Fault`."""

    NONE = "none"
    RESET_AFTER = "reset_after"
    CLOSE_AFTER = "close_after"
    STALL = "stall"
    STALL_AFTER = "stall_after"
    TRUNCATE_TLS = "truncate_tls"
    REFUSE = "refuse"


@final
@dataclasses.dataclass(frozen=True)
class Fault:
    """The fault a :class:`FaultProxy` injects into each new connection.

    Build one with the class methods (or use :attr:`NONE`); ``n`` counts bytes sent from the
    server to the client.

    Attributes:
        kind: what happens.
        n: how many server→client bytes pass before it happens (for the ``*_after`` kinds).
    """

    kind: FaultKind
    n: int = 0

    NONE: ClassVar[Fault]
    """No fault: a transparent proxy."""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, FaultKind):
            raise TypeError(f"kind must be a FaultKind, got {self.kind!r}")
        if not isinstance(self.n, int) or isinstance(self.n, bool) or self.n < 0:
            raise ValueError(f"n must be an int >= 0 (a byte count), got {self.n!r}")

    @classmethod
    def reset_after(cls, n: int) -> Fault:
        """After ``n`` bytes server→client, reset (RST) the client and close the upstream."""
        return cls(FaultKind.RESET_AFTER, n)

    @classmethod
    def close_after(cls, n: int) -> Fault:
        """After ``n`` bytes server→client, close both sides cleanly (FIN)."""
        return cls(FaultKind.CLOSE_AFTER, n)

    @classmethod
    def stall(cls) -> Fault:
        """Accept the client and hold it open, never reading or forwarding anything."""
        return cls(FaultKind.STALL)

    @classmethod
    def stall_after(cls, n: int) -> Fault:
        """Forward until ``n`` bytes went server→client, then stop both directions (stay open)."""
        return cls(FaultKind.STALL_AFTER, n)

    @classmethod
    def truncate_tls(cls) -> Fault:
        """Forward the server's first TLS record only half-way, then close the client (FIN).

        The proxy forwards the 5-byte record header and half the record body, so the client's
        TLS handshake fails.
        """
        return cls(FaultKind.TRUNCATE_TLS)

    @classmethod
    def refuse(cls) -> Fault:
        """Accept each connection and reset (RST) it at once."""
        return cls(FaultKind.REFUSE)


Fault.NONE = Fault(FaultKind.NONE)


@final
class FaultProxy(LoopbackListener):
    """A transparent TCP proxy to a loopback target that injects a :class:`Fault`.

    Example::

        async with EchoServer() as srv, FaultProxy(srv.host, srv.port) as proxy:
            proxy.fault = Fault.reset_after(3)
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            writer.write(b"hello")
            assert await reader.readexactly(3) == b"hel"
            await reader.read()  # raises ConnectionResetError

    Args:
        target_host: the loopback address of the server to proxy to.
        target_port: its port.
        host: loopback address to bind, ``"127.0.0.1"`` or ``"::1"``.
        fault: the fault for new connections; change it later with :attr:`fault`.
    """

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        host: str = "127.0.0.1",
        fault: Fault = Fault.NONE,
    ) -> None:
        super().__init__(host)
        self._target_host = check_loopback_host(target_host, what="target_host")
        if not isinstance(target_port, int) or not 0 < target_port < 65536:
            raise ValueError(f"target_port must be an int in 1..65535, got {target_port!r}")
        self._target_port = target_port
        self.fault = fault
        self._connections = 0
        self._relays: set[_Relay] = set()

    @property
    def fault(self) -> Fault:
        """The fault injected into connections accepted from now on."""
        return self._fault

    @fault.setter
    def fault(self, fault: Fault) -> None:
        if not isinstance(fault, Fault):
            raise TypeError(
                f"fault must be a Fault such as Fault.reset_after(10), got {type(fault).__name__}"
            )
        self._fault = fault

    @property
    def connections(self) -> int:
        """How many client connections the proxy has accepted."""
        return self._connections

    @property
    def target(self) -> tuple[str, int]:
        """``(host, port)`` of the server the proxy forwards to."""
        return self._target_host, self._target_port

    def _on_accept(self, sock: socket.socket) -> None:
        self._connections += 1
        relay = _Relay(self, self._fault)
        self._relays.add(relay)
        self._spawn(relay.open(sock))

    def _abort_connections(self) -> list[asyncio.Future[None]]:
        waits: list[asyncio.Future[None]] = []
        for relay in list(self._relays):
            waits.extend(relay.abort())
        return waits

    def _forget(self, relay: _Relay) -> None:
        self._relays.discard(relay)


def _send_rst(transport: asyncio.Transport) -> None:
    """Close ``transport`` with a TCP RST instead of a FIN."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
    transport.abort()


def _pause_reading_early(transport: asyncio.Transport) -> None:
    """Pause reading from ``connection_made``, in a way that also holds on uvloop.

    uvloop starts reading after ``connection_made`` returns, undoing a pause made inside it, so
    pause again in the next callback round. Bytes read in between reach ``data_received``.
    """
    transport.pause_reading()

    def pause_again() -> None:
        if not transport.is_closing():
            transport.pause_reading()

    asyncio.get_running_loop().call_soon(pause_again)


def _unsent_bytes(transport: asyncio.Transport) -> int:
    """Bytes not yet out of ``transport``: its buffer plus, on Linux, the kernel's send queue."""
    pending = transport.get_write_buffer_size()
    if sys.platform == "linux":
        import fcntl
        import termios

        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, ValueError):
                # SIOCOUTQ (== TIOCOUTQ): bytes in the send queue not yet acknowledged.
                raw = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
                pending += struct.unpack("i", raw)[0]
    return pending


class _Side(asyncio.Protocol):
    """The protocol of one side of a relay; it hands every event to the relay."""

    def __init__(self, relay: _Relay, *, client: bool) -> None:
        self._relay = relay
        self._client = client
        self.transport: asyncio.Transport | None = None
        self.eof = False
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self._relay.connection_made(self)

    def data_received(self, data: bytes) -> None:
        self._relay.data_received(self, data)

    def eof_received(self) -> bool:
        self.eof = True
        self._relay.eof_received(self)
        return True  # the relay decides when to close

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)
        self._relay.connection_lost(self, exc)

    def pause_writing(self) -> None:
        self._relay.pause_reading(self._relay.other(self))

    def resume_writing(self) -> None:
        self._relay.resume_reading(self._relay.other(self))

    @property
    def alive(self) -> bool:
        return self.transport is not None and not self.lost.done()

    @property
    def is_client(self) -> bool:
        return self._client


class _Relay:
    """One proxied connection: a client side, an upstream side and the fault between them."""

    def __init__(self, proxy: FaultProxy, fault: Fault) -> None:
        self._proxy = proxy
        self._fault = fault
        self.client_side = _Side(self, client=True)
        self.upstream_side = _Side(self, client=False)
        # Bytes the server may still send the client before the fault triggers (None: no limit,
        # or for TRUNCATE_TLS not known until the first record header arrived).
        self._budget: int | None = fault.n if fault.kind in _AFTER_KINDS else None
        self._tls_header = bytearray()
        self._stopped = False  # the fault triggered: nothing is forwarded any more
        self._tasks: list[asyncio.Task[None]] = []
        self._early: list[bytes] = []  # client bytes read before the upstream was connected

    async def open(self, sock: socket.socket) -> None:
        """Wrap the accepted client socket in a transport; the client side takes it from there."""
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(lambda: self.client_side, sock)
        except OSError:  # the client went away before we got to it
            sock.close()
            self._maybe_forget()

    def other(self, side: _Side) -> _Side:
        return self.upstream_side if side is self.client_side else self.client_side

    # -- events from the sides --------------------------------------------------------------

    def connection_made(self, side: _Side) -> None:
        assert side.transport is not None
        if not side.is_client:
            return  # the upstream side: _connect() takes it from here
        if self._proxy._shutting_down:
            side.transport.abort()
            return
        kind = self._fault.kind
        if kind is FaultKind.REFUSE:
            _send_rst(side.transport)
            return
        # STALL: for good; otherwise until the upstream connection is open.
        _pause_reading_early(side.transport)
        if kind is not FaultKind.STALL:
            self._spawn(self._connect())

    def data_received(self, side: _Side, data: bytes) -> None:
        if self._stopped:
            return  # the fault triggered: forward nothing more
        if side.is_client:
            upstream = self.upstream_side.transport
            if upstream is None:
                self._early.append(data)  # read before the upstream connection is open
            elif self.upstream_side.alive:
                upstream.write(data)
        else:
            self._to_client(data)

    def eof_received(self, side: _Side) -> None:
        other = self.other(side)
        if self._stopped:
            if self._fault.kind in _CLOSE_KINDS and side.transport is not None:
                side.transport.close()  # we sent our FIN when the fault triggered
            return
        if other.alive and not other.eof:
            assert other.transport is not None
            if other.transport.can_write_eof():
                other.transport.write_eof()
        if side.eof and other.eof:
            self._close_both()

    def connection_lost(self, side: _Side, exc: Exception | None) -> None:
        other = self.other(side)
        # Once the fault triggered, _trigger() decided the fate of both sides.
        if other.alive and not self._stopped:
            assert other.transport is not None
            if isinstance(exc, ConnectionResetError):
                _send_rst(other.transport)  # pass a reset on, as a real peer would see it
            else:
                other.transport.close()
        self._maybe_forget()

    def pause_reading(self, side: _Side) -> None:
        if side.alive and not self._stopped:
            assert side.transport is not None
            side.transport.pause_reading()

    def resume_reading(self, side: _Side) -> None:
        if side.alive and not self._stopped:
            assert side.transport is not None
            side.transport.resume_reading()

    # -- forwarding and faults --------------------------------------------------------------

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        host, port = self._proxy.target
        try:
            await loop.create_connection(lambda: self.upstream_side, host, port)
        except OSError:
            if self.client_side.alive:
                assert self.client_side.transport is not None
                _send_rst(self.client_side.transport)  # target down: the client sees a reset
            return
        upstream = self.upstream_side.transport
        assert upstream is not None
        if not self.client_side.alive or self._proxy._shutting_down:
            upstream.abort()
            return
        if self._budget == 0:
            self._trigger()
            return
        early, self._early = b"".join(self._early), []
        if early:
            upstream.write(early)
        if self.client_side.eof:
            upstream.write_eof()
        assert self.client_side.transport is not None
        self.client_side.transport.resume_reading()

    def _to_client(self, data: bytes) -> None:
        client = self.client_side.transport
        if client is None or not self.client_side.alive:
            return
        if self._fault.kind is FaultKind.TRUNCATE_TLS and self._budget is None:
            self._tls_header += data[: _TLS_HEADER_LEN - len(self._tls_header)]
            if len(self._tls_header) == _TLS_HEADER_LEN:
                body = int.from_bytes(self._tls_header[3:5], "big")
                self._budget = _TLS_HEADER_LEN + body // 2
        if self._budget is None:
            client.write(data)
            return
        chunk = data[: self._budget]
        if chunk:
            client.write(chunk)
            self._budget -= len(chunk)
        if self._budget == 0:
            self._trigger()

    def _trigger(self) -> None:
        """The budget is spent: inject the fault."""
        self._stopped = True
        client = self.client_side.transport
        upstream = self.upstream_side.transport
        assert client is not None
        assert upstream is not None
        kind = self._fault.kind
        if kind is FaultKind.RESET_AFTER:
            upstream.close()
            self._spawn(self._reset_when_flushed(client))
        elif kind is FaultKind.STALL_AFTER:
            client.pause_reading()
            upstream.pause_reading()
        else:  # CLOSE_AFTER, TRUNCATE_TLS: FIN both ways; close each once it sends its FIN
            for side in (self.client_side, self.upstream_side):
                if not side.alive:
                    continue
                assert side.transport is not None
                side.transport.resume_reading()  # read on to see the peer's FIN
                if side.eof:
                    side.transport.close()
                elif side.transport.can_write_eof():
                    side.transport.write_eof()

    async def _reset_when_flushed(self, client: asyncio.Transport) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _FLUSH_TIMEOUT
        # Nothing signals "the kernel sent it all", so poll; on loopback it is one round.
        while not client.is_closing() and _unsent_bytes(client) > 0 and loop.time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.001)
        if self.client_side.alive:
            _send_rst(client)

    def _close_both(self) -> None:
        for side in (self.client_side, self.upstream_side):
            if side.alive:
                assert side.transport is not None
                side.transport.close()

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = self._proxy._spawn(coro)
        self._tasks.append(task)
        task.add_done_callback(lambda _: self._maybe_forget())

    def _maybe_forget(self) -> None:
        """Let the proxy drop this relay once both sockets are closed and no task runs."""
        sides = [s for s in (self.client_side, self.upstream_side) if s.transport is not None]
        if all(s.lost.done() for s in sides) and all(t.done() for t in self._tasks):
            self._proxy._forget(self)

    def abort(self) -> list[asyncio.Future[None]]:
        """End both sides now (proxy shutdown); return what to wait for."""
        waits: list[asyncio.Future[None]] = list(self._tasks)
        for task in self._tasks:
            task.cancel()
        for side in (self.client_side, self.upstream_side):
            if side.transport is not None:
                waits.append(side.lost)
                if not side.lost.done():
                    side.transport.abort()
        return waits


_AFTER_KINDS = frozenset({FaultKind.RESET_AFTER, FaultKind.CLOSE_AFTER, FaultKind.STALL_AFTER})
_CLOSE_KINDS = frozenset({FaultKind.CLOSE_AFTER, FaultKind.TRUNCATE_TLS})
