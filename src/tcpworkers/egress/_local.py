"""Local endpoints: listeners the runtime itself serves to workers (a pool binding's socket).

A worker reaching such an endpoint is not egress: the connection never leaves the runtime, and
what lies behind it (the database) is the operator's configuration. So the gate lets a
connection to a registered endpoint through whatever the egress policy says (it works under
``serve``, whose policy refuses loopback), but still counts it against the request's socket
limit and closes it when the request ends, like any other connection the request opened.

Endpoints are unix socket paths, registered by the runtime while it listens on them. An endpoint
may also have an in-process connector: the gated loop then serves a driver's
``create_unix_connection`` to that path with it (a transport pair, no kernel socket) instead of
connecting to the socket, which stays for code that opens its own sockets (libpq).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = [
    "Connector",
    "is_local_endpoint",
    "local_connector",
    "register_local_endpoint",
    "unregister_local_endpoint",
]

# Called with a protocol factory, returns (transport, protocol), like create_unix_connection.
Connector = Callable[[Callable[[], Any]], Awaitable[tuple[Any, Any]]]

_ENDPOINTS: dict[str, Connector | None] = {}


def _key(path: str) -> str:
    return os.path.normpath(path)


def register_local_endpoint(path: str, connector: Connector | None = None) -> None:
    """Make ``path`` (a unix socket the runtime listens on) reachable from every request;
    with ``connector``, asyncio drivers on the gated loop are served in-process by it."""
    _ENDPOINTS[_key(path)] = connector


def unregister_local_endpoint(path: str) -> None:
    """Forget ``path`` (idempotent); connections to it are decided by the policy again."""
    _ENDPOINTS.pop(_key(path), None)


def local_connector(path: str) -> Connector | None:
    """The in-process connector registered for ``path``, if any."""
    return _ENDPOINTS.get(_key(path)) if _ENDPOINTS else None


def is_local_endpoint(path: str) -> bool:
    """True when ``path`` is a registered runtime endpoint."""
    return bool(_ENDPOINTS) and _key(path) in _ENDPOINTS
