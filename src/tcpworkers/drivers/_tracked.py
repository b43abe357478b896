"""A driver connection as its request scope sees it, and the protocol proxies that watch it.

``TrackedConnection`` is the gate's record of one connection a driver opened inside a request
(a ``ScopedResource``): its slot, its byte counts, how to close or abort it at request end. The
proxies sit between the loop's transport and the driver's protocol: they count received bytes
and report the connection's loss, which frees the slot (see ``_loop.py`` for the whole picture,
``_counting.py`` for the transport side).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from tcpworkers.drivers._counting import CountedTransport, counted_transport
from tcpworkers.scope import RequestScope
from tcpworkers.sockets._address import format_hostport

__all__ = ["ProxyBase", "TrackedConnection", "track"]


class TrackedConnection:
    """One driver connection as its request scope sees it (a ``ScopedResource``)."""

    __slots__ = (
        "_description",
        "_lost",
        "_noted",
        "_over",
        "_view",
        "bytes_in",
        "bytes_out",
        "scope",
        "transport",
    )

    opened_by_driver = True  # named in the scope's warning when the request leaves it open

    # Made only by track(), which sets every slot: no Python __init__, whose argument tuple
    # and frame cost about 1k instructions per connection.
    if not TYPE_CHECKING:
        __init__ = object.__init__

    scope: RequestScope
    _description: str | tuple[Any, ...]
    transport: asyncio.BaseTransport | None
    bytes_in: int
    bytes_out: int  # counted by the CountedTransport the driver writes to
    _over: bool  # the loss was reported
    _lost: asyncio.Future[None] | None  # made only when close() must wait
    _view: CountedTransport | None
    _noted: bool

    @property
    def description(self) -> str:
        where = self._description
        if isinstance(where, str):
            return where
        text = f"connection to {format_hostport(str(where[0]), int(where[1]))} (driver)"
        self._description = text
        return text

    @description.setter
    def description(self, text: str) -> None:
        self._description = text

    def describe(self) -> str:
        return self.description

    def is_done(self) -> bool:
        """True once the connection ended; while it is open, make sure its end reaches us.

        Drivers may swap our proxy out (asyncpg calls ``transport.set_protocol`` after its
        SSLRequest exchange), after which loss is not reported to us: put the proxy back in
        front of whatever protocol the driver installed.
        """
        if self._over:
            return True
        transport = self.transport
        if transport is None:
            return False  # still connecting: create_connection releases the slot if it fails
        if transport.is_closing():
            return True
        current = transport.get_protocol()
        if not (isinstance(current, ProxyBase) and current._conn is self):
            transport.set_protocol(self.wrap(current))
        return False

    def on_lost(self) -> None:
        self._over = True
        if self._lost is not None and not self._lost.done():
            self._lost.set_result(None)
        self.scope.release(self)

    async def close(self) -> None:
        """Close and wait for the loss to be reported (the scope bounds the wait, then aborts)."""
        if self.transport is None or self.is_done():
            self.on_lost()
            return
        if self._lost is None:
            self._lost = asyncio.get_running_loop().create_future()
        self.transport.close()
        await asyncio.shield(self._lost)

    def abort(self) -> None:
        if self.transport is not None:
            cast(asyncio.Transport, self.transport).abort()
        self.on_lost()

    def note_socket(self, sock: Any) -> None:
        """The driver asked for the raw socket (so it may duplicate it): the scope notes it
        (see ``_companions.py``)."""
        if not self._noted:
            self._noted = True
            self.scope.note_socket(self, sock)

    def view(self, transport: asyncio.BaseTransport) -> CountedTransport:
        """The transport the driver sees (see ``_counting.py``), one per loop transport."""
        view = self._view
        if view is None or view._transport is not transport:
            view = self._view = counted_transport(transport, self)
        return view

    def wrap(self, protocol: asyncio.BaseProtocol) -> asyncio.BaseProtocol:
        """``protocol`` behind a new proxy of this connection."""
        return self.make_protocol(lambda: protocol)

    def make_protocol(
        self, protocol_factory: Callable[[], asyncio.BaseProtocol]
    ) -> asyncio.BaseProtocol:
        """``wrap(protocol_factory())``, as the loop's protocol factory (bound with
        ``functools.partial``): once per connection, so one Python frame, not a lambda's too.
        The proxies have no Python ``__init__`` (it would cost an argument tuple and a frame):
        their slots are filled here."""
        app: Any = protocol_factory()
        proxy: _BufferedProxy | _ProtocolProxy
        if isinstance(app, asyncio.BufferedProtocol):
            buffered = proxy = _BufferedProxy()
            # Nothing to count when the loop asks for a buffer: it gets the driver's own.
            buffered.get_buffer = app.get_buffer  # type: ignore[method-assign]
        else:
            proxy = _ProtocolProxy()
        proxy._app = app
        proxy._conn = self
        return proxy


def track(scope: RequestScope, description: str | tuple[Any, ...]) -> TrackedConnection:
    """A new record of a driver connection of ``scope``. ``description``: the text, or the
    ``(host, port, ...)`` the connection goes to, rendered as ``connection to host:port
    (driver)`` when first read (most never are)."""
    conn = TrackedConnection()
    conn.scope = scope
    conn._description = description
    conn.transport = None
    conn.bytes_in = 0
    conn.bytes_out = 0
    conn._over = False
    conn._lost = None
    conn._view = None
    conn._noted = False
    return conn


class ProxyBase:
    """Forwards every protocol callback to the driver's protocol, noting loss and bytes.

    Each callback through here is a Python frame the driver's connection would not otherwise
    pay, so the buffered proxy hands the loop the driver's own ``get_buffer``: only what must
    be counted or noted passes through the proxy. Only loops see a proxy (a driver asking its
    transport for the protocol gets its own, see ``_counting.py``), so it forwards exactly the
    protocol methods and has no ``__getattr__``, which would slow every attribute access on it.
    Slotted: the loop reads ``_app``/``_conn`` on every callback, and an instance dict would
    be one more object per connection for the garbage collector.
    """

    __slots__ = ("_app", "_conn")

    _app: Any
    _conn: TrackedConnection

    @property
    def _tcpworkers_app(self) -> Any:
        return self._app

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        conn = self._conn
        conn.transport = transport
        self._app.connection_made(conn.view(transport))

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._app.connection_lost(exc)
        finally:
            self._conn.on_lost()

    def eof_received(self) -> bool | None:
        result: bool | None = self._app.eof_received()
        return result

    def pause_writing(self) -> None:
        self._app.pause_writing()

    def resume_writing(self) -> None:
        self._app.resume_writing()


class _ProtocolProxy(ProxyBase, asyncio.Protocol):
    __slots__ = ()

    def data_received(self, data: bytes) -> None:
        self._conn.bytes_in += len(data)
        self._app.data_received(data)


class _BufferedProxy(ProxyBase, asyncio.BufferedProtocol):
    # The loop gets the driver's own bound get_buffer (see make_protocol), from a slot that
    # shadows BufferedProtocol's method.
    __slots__ = ("get_buffer",)

    def buffer_updated(self, nbytes: int) -> None:
        self._conn.bytes_in += nbytes
        self._app.buffer_updated(nbytes)

    def data_received(self, data: bytes) -> None:
        # Never called by a loop for a BufferedProtocol; defined because uvloop looks it up on
        # every protocol (a miss costs an AttributeError per connection).
        self._conn.bytes_in += len(data)
        self._app.data_received(data)
