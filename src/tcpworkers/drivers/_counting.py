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
- everything else is passed through. ``GateMixin.start_tls`` unwraps it for the base loop
  (uvloop accepts only its own transports) and wraps the TLS transport it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["CountedTransport", "Counter", "unwrap_protocol"]


class Counter(Protocol):
    """What the wrapper reports to: the gate's record of one driver connection."""

    bytes_out: int

    def wrap(self, protocol: asyncio.BaseProtocol) -> asyncio.BaseProtocol: ...


def unwrap_protocol(protocol: asyncio.BaseProtocol) -> asyncio.BaseProtocol:
    """The driver's own protocol under any number of gate proxies."""
    while True:
        app = getattr(protocol, "_tcpworkers_app", None)
        if app is None:
            return protocol
        protocol = app


class CountedTransport(asyncio.Transport):
    """A driver's view of a gated connection's transport (see the module docstring)."""

    __slots__ = ("_conn", "_transport")

    def __init__(self, transport: asyncio.BaseTransport, conn: Counter) -> None:
        super().__init__()
        self._transport: Any = transport
        self._conn = conn

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

    # -- passed through ---------------------------------------------------------------------

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

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

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return int(self._transport.get_write_buffer_size())

    def get_write_buffer_limits(self) -> tuple[int, int]:
        limits: tuple[int, int] = self._transport.get_write_buffer_limits()
        return limits

    def __getattr__(self, name: str) -> Any:
        # Loop-specific extras (uvloop's, the SSL transport's) the driver may use.
        return getattr(self._transport, name)

    def __repr__(self) -> str:
        return f"<gated {self._transport!r}>"
