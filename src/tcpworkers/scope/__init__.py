"""The request scope: who owns a connection, how many may be open at once, and the clean-up.

A :class:`RequestScope` is current for one request (a contextvar, so tasks the handler starts
inherit it). Every connection opened inside it — by ``connect()`` or by a driver on the gated
loop — takes a slot (at most ``max_sockets`` at once; more wait, FIFO, up to ``slot_timeout``),
is counted in :class:`ScopeStats`, and is closed when the scope ends. :func:`request_scope` runs a
block as one request. This is asyncio code; the decisions it applies are the sans-IO
``tcpworkers.egress`` policy.
"""

from tcpworkers.scope._current import (
    check_connections_allowed,
    current_scope,
    forbid_connections,
    request_scope,
    use_scope,
)
from tcpworkers.scope._scope import (
    CLEANUP_GRACE,
    DEFAULT_MAX_SOCKETS,
    DEFAULT_SLOT_TIMEOUT,
    RequestScope,
    ScopedResource,
    ScopeStats,
)

__all__ = [
    "CLEANUP_GRACE",
    "DEFAULT_MAX_SOCKETS",
    "DEFAULT_SLOT_TIMEOUT",
    "RequestScope",
    "ScopeStats",
    "ScopedResource",
    "check_connections_allowed",
    "current_scope",
    "forbid_connections",
    "request_scope",
    "use_scope",
]
