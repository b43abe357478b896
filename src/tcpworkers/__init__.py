"""tcpworkers: Cloudflare-Workers-style outbound sockets for Python.

``connect()`` opens plain, TLS and STARTTLS connections with the Workers semantics and works in
any asyncio program::

    from tcpworkers import connect

    async with connect("db.internal:5432") as sock:
        await sock.writable.write(b"...")
        reply = await sock.readable.read()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tcpworkers import errors
from tcpworkers._version import __version__ as __version__
from tcpworkers.sockets import Socket, SocketInfo, TlsOptions, connect

if TYPE_CHECKING:
    from tcpworkers._loop import run
    from tcpworkers.http import Headers, Request, Response, fetch
    from tcpworkers.runtime import Env, ExecutionContext, WorkerEntrypoint

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

# Loaded on first use (module __getattr__, PEP 562): `from tcpworkers import connect` in a plain
# asyncio program must not pay for the runtime, uvicorn, httpx or the gated loop.
_LAZY: dict[str, str] = {
    "Env": "tcpworkers.runtime",
    "ExecutionContext": "tcpworkers.runtime",
    "WorkerEntrypoint": "tcpworkers.runtime",
    "Headers": "tcpworkers.http",
    "Request": "tcpworkers.http",
    "Response": "tcpworkers.http",
    "fetch": "tcpworkers.http",
    "run": "tcpworkers._loop",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tcpworkers' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once loaded, an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
