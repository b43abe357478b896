"""The transport a driver sees on the gated loop: counts what it writes, keeps the gate's proxy.

A driver writes to the transport the loop gave it and may install another protocol on it
(asyncpg calls ``set_protocol`` after its SSLRequest exchange), which used to take the gate's
protocol proxy out of the path: received bytes and the connection's loss went unseen. So the
driver gets this thin wrapper instead of the loop's transport:

- ``write``/``writelines`` add to the connection's ``bytes_out`` (what the driver handed over;
  with TLS, the plaintext, as for ``connect()`` sockets);
- ``set_protocol`` wraps the driver's new protocol in a fresh proxy, so received bytes and the
  loss keep being reported whatever protocol the driver installs; ``get_protocol`` returns
  the driver's own protocol;
- ``get_extra_info("socket")`` also tells the connection that its driver now holds the raw
  socket (the MySQL drivers duplicate it to re-connect with TLS; see ``_companions.py``);
- everything else is passed through. ``GateMixin.start_tls`` unwraps it for the base loop
  (uvloop accepts only its own transports) and wraps the TLS transport it returns.

Cost. Every request that opens a connection pays for this wrapper, so it stays out of the way:
what it only passes through is read from the loop transport by a C getter (:func:`_forward`),
so a driver's ``is_closing()`` or ``close()`` is a direct call into the loop, with no Python
frame of ours in between; and it has no ``__getattr__`` fallback where the loop's transport
class says what it has (uvloop's; see :func:`counted_transport`).
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

__all__ = ["CountedTransport", "Counter", "counted_transport", "unwrap_protocol"]


class Counter(Protocol):
    """What the wrapper reports to: the gate's record of one driver connection."""

    bytes_out: int

    def wrap(self, protocol: asyncio.BaseProtocol) -> asyncio.BaseProtocol: ...

    def note_socket(self, sock: Any) -> None: ...


def unwrap_protocol(protocol: asyncio.BaseProtocol) -> asyncio.BaseProtocol:
    """The driver's own protocol under any number of gate proxies."""
    while True:
        app = getattr(protocol, "_tcpworkers_app", None)
        if app is None:
            return protocol
        protocol = app


def _forward(name: str) -> Any:
    """A loop transport's attribute, read through on every access: a property whose getter is
    an ``attrgetter`` (C), so reading it runs no Python frame of ours. For a method, the read
    returns the loop transport's own bound method, so calling it goes straight to the loop's
    transport (a C method under uvloop)."""
    return property(operator.attrgetter(f"_transport.{name}"))


class CountedTransport(asyncio.Transport):
    """A driver's view of a gated connection's transport (see the module docstring)."""

    # No __slots__: a driver may keep attributes of its own on its transport, as it could on
    # the loop's. (Written only by ordinary attribute stores, so the instance keeps its inline
    # values and never materialises a __dict__.)

    # Made only by counted_transport(), which sets _transport and _conn. No Python __init__:
    # calling a class whose __init__ is Python costs an argument tuple and a frame (once per
    # connection), and BaseTransport's would only make an extra-info dict this view never uses
    # (get_extra_info is the loop transport's).
    if not TYPE_CHECKING:
        __init__ = object.__init__

    _transport: Any
    _conn: Counter

    @property
    def wrapped(self) -> asyncio.BaseTransport:
        """The loop's own transport."""
        transport: asyncio.BaseTransport = self._transport
        return transport

    # -- counted --------------------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._conn.bytes_out += len(data)
        self._transport.write(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        data = b"".join(list_of_data)
        self._conn.bytes_out += len(data)
        self._transport.write(data)

    # -- the proxy stays in place -----------------------------------------------------------

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(self._conn.wrap(unwrap_protocol(protocol)))

    def get_protocol(self) -> asyncio.BaseProtocol:
        return unwrap_protocol(self._transport.get_protocol())

    # -- the raw socket is noted --------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        value = self._transport.get_extra_info(name, default)
        if name == "socket" and value is not None:
            self._conn.note_socket(value)
            # Noted once is enough (the connection keeps the first socket it was told of), so
            # from now on this view's get_extra_info is the loop transport's own method.
            # (An ordinary attribute store: touching __dict__ would turn the view's inline
            # attribute values into a real dict, which every later attribute read pays for.)
            self.get_extra_info = self._transport.get_extra_info  # type: ignore[method-assign]
        return value

    # -- passed through ---------------------------------------------------------------------
    # Typed as the base class declares them; at run time, the loop transport's own (_forward).

    if not TYPE_CHECKING:
        is_closing = _forward("is_closing")
        close = _forward("close")
        abort = _forward("abort")
        write_eof = _forward("write_eof")
        can_write_eof = _forward("can_write_eof")
        is_reading = _forward("is_reading")
        pause_reading = _forward("pause_reading")
        resume_reading = _forward("resume_reading")
        set_write_buffer_limits = _forward("set_write_buffer_limits")
        get_write_buffer_size = _forward("get_write_buffer_size")
        get_write_buffer_limits = _forward("get_write_buffer_limits")

    def __repr__(self) -> str:
        return f"<gated {self._transport!r}>"


class _ForwardingTransport(CountedTransport):
    """The view of a loop transport whose instances carry attributes of their own (the stdlib
    loop's): anything else is looked up on the loop's transport when asked for."""

    def __getattr__(self, name: str) -> Any:
        # Loop-specific extras (the transport's own attributes) the driver may use.
        value = getattr(self._transport, name)
        if name == "_sock":  # the stdlib transport's own socket: as get_extra_info("socket")
            self._conn.note_socket(value)
        return value


# Per loop transport class, the class of its views (see counted_transport).
_view_classes: dict[type, type[CountedTransport]] = {}


def counted_transport(transport: asyncio.BaseTransport, conn: Counter) -> CountedTransport:
    """The view a driver gets of ``transport``.

    A ``__getattr__`` fallback would make every attribute access on a view slow (the getattr
    hook, no specialisation), and a view is used on every write. So when the loop's transport
    class has a fixed set of attributes (uvloop's, which have no instance ``__dict__``), the
    view's class forwards exactly those, made once per transport class; otherwise (the stdlib
    loop's, whose instances carry their own) it falls back to ``__getattr__``.
    """
    kind = type(transport)
    view_class = _view_classes.get(kind)
    if view_class is None:
        view_class = _view_classes[kind] = _view_class_for(kind)
    view = view_class()
    view._transport = transport
    view._conn = conn
    return view


def _view_class_for(kind: type) -> type[CountedTransport]:
    if kind.__dictoffset__:
        return _ForwardingTransport
    namespace: dict[str, Any] = {"__module__": __name__}
    for name in dir(kind):
        if name.startswith("__") or name in vars(CountedTransport):
            continue  # Python's own machinery, or what the view itself does
        namespace[name] = _forward(name)
    return type(f"Counted{kind.__name__}", (CountedTransport,), namespace)
