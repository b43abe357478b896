"""The least an in-process gate and a bare ASGI application add to a driver's new-connection
query: the ``minimal`` reference row of ``bench_drivers.py``.

A measurement aid, not a product and not a test. Issue 11 asks that the runtime add under 10 %
to a new-connection query. For the fastest queries on loopback (MySQL, an HTTP GET: 0.3-0.4 ms)
that is 30-40 µs per request for everything the runtime does. This module is the smallest thing
that still does what the issue requires of every driver connection inside a request ("gated,
counted, closed at request end") and serves the request as an ASGI application, so that the
benchmark can show, in the same run, how much of the runtime's cost is the approach itself (an
asyncio loop subclass and protocol proxies, in Python) and how much is the runtime's own:

- the loop overrides ``create_connection`` and ``sock_connect``; inside a request a connection
  is decided by one set lookup (loopback addresses only: the benchmark talks to nothing else);
- each connection gets a record in the request's list, a protocol proxy that counts received
  bytes and notes the loss, and a transport view that counts written bytes;
- at the end of the request whatever the driver left open is aborted;
- the ASGI application enters that "scope", awaits the driver's request and sends a two-byte
  response in two messages.

What it leaves out, and the runtime does: the socket limit and its slots, name resolution and
the policy's address classes, query cancellation and the MySQL drivers' TLS re-connect, TLS
upgrades of a tracked connection, the request's deadline and limits, metrics and the access
record, the ``Request``/``Response``/``ctx`` API, and every error path. So it is a reference,
not a bound: a real gate can be cheaper in places (``_counting.py`` binds pass-through methods
once; here each is a Python call).

It counts the very bytes the gate counts and closes what a request leaves open, on both loops
(tests/drivers/test_bench_minimal_gate.py), so the two rows do the same accounting.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

Request = Callable[[], Awaitable[None]]

_LOOPBACK: Final = frozenset({"127.0.0.1", "::1"})
_records: contextvars.ContextVar[list[_Record] | None] = contextvars.ContextVar(
    "minimal_gate_records", default=None
)


class _Record:
    __slots__ = ("bytes_in", "bytes_out", "lost", "transport")

    def __init__(self) -> None:
        self.transport: Any = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.lost = False


class _ProxyBase:
    def __init__(self, app: Any, record: _Record) -> None:
        self._app = app
        self._record = record

    def connection_made(self, transport: Any) -> None:
        self._record.transport = transport
        self._app.connection_made(_View(transport, self._record))

    def connection_lost(self, exc: Exception | None) -> None:
        self._record.lost = True
        self._app.connection_lost(exc)

    def eof_received(self) -> bool | None:
        result: bool | None = self._app.eof_received()
        return result

    def pause_writing(self) -> None:
        self._app.pause_writing()

    def resume_writing(self) -> None:
        self._app.resume_writing()


class _Proxy(_ProxyBase, asyncio.Protocol):
    def data_received(self, data: bytes) -> None:
        self._record.bytes_in += len(data)
        self._app.data_received(data)


class _BufferedProxy(_ProxyBase, asyncio.BufferedProtocol):
    def __init__(self, app: Any, record: _Record) -> None:
        super().__init__(app, record)
        self.get_buffer = app.get_buffer  # nothing to count there: the loop calls the driver

    def buffer_updated(self, nbytes: int) -> None:
        self._record.bytes_in += nbytes
        self._app.buffer_updated(nbytes)


class _View(asyncio.Transport):
    """The driver's transport: counts writes, passes the rest through."""

    def __init__(self, transport: Any, record: _Record) -> None:
        self._transport = transport
        self._record = record

    def write(self, data: Any) -> None:
        self._record.bytes_out += len(data)
        self._transport.write(data)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: Any) -> None:
        # asyncpg swaps protocols after its SSLRequest: keep counting what arrives.
        self._transport.set_protocol(_wrap(protocol, self._record))

    def get_protocol(self) -> Any:
        return self._transport.get_protocol()._app

    def is_closing(self) -> bool:
        return bool(self._transport.is_closing())

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def write_eof(self) -> None:
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return bool(self._transport.can_write_eof())

    def is_reading(self) -> bool:
        return bool(self._transport.is_reading())

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def get_write_buffer_size(self) -> int:
        return int(self._transport.get_write_buffer_size())

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


def _wrap(app: Any, record: _Record) -> Any:
    if isinstance(app, asyncio.BufferedProtocol):
        return _BufferedProxy(app, record)
    return _Proxy(app, record)


class _GateMixin:
    async def create_connection(  # type: ignore[no-untyped-def]
        self, protocol_factory, host=None, port=None, *, sock=None, **kwargs
    ):
        base: Any = super()
        records = _records.get()
        if records is None:
            return await base.create_connection(protocol_factory, host, port, sock=sock, **kwargs)
        peer = host if sock is None else sock.getpeername()[0]
        if peer not in _LOOPBACK:
            raise PermissionError(f"the minimal gate permits loopback only, not {peer}")
        record = _Record()
        records.append(record)
        transport, proxy = await base.create_connection(
            lambda: _wrap(protocol_factory(), record), host, port, sock=sock, **kwargs
        )
        return _View(transport, record), proxy._app

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        if _records.get() is not None and address[0] not in _LOOPBACK:
            raise PermissionError(f"the minimal gate permits loopback only, not {address[0]}")
        base: Any = super()
        await base.sock_connect(sock, address)


def minimal_loop_factory(prefer_uvloop: bool) -> Callable[[], asyncio.AbstractEventLoop]:
    """The loop class with the minimal gate: uvloop's, or the stdlib's."""
    if prefer_uvloop:
        import uvloop

        class MinimalUVLoop(_GateMixin, uvloop.Loop):  # type: ignore[misc]
            pass

        return MinimalUVLoop

    class MinimalLoop(_GateMixin, asyncio.SelectorEventLoop):
        pass

    return MinimalLoop


_START: Final = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"2")],
}


@contextlib.asynccontextmanager
async def minimal_scope() -> AsyncIterator[list[_Record]]:
    """A request's connections: gated while inside, aborted at the end if left open."""
    records: list[_Record] = []
    token = _records.set(records)
    try:
        yield records
    finally:
        _records.reset(token)
        for record in records:
            if not record.lost and not record.transport.is_closing():
                record.transport.abort()


def minimal_app(request: Request) -> Callable[..., Awaitable[None]]:
    """A bare ASGI application whose every request runs ``request`` in a minimal scope."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        async with minimal_scope():
            await request()
        await send(_START)
        await send({"type": "http.response.body", "body": b"ok"})

    return app
