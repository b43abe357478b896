"""The current request's scope: a contextvar, and the blocks that set it.

The scope is found through a contextvar so that every task the handler starts inherits it;
``forbid_connections`` marks a context where no connection may be opened at all (while a
worker module is imported).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Iterator
from typing import final

from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import ConnectNotAllowedError
from tcpworkers.scope._scope import (
    DEFAULT_MAX_SOCKETS,
    DEFAULT_SLOT_TIMEOUT,
    RequestScope,
    new_scope,
)

__all__ = [
    "check_connections_allowed",
    "connection_scope",
    "current_scope",
    "enter_scope",
    "forbid_connections",
    "leave_scope",
    "request_scope",
    "use_scope",
]

_current: contextvars.ContextVar[RequestScope | None] = contextvars.ContextVar(
    "tcpworkers_request_scope", default=None
)


_forbidden: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "tcpworkers_connect_forbidden", default=None
)


@contextlib.contextmanager
def forbid_connections(reason: str) -> Iterator[None]:
    """Make every ``connect()`` (and gated driver connection) in this context raise
    ``ConnectNotAllowedError`` with ``reason``: used while a worker module is imported."""
    token = _forbidden.set(reason)
    try:
        yield
    finally:
        _forbidden.reset(token)


def check_connections_allowed() -> None:
    """Raise ``ConnectNotAllowedError`` inside :func:`forbid_connections`."""
    reason = _forbidden.get()
    if reason is not None:
        raise ConnectNotAllowedError(reason)


def connection_scope() -> RequestScope | None:
    """:func:`check_connections_allowed`, then :func:`current_scope`: what every gated door
    asks before opening a connection, in one call (it runs once per connection).

    Raises:
        ConnectNotAllowedError: inside :func:`forbid_connections`.
    """
    reason = _forbidden.get()
    if reason is not None:
        raise ConnectNotAllowedError(reason)
    return _current.get()


def current_scope() -> RequestScope | None:
    """The scope of the request being handled in this context, or ``None`` outside requests."""
    return _current.get()


def use_scope(scope: RequestScope | None) -> contextlib.AbstractContextManager[RequestScope | None]:
    """Make ``scope`` current in this context (``None``: outside any request) without closing
    it on exit."""
    return _UseScope(scope)


@final
class _UseScope:
    # A class, not @contextmanager: this runs several times per request and per connection,
    # and a generator-based context manager costs about three times as much.
    __slots__ = ("_scope", "_token")

    def __init__(self, scope: RequestScope | None) -> None:
        self._scope = scope

    def __enter__(self) -> RequestScope | None:
        self._token = _current.set(self._scope)
        return self._scope

    def __exit__(self, *exc_info: object) -> None:
        _current.reset(self._token)


def enter_scope(scope: RequestScope | None) -> contextvars.Token[RequestScope | None]:
    """Make ``scope`` current; undo with :func:`leave_scope` (for code that cannot use a
    ``with`` block around everything it does)."""
    return _current.set(scope)


def leave_scope(token: contextvars.Token[RequestScope | None]) -> None:
    """Undo :func:`enter_scope`."""
    _current.reset(token)


def request_scope(
    policy: EgressPolicy | None = None,
    *,
    max_sockets: int = DEFAULT_MAX_SOCKETS,
    slot_timeout: float = DEFAULT_SLOT_TIMEOUT,
    label: str = "this request",
) -> contextlib.AbstractAsyncContextManager[RequestScope]:
    """Run a block as one request: connections opened inside belong to it and are closed at the
    end of the block, whatever happens (``async with request_scope(...) as scope:``)."""
    block = _RequestScopeBlock()  # no __init__ of its own: a Python one costs a frame more
    block._scope = new_scope(policy, max_sockets, slot_timeout, label)
    return block


@final
class _RequestScopeBlock:
    # A class, not @asynccontextmanager: entered once per request, and the generator-based one
    # costs about twice as much.
    __slots__ = ("_scope", "_token")

    _scope: RequestScope
    _token: contextvars.Token[RequestScope | None]

    async def __aenter__(self) -> RequestScope:
        self._token = _current.set(self._scope)
        return self._scope

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            if not self._scope.close_if_idle():  # nothing to close: skip a task and a loop pass
                await asyncio.shield(self._scope.aclose())
        finally:
            _current.reset(self._token)
