"""``connect()``: validate arguments synchronously, then open the connection in the background."""

from __future__ import annotations

import asyncio
import math
import ssl
from typing import Final, get_args

from tcpworkers.scope import check_connections_allowed, current_scope
from tcpworkers.sockets._address import parse_address
from tcpworkers.sockets._dial import current_dialer
from tcpworkers.sockets._socket import SecureTransport, Socket
from tcpworkers.sockets._tls import TlsOptions, client_context

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "check_seconds", "connect"]

# What connect_timeout=None means. Long enough for a TLS handshake across continents, short
# enough that a request does not hang on a black-holed address for the kernel's ~2 minutes.
DEFAULT_CONNECT_TIMEOUT: Final = 30.0
_SECURE_TRANSPORTS: Final = get_args(SecureTransport)


def connect(
    address: object,
    *,
    secure_transport: SecureTransport = "off",
    allow_half_open: bool = False,
    tls: TlsOptions | ssl.SSLContext | None = None,
    connect_timeout: float | None = None,
    high_water_mark: int = 65536,
) -> Socket:
    """Open an outbound TCP connection; return its ``Socket`` at once.

    Never raises for a network failure: a refused, unreachable, unresolvable, timed-out or
    TLS-failed connection rejects ``sock.opened`` and ``sock.closed`` with a ``ConnectError``.
    Must be called from a coroutine running in an asyncio event loop.

    Args:
        address: ``"host:port"``, ``"[v6]:port"``, ``{"hostname": h, "port": p}`` or ``(h, p)``.
        secure_transport: ``"off"`` (plain TCP), ``"on"`` (TLS from the start) or
            ``"starttls"`` (plain until ``sock.start_tls()``).
        allow_half_open: keep the socket writable after the peer's EOF (plain TCP only; by
            default the write side is flushed and closed when the peer ends the stream).
        tls: ``TlsOptions`` or a ready client ``ssl.SSLContext``; certificate and host name
            verification are on by default.
        connect_timeout: seconds for resolution, TCP connect and the TLS handshake together;
            ``None`` means ``DEFAULT_CONNECT_TIMEOUT`` (30 s).
        high_water_mark: bytes of unsent data above which ``write()`` waits (backpressure);
            also how much received, unread data is buffered before reading from the network
            pauses.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: an argument has a bad value (the message says which forms are accepted).
        RuntimeError: there is no running event loop.
        ConnectNotAllowedError: connections cannot be opened here (a worker module being
            imported: open sockets inside a request handler).
    """
    check_connections_allowed()
    host_port = parse_address(address)
    if secure_transport not in _SECURE_TRANSPORTS:
        raise ValueError(
            f"secure_transport must be 'off', 'on' or 'starttls', not {secure_transport!r}"
        )
    if not isinstance(allow_half_open, bool):
        raise TypeError("allow_half_open must be a bool")
    timeout = _check_timeout(connect_timeout)
    if not isinstance(high_water_mark, int) or isinstance(high_water_mark, bool):
        raise TypeError("high_water_mark must be an int")
    if high_water_mark < 0:
        raise ValueError(f"high_water_mark must be >= 0, got {high_water_mark}")
    if tls is not None and secure_transport == "off":
        raise ValueError(
            "tls options were given but secure_transport='off'; pass "
            "secure_transport='on' (TLS now) or 'starttls' (TLS after start_tls())"
        )
    context = None if secure_transport == "off" else client_context(tls)
    server_hostname = tls.server_hostname if isinstance(tls, TlsOptions) else None
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "connect() must be called from a coroutine running in an asyncio "
            "event loop, e.g. inside asyncio.run(main())"
        ) from None
    return Socket(
        host_port,
        secure_transport=secure_transport,
        allow_half_open=allow_half_open,
        tls_context=context,
        server_hostname=server_hostname,
        connect_timeout=timeout,
        high_water_mark=high_water_mark,
        dialer=current_dialer(),
        scope=current_scope(),
    )


def _check_timeout(value: float | None) -> float:
    if value is None:
        return DEFAULT_CONNECT_TIMEOUT
    return check_seconds(value, "connect_timeout")


def check_seconds(value: object, name: str) -> float:
    """``value`` as positive seconds (``inf`` allowed), for an argument that also takes None.

    Raises:
        TypeError: not a number (``bool`` is not one here).
        ValueError: NaN, zero or negative.
    """
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number of seconds or None, not {type(value).__name__}")
    if math.isnan(value) or value <= 0:
        raise ValueError(f"{name} must be positive seconds or None, got {value}")
    return float(value)
