"""tcpworkers: Cloudflare-Workers-style outbound sockets for Python.

``connect()`` opens plain, TLS and STARTTLS connections with the Workers semantics and works in
any asyncio program::

    from tcpworkers import connect

    async with connect("db.internal:5432") as sock:
        await sock.writable.write(b"...")
        reply = await sock.readable.read()
"""

from tcpworkers import errors
from tcpworkers._loop import run
from tcpworkers._version import __version__ as __version__
from tcpworkers.http import fetch
from tcpworkers.runtime import (
    Env,
    ExecutionContext,
    Headers,
    Request,
    Response,
    WorkerEntrypoint,
)
from tcpworkers.sockets import Socket, SocketInfo, TlsOptions, connect

__all__ = [
    "Env",
    "ExecutionContext",
    "Headers",
    "Request",
    "Response",
    "Socket",
    "SocketInfo",
    "TlsOptions",
    "WorkerEntrypoint",
    "connect",
    "errors",
    "fetch",
    "run",
]
