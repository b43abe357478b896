"""Local endpoints: listeners the runtime itself serves to workers (a pool binding's socket).

A worker reaching such an endpoint is not egress: the connection never leaves the runtime, and
what lies behind it (the database) is the operator's configuration. So the gate lets a
connection to a registered endpoint through whatever the egress policy says (it works under
``serve``, whose policy refuses loopback), but still counts it against the request's socket
limit and closes it when the request ends, like any other connection the request opened.

Endpoints are unix socket paths, registered by the runtime while it listens on them.
"""

from __future__ import annotations

import os

__all__ = ["is_local_endpoint", "register_local_endpoint", "unregister_local_endpoint"]

_ENDPOINTS: set[str] = set()


def _key(path: str) -> str:
    return os.path.normpath(path)


def register_local_endpoint(path: str) -> None:
    """Make ``path`` (a unix socket the runtime listens on) reachable from every request."""
    _ENDPOINTS.add(_key(path))


def unregister_local_endpoint(path: str) -> None:
    """Forget ``path`` (idempotent); connections to it are decided by the policy again."""
    _ENDPOINTS.discard(_key(path))


def is_local_endpoint(path: str) -> bool:
    """True when ``path`` is a registered runtime endpoint."""
    return bool(_ENDPOINTS) and _key(path) in _ENDPOINTS
