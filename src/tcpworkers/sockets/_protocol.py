"""The asyncio protocol under a ``Socket``: receive buffer, read flow control, write backpressure.

Theory of operation. The protocol only records what the transport tells it (data, EOF, loss,
pause/resume of writing) and wakes at most one waiting reader and one waiting writer by resolving
their futures with ``None``. The waiters then look at the socket's state and decide what to do:
there is a single place (the ``Socket``) that turns state into results or errors. A waiter is
never failed with an exception from here, so a future nobody awaits can never log
"exception was never retrieved".
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import cast, final

from tcpworkers.sockets._buffer import ReadBuffer

__all__ = [
    "BufferedStreamProtocol",
    "PlainStreamProtocol",
    "StreamProtocol",
    "protocol_class_for",
]

# Receive-buffer size for the buffered variant, and the largest piece handed to readers. 64 KiB
# pieces are below glibc's mmap threshold (128 KiB), so their allocations reuse heap memory
# instead of zero-filled fresh pages (measured: ~20,000+ page faults per GB otherwise).
RECV_SIZE = 256 * 1024
PIECE_SIZE = 64 * 1024


class StreamProtocol(asyncio.BaseProtocol):
    """Buffers received data and tracks the transport's condition for one ``Socket``.

    Used through one of its two concrete forms, :class:`PlainStreamProtocol` and
    :class:`BufferedStreamProtocol` (see :func:`protocol_class_for`).
    """

    def __init__(self, *, keep_open_after_eof: bool, read_high_water: int) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = ReadBuffer()
        self.eof = False  # the peer sent FIN (or TLS close_notify)
        self.lost = False  # connection_lost ran: the transport is gone
        self.lost_exc: BaseException | None = None
        self.write_paused = False
        self.keep_open_after_eof = keep_open_after_eof
        self.write_eof_sent = False
        # We ended the TLS session ourselves (close_notify): whatever the TLS layer reports
        # while shutting down (e.g. the peer's in-flight data) is not a broken connection.
        self.tls_shutdown_started = False
        # Reading is paused above this many buffered bytes, unless a reader needs more.
        self.read_high_water = read_high_water
        self.read_need = 0
        self.reading_paused = False
        self.bytes_in = 0
        self._read_waiter: asyncio.Future[None] | None = None
        self._drain_waiter: asyncio.Future[None] | None = None
        self._on_lost: list[asyncio.Future[None]] = []
        # Called once, synchronously, when the transport is gone (the owning Socket's hook).
        self.on_lost: Callable[[], None] | None = None

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        # Pause only when the reader was already a high-water mark behind *before* this chunk:
        # a loop hands over up to 256 KiB at a time, and pausing on every chunk above 64 KiB
        # costs two epoll_ctl calls per chunk (measured: ~1.3x CPU per byte on bulk reads).
        # Memory stays bounded at about one high-water mark plus one receive chunk.
        behind = len(self.buffer)
        self.buffer.append(data)
        self.bytes_in += len(data)
        if behind >= self.read_high_water and behind >= self.read_need and not self.reading_paused:
            self._pause_reading()
        _wake(self._read_waiter)

    def eof_received(self) -> bool:
        self.eof = True
        _wake(self._read_waiter)
        # Returning False makes the transport flush and close itself. Keep it open only for
        # allow_half_open and only while our side still has something to send.
        return self.keep_open_after_eof and not self.write_eof_sent

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.lost_exc = None if self.tls_shutdown_started else exc
        _wake(self._read_waiter)
        _wake(self._drain_waiter)
        for fut in self._on_lost:
            _wake(fut)
        if self.on_lost is not None:
            self.on_lost()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        _wake(self._drain_waiter)

    # -- used by Socket ---------------------------------------------------------------------

    def wake_all(self) -> None:
        """Let waiting readers and writers re-check the socket's state (e.g. after close())."""
        _wake(self._read_waiter)
        _wake(self._drain_waiter)

    def readable_now(self, need: int) -> bool:
        return len(self.buffer) >= need or self.eof or self.lost

    async def wait_readable(self, need: int) -> None:
        """Wait for one change: new data, EOF, loss, or a wake_all()."""
        self.read_need = need
        if self.reading_paused and len(self.buffer) < need:
            self._resume_reading()
        waiter = asyncio.get_running_loop().create_future()
        self._read_waiter = waiter
        try:
            await waiter
        finally:
            self._read_waiter = None
            self.read_need = 0

    def consumed(self) -> None:
        """Called after a read took data: resume the transport once there is room again."""
        if self.reading_paused and len(self.buffer) <= self.read_high_water:
            self._resume_reading()

    async def wait_drained(self) -> None:
        """Wait for one change: writing resumed, loss, or a wake_all()."""
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiter = waiter
        try:
            await waiter
        finally:
            self._drain_waiter = None

    def lost_future(self) -> asyncio.Future[None]:
        """A future resolved when the transport is gone."""
        fut = asyncio.get_running_loop().create_future()
        if self.lost:
            fut.set_result(None)
        else:
            self._on_lost.append(fut)
        return fut

    def _pause_reading(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.pause_reading()
            self.reading_paused = True

    def _resume_reading(self) -> None:
        self.reading_paused = False
        if self.transport is not None and not self.lost:
            self.transport.resume_reading()


@final
class PlainStreamProtocol(StreamProtocol, asyncio.Protocol):
    """The protocol receiving ``bytes`` objects from the transport."""


@final
class BufferedStreamProtocol(StreamProtocol, asyncio.BufferedProtocol):
    """The same protocol, receiving into one reused buffer (see ``protocol_class_for``).

    uvloop receives into its own buffer and copies each receive into a new ``bytes`` anyway;
    receiving into ours instead and copying out ``PIECE_SIZE`` pieces costs the same one copy,
    but the pieces are exactly what ``read()`` hands out (no second copy to slice a 256 KiB
    chunk) and small enough to come from reused heap memory.
    """

    def get_buffer(self, sizehint: int) -> memoryview:
        return _receive_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        view = _receive_buffer()
        for start in range(0, nbytes, PIECE_SIZE):
            self.data_received(view[start : min(start + PIECE_SIZE, nbytes)].tobytes())


_local = threading.local()


def _receive_buffer() -> memoryview:
    """One receive buffer per thread, shared by every socket of its loop.

    The loop calls ``get_buffer``, receives into it and calls ``buffer_updated`` back to back,
    and ``buffer_updated`` copies everything out, so no two sockets ever use it at once; a
    buffer per socket would cost a 256 KiB allocation per connection (~13 us).
    """
    view: memoryview | None = getattr(_local, "view", None)
    if view is None:
        view = _local.view = memoryview(bytearray(RECV_SIZE))
    return view


def protocol_class_for(loop: asyncio.AbstractEventLoop) -> type[StreamProtocol]:
    """The receive strategy that copies least on ``loop``.

    The stdlib selector loop's ``sock.recv()`` allocates the ``bytes`` itself (no copy in user
    space), so the plain protocol is best there; uvloop copies every receive once, so receiving
    into our own buffer costs nothing extra and gives reader-sized pieces.
    """
    if isinstance(loop, asyncio.SelectorEventLoop):
        return PlainStreamProtocol
    return BufferedStreamProtocol


def _wake(fut: asyncio.Future[None] | None) -> None:
    if fut is not None and not fut.done():
        fut.set_result(None)
