"""Existing asyncio drivers (asyncpg, redis.asyncio, aiosmtplib, ...) through the gate.

Run the program on a gated loop (``tcpworkers.run`` does; or pass
``gated_loop_factory()`` to ``asyncio.Runner``) and every connection a driver opens inside a
request scope is checked against the request's egress policy, counted against its limit and
closed when the request ends, exactly like ``connect()`` sockets. Drivers that open their own
sockets outside asyncio (libpq under psycopg 3) are refused inside a request
(``UnmanagedSocketError``), except towards endpoints the runtime registered with
:func:`register_local_endpoint` (the pool binding's listener).
"""

from tcpworkers.drivers._loop import (
    GatedEventLoop,
    GateMixin,
    gated_loop_factory,
    new_gated_loop,
    ungated,
)
from tcpworkers.drivers._unmanaged import register_local_endpoint

__all__ = [
    "GateMixin",
    "GatedEventLoop",
    "gated_loop_factory",
    "new_gated_loop",
    "register_local_endpoint",
    "ungated",
]
