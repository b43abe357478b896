"""Existing asyncio drivers (asyncpg, redis.asyncio, aiosmtplib, ...) through the gate.

Run the program on a gated loop (``tcpworkers.run`` does; or pass
``gated_loop_factory()`` to ``asyncio.Runner``) and every connection a driver opens inside a
request scope is checked against the request's egress policy, counted against its limit and
closed when the request ends, exactly like ``connect()`` sockets. Outside request scopes the
process-wide default policy decides (in a served runtime, the configured one). Drivers that
open their own sockets without asyncio (libpq under psycopg 3) are refused inside a request
(``UnmanagedSocketError``), except towards the runtime's own local endpoints (a pool binding).
"""

from tcpworkers.drivers._loop import (
    GatedEventLoop,
    GateMixin,
    gated_loop_factory,
    new_gated_loop,
)

__all__ = ["GateMixin", "GatedEventLoop", "gated_loop_factory", "new_gated_loop"]
