"""The two halves of a ``Socket``: ``ReadableStream`` and ``WritableStream``.

Each half owns its busy flag (one direction serves one task at a time: ``SocketBusyError``) and
the logic of its direction; the connection's state, buffers and transport stay in the
``Socket``, which both halves share.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Final, final

from tcpworkers.errors import (
    IncompleteReadError,
    ReadLimitError,
    SocketBusyError,
    SocketClosedError,
)
from tcpworkers.sockets._state import LIVE, READABLE, WRITABLE, State

if TYPE_CHECKING:
    from tcpworkers.sockets._socket import Socket

__all__ = ["DEFAULT_READ_SIZE", "ReadableStream", "WritableStream"]

DEFAULT_READ_SIZE: Final = 65536


class _Half:
    """What both halves have: their socket, and the flag that one task is using this half."""

    __slots__ = ("_busy", "_socket")

    def __init__(self, socket: Socket) -> None:
        self._socket = socket
        self._busy = False

    @property
    def busy(self) -> bool:
        """True while a task is reading (or writing: waiting for the connection or a drain)."""
        return self._busy


@final
class ReadableStream(_Half):
    """The receiving half of a :class:`Socket`."""

    __slots__ = ()

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
        return await self._read(max_bytes)

    async def readexactly(self, n: int) -> bytes:
        """Return exactly ``n`` bytes.

        Raises:
            IncompleteReadError: the stream ended first; ``.partial`` holds what was read.
            (and the errors of :meth:`read`)
        """
        _check_positive("n", n)
        sock = self._socket
        sock._check_owner()
        protocol = sock._protocol
        if self._busy or not (sock._state is State.OPEN and len(protocol.buffer) >= n):
            await self._wait_for_data(n)
        if len(protocol.buffer) < n:
            sock._raise_if_broken()
            raise IncompleteReadError(protocol.buffer.take_exactly(n), n)
        data = protocol.buffer.take_exactly(n)
        protocol.consumed()
        return data

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
        sock = self._socket
        sock._check_owner()
        protocol = sock._protocol
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
                sock._raise_if_broken()
                raise IncompleteReadError(protocol.buffer.take_exactly(searched), None)
        raise ReadLimitError(
            f"no {sep!r} within limit={limit} bytes; the data is still "
            "buffered: read it with read() or raise the limit"
        )

    def __aiter__(self) -> AsyncIterator[bytes]:
        """Iterate over received data until EOF, one received chunk (of any size) at a time."""
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        # Iteration has no size argument: hand each received chunk over whole, uncopied.
        while chunk := await self._read(sys.maxsize):
            yield chunk

    async def _read(self, max_bytes: int) -> bytes:
        sock = self._socket
        sock._check_owner()
        protocol = sock._protocol
        if self._busy or not (sock._state is State.OPEN and len(protocol.buffer)):
            await self._wait_for_data(1)
        data = protocol.buffer.take(max_bytes)
        if data:
            protocol.consumed()
            return data
        sock._raise_if_broken()
        return b""

    async def _wait_for_data(self, need: int) -> None:
        """Wait until ``need`` bytes are buffered, or the stream ended or broke."""
        if self._busy:
            raise SocketBusyError(
                "another task is already reading from this socket; one "
                "direction serves one task at a time"
            )
        sock = self._socket
        protocol = sock._protocol
        self._busy = True
        try:
            if sock._state is State.CONNECTING:
                await sock._await_opened()
            while True:
                sock._check_usable("read", READABLE)
                if protocol.readable_now(need):
                    return
                await protocol.wait_readable(need)
        finally:
            self._busy = False


@final
class WritableStream(_Half):
    """The sending half of a :class:`Socket`."""

    __slots__ = ()

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
        chunk = _as_bytes(data)
        sock = self._socket
        sock._check_owner()
        self._check_writable()
        if self._busy:
            raise SocketBusyError(
                "another task is already writing to this socket; one "
                "direction serves one task at a time"
            )
        if not chunk:
            return
        if sock._state is State.CONNECTING:
            sock._pending.append(chunk)
            sock._pending_size += len(chunk)
            if sock._pending_size <= sock._high_water_mark:
                return
            self._busy = True
            try:
                await sock._await_opened()
            finally:
                self._busy = False
            self._check_writable()
        else:
            assert sock._transport is not None
            sock.bytes_out += len(chunk)  # counted once handed to the connection, not queued
            sock._transport.write(chunk)
        if sock._protocol.write_paused:
            await self._drain()

    async def close(self) -> None:
        """Half-close: flush, then send FIN; reading still works.

        TLS connections cannot be half-closed (asyncio's TLS transport has no write EOF): on a
        TLS socket this flushes, sends close_notify and ends the connection; reads then return
        what was already received, then ``b""``.
        """
        sock = self._socket
        if sock._state not in LIVE or sock._write_closed:
            return
        sock._write_closed = True
        if sock._state is State.OPEN:
            sock._send_eof()

    def _check_writable(self) -> None:
        sock = self._socket
        sock._check_usable("write", () if sock._closing else WRITABLE)
        protocol = sock._protocol
        if sock._write_closed:
            raise SocketClosedError("write after writable.close(); the write side is closed")
        sock._raise_if_broken()
        if protocol.eof and not protocol.keep_open_after_eof:
            raise SocketClosedError(
                "write after the peer ended the stream: with allow_half_open=False the write "
                "side closes at EOF; pass allow_half_open=True to keep writing"
            )
        if protocol.lost:
            raise SocketClosedError("write on a socket whose connection has ended")

    async def _drain(self) -> None:
        sock = self._socket
        protocol = sock._protocol
        self._busy = True
        try:
            while protocol.write_paused:
                if protocol.lost:
                    # The peer reset or the network failed while we waited: say so (with the
                    # OS error as the cause) before saying the connection is gone.
                    sock._raise_if_broken()
                    raise SocketClosedError("write on a socket whose connection has ended")
                sock._check_usable("write")
                await protocol.wait_drained()
        finally:
            self._busy = False


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
