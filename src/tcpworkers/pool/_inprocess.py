"""The binding's in-process door: a transport pair where a kernel socket would be.

Theory of operation. A driver on the gated loop that opens the binding's socket path (asyncpg:
``loop.create_unix_connection``) is handed a :class:`ClientTransport` instead of a unix socket;
the pooler serves the other end, a :class:`ServerEnd`, with the same ``serve_client`` that serves
socket clients (it reads and writes through ``read``/``write``/``drain``/``close``, which both a
``ServerEnd`` and asyncio's streams provide). No file descriptor, no system call, no accept:

- client -> pooler: ``ClientTransport.write`` appends the bytes to the server end's inbox and
  wakes the pooler's ``read``, which hands them over whole (no StreamReader buffer in between);
- pooler -> client: ``ServerEnd.write`` calls the driver's ``data_received`` at once, or, while
  the driver has paused reading, keeps the bytes in a backlog that ``resume_reading`` delivers.

Flow control is a socket's, with asyncio's default limits: when the pooler has not read 64 KiB
a client wrote, the client's protocol gets ``pause_writing`` (``resume_writing`` under 16 KiB);
when the backlog a paused client has not taken passes 64 KiB, the pooler's ``drain`` waits, so
it stops reading its server connection and PostgreSQL's socket fills: nothing is buffered
without bound. Ends mirror a socket's: ``close``/``abort`` of either side is seen by the other as
EOF (the pooler's ``read`` returns ``b""``; the driver gets ``eof_received`` then
``connection_lost(None)``), and ``connection_lost`` always comes from the loop, never from
inside a call the driver made.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable
from typing import Any, Final, final

__all__ = ["ClientTransport", "ServerEnd", "open_pipe"]

# asyncio's default write-buffer limits for socket transports (selector_events, 64 KiB / 16 KiB).
HIGH_WATER: Final = 64 * 1024
LOW_WATER: Final = 16 * 1024


def open_pipe(
    loop: asyncio.AbstractEventLoop, protocol: asyncio.BaseProtocol, path: str
) -> tuple[ClientTransport, ServerEnd]:
    """A connected pair; the caller calls ``protocol.connection_made(client)`` once the server
    end is being served."""
    server = ServerEnd(loop)
    client = ClientTransport(loop, protocol, server, path)
    server.client = client
    return client, server


@final
class ClientTransport(asyncio.Transport):
    """The driver's side (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        protocol: asyncio.BaseProtocol,
        server: ServerEnd,
        path: str,
    ) -> None:
        super().__init__({"peername": path, "sockname": "", "socket": None})
        self._loop = loop
        self._protocol = protocol
        self._server = server
        self._closing = False
        self._eof_written = False
        self._lost = False
        self._paused = False  # the driver paused reading
        self._writing_paused = False  # the driver's pause_writing was called
        self._high, self._low = HIGH_WATER, LOW_WATER
        self.backlog: deque[bytes] = deque()  # what the pooler wrote while reading was paused
        self.backlog_size = 0
        self._server_gone = False  # the pooler closed: EOF after the backlog

    # -- what the driver calls ----------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof_written:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._closing or not data:
            return
        # A copy: drivers hand over buffers they may reuse (asyncpg writes memoryviews).
        self._server.receive(bytes(data))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        self.write(b"".join(list_of_data))

    def write_eof(self) -> None:
        if self._closing or self._eof_written:
            return
        self._eof_written = True
        self._server.receive_eof()

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._server.receive_eof()
        self._loop.call_soon(self._lose, None)

    def abort(self) -> None:
        self.backlog.clear()
        self.backlog_size = 0
        self.close()

    def is_closing(self) -> bool:
        return self._closing

    def pause_reading(self) -> None:
        self._paused = True

    def resume_reading(self) -> None:
        if self._paused:
            self._paused = False
            self._loop.call_soon(self._flush)

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._protocol = protocol

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._protocol

    def get_write_buffer_size(self) -> int:
        return self._server.size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._low, self._high

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        if high is None:
            high = HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self.writes_backed_up()

    def __repr__(self) -> str:
        state = "closed" if self._closing else "open"
        return f"<in-process transport to {self.get_extra_info('peername')} {state}>"

    # -- what the server end calls -------------------------------------------------------------

    def writes_backed_up(self) -> None:
        """The pooler's unread inbox grew: pause the driver's writing past the high mark."""
        if not self._writing_paused and self._server.size > self._high:
            self._writing_paused = True
            self._call("pause_writing")

    def writes_drained(self) -> None:
        if self._writing_paused and self._server.size <= self._low:
            self._writing_paused = False
            self._call("resume_writing")

    def deliver(self, data: bytes) -> None:
        if self._lost or self._closing:
            return
        if self._paused or self.backlog:
            self.backlog.append(data)
            self.backlog_size += len(data)
            return
        self._data_received(data)

    def server_closed(self) -> None:
        self._server_gone = True
        if not self.backlog and not self._paused:
            self._loop.call_soon(self._eof)
        # else: _flush sends the EOF after the backlog

    # -- inside --------------------------------------------------------------------------------

    def _flush(self) -> None:
        while self.backlog and not self._paused and not self._closing:
            data = self.backlog.popleft()
            self.backlog_size -= len(data)
            self._data_received(data)
        if self.backlog_size <= LOW_WATER:
            self._server.backlog_drained()
        if not self.backlog and self._server_gone and not self._closing:
            self._eof()

    def _eof(self) -> None:
        if self._closing:
            return
        try:
            keep_open = self._protocol.eof_received()  # type: ignore[attr-defined]
        except BaseException as exc:
            self._fatal(exc, "protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    def _data_received(self, data: bytes) -> None:
        protocol: Any = self._protocol
        try:
            if isinstance(protocol, asyncio.BufferedProtocol):
                view = memoryview(data)
                while view:
                    buffer = memoryview(protocol.get_buffer(len(view))).cast("B")
                    n = min(len(buffer), len(view))
                    if not n:
                        raise RuntimeError("get_buffer() returned an empty buffer")
                    buffer[:n] = view[:n]
                    protocol.buffer_updated(n)
                    view = view[n:]
            else:
                protocol.data_received(data)
        except BaseException as exc:
            self._fatal(exc, "protocol.data_received() call failed.")
            if not isinstance(exc, Exception):
                raise

    def _call(self, name: str) -> None:
        try:
            getattr(self._protocol, name)()
        except BaseException as exc:
            self._fatal(exc, f"protocol.{name}() failed")
            if not isinstance(exc, Exception):
                raise

    def _fatal(self, exc: BaseException, message: str) -> None:
        # What a socket transport does when the protocol raises: report it, then close.
        self._loop.call_exception_handler(
            {"message": message, "exception": exc, "transport": self, "protocol": self._protocol}
        )
        self.abort()

    def _lose(self, exc: Exception | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._server.client_gone()
        self._protocol.connection_lost(exc)


@final
class ServerEnd:
    """The pooler's side: a stream reader and writer in one (see the module docstring)."""

    client: ClientTransport

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._inbox: deque[bytes] = deque()
        self.size = 0  # bytes in the inbox
        self._eof = False
        self._closed = False
        self._gone = False  # the client's transport is lost
        self._reader: asyncio.Future[None] | None = None
        self._drainer: asyncio.Future[None] | None = None

    # -- what serve_client calls ---------------------------------------------------------------

    async def read(self, n: int = -1, /) -> bytes:
        """What the client wrote, ``b""`` at EOF: its writes whole (never cut, so never
        copied), joined while they stay under ``n`` bytes (all of them when ``n`` < 0)."""
        inbox = self._inbox
        while not inbox:
            if self._eof or self._closed:
                return b""
            self._reader = self._loop.create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        data = inbox.popleft()
        if inbox and (n < 0 or len(data) + len(inbox[0]) <= n):
            parts = [data]
            total = len(data)
            while inbox and (n < 0 or total + len(inbox[0]) <= n):
                total += len(inbox[0])
                parts.append(inbox.popleft())
            data = b"".join(parts)
        self.size -= len(data)
        self.client.writes_drained()
        return data

    def write(self, data: bytes, /) -> None:
        if not self._closed:
            self.client.deliver(data)

    async def drain(self) -> None:
        """Wait while the client has more than the high mark not taken (it paused reading)."""
        while self.client.backlog_size > HIGH_WATER and not self._gone:
            self._drainer = self._loop.create_future()
            try:
                await self._drainer
            finally:
                self._drainer = None
        if self._gone:
            raise ConnectionResetError("Connection lost")

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._wake()
            self.client.server_closed()

    def abort(self) -> None:
        self.client.backlog.clear()
        self.client.backlog_size = 0
        self.close()

    def is_closing(self) -> bool:
        return self._closed or self._gone

    # -- what the client transport calls -------------------------------------------------------

    def receive(self, data: bytes) -> None:
        if self._closed:
            return  # like a socket whose peer closed: the bytes go nowhere
        self._inbox.append(data)
        self.size += len(data)
        self._wake()
        self.client.writes_backed_up()

    def receive_eof(self) -> None:
        self._eof = True
        self._wake()

    def client_gone(self) -> None:
        self._gone = True
        self._eof = True
        self._wake()
        self.backlog_drained()

    def backlog_drained(self) -> None:
        if self._drainer is not None and not self._drainer.done():
            self._drainer.set_result(None)

    def _wake(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)
