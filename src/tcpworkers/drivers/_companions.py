"""Connections a driver opens *because of* another one: the gate must not treat them as new.

Two driver habits, each checked against the pinned driver versions by tests/drivers/:

**Query cancellation.** PostgreSQL cancels a running query only through a second connection
that carries a CancelRequest (backend pid + secret key); asyncpg opens it from a background
task (``Connection._cancel``) when a query times out or its task is cancelled. In a request at
its socket limit, that connection would wait for a slot held by the very connection it is
cancelling: the query runs on, the slot never frees, and asyncpg terminates the connection once
``slot_timeout`` expires. :func:`is_cancel_request` recognises the task, and the gate admits the
connection at once, over the limit (still policy-checked, counted and closed at request end; it
lives for one round trip). Driver tasks are recognised by module and qualified name in
:data:`CANCEL_TASKS`.

**TLS upgrade by re-connecting the same socket.** The MySQL drivers (asyncmy, aiomysql) switch to
TLS mid-handshake by duplicating the socket's file descriptor, closing their plain transport and
calling ``create_connection(sock=<the duplicate>, ssl=...)``. It is the same TCP connection: the
gate recognises it by the socket's identity (the inode every duplicate of a socket shares) among
the request's open connections and lets the new transport take over the old one's slot. A
driver must ask its transport for the raw socket (``get_extra_info("socket")``) to duplicate
it; the scope notes the sockets handed out that way (``RequestScope.note_socket``, with no
system call), and the inodes are read only when a driver re-connects on a given socket, so an
ordinary connection pays no system call for this.
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any, Final, Protocol

from tcpworkers.scope import RequestScope, ScopedResource

__all__ = [
    "CANCEL_TASKS",
    "claim_slot",
    "describe_peer",
    "is_cancel_request",
    "same_socket_as",
    "take_slot",
]

# (module, qualified name) of coroutines that only ever open a connection to cancel a query.
CANCEL_TASKS: Final = frozenset({("asyncpg.connection", "Connection._cancel")})

# Per coroutine code object: (the code object, whether it is one of CANCEL_TASKS). Asked on every
# connection a request opens, so the answer is remembered; a few driver functions ever open
# connections, so the table stays small (and is bounded anyway).
_CANCEL_CACHE_SIZE: Final = 256
_cancel_codes: dict[int, tuple[Any, bool]] = {}


def is_cancel_request() -> bool:
    """True when the running task is a driver's query cancellation (see the module docstring)."""
    task = asyncio.current_task()
    if task is None:
        return False
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None)
    entry = _cancel_codes.get(id(code))
    if entry is not None and entry[0] is code:
        return entry[1]
    return _first_sight(coro, code)


def _first_sight(coro: Any, code: Any) -> bool:
    """Whether ``coro`` (whose code object is ``code``) is one of :data:`CANCEL_TASKS`, decided
    and remembered."""
    if code is None:
        return False
    frame = getattr(coro, "cr_frame", None)
    if frame is None:
        return False  # a finished coroutine: nothing to remember
    answer = (frame.f_globals.get("__name__"), code.co_qualname) in CANCEL_TASKS
    if len(_cancel_codes) >= _CANCEL_CACHE_SIZE:
        _cancel_codes.clear()
    _cancel_codes[id(code)] = (code, answer)
    return answer


class _Described(ScopedResource, Protocol):
    description: str
    bytes_in: int
    bytes_out: int


def claim_slot(scope: RequestScope, conn: _Described, sock: Any) -> bool:
    """Give ``conn`` a slot now if it can have one (see :func:`take_slot`), or if ``sock`` is a
    duplicate of the socket of a connection its driver just closed (the MySQL drivers' TLS
    upgrade): then ``conn`` continues that connection, its slot and its byte counts.

    Returns:
        False when ``conn`` must wait for a slot: the caller awaits ``scope.acquire(conn)``.
        (Synchronous, so the common case costs no coroutine.)
    """
    # same_socket_as() only when the request has noted a socket at all (most have not, when
    # their driver hands over a socket it connected itself, as aiohttp does): a frame fewer.
    noted = () if sock is None else scope.noted_sockets()
    previous = same_socket_as(scope, sock, noted) if noted else None
    if previous is None:
        return take_slot(scope, conn)
    conn.bytes_in, conn.bytes_out = previous.bytes_in, previous.bytes_out
    scope.hand_over(previous, conn)
    return True


def take_slot(scope: RequestScope, conn: _Described) -> bool:
    """Take a free slot for ``conn``, or admit a query cancellation at once, over the limit.

    Returns:
        False when ``conn`` must wait for a slot: the caller awaits ``scope.acquire(conn)``.
    """
    if is_cancel_request():
        conn.description += " (query cancellation)"
        scope.admit(conn)
        return True
    return scope.try_acquire(conn)


def describe_peer(family: int, peer: Any | None) -> str | tuple[Any, ...]:
    """What a ``TrackedConnection`` describes a socket a driver handed over by: ``peer`` (its
    ``getpeername()``; ``None``: not connected), rendered as ``127.0.0.1:5432`` when first read,
    or ``unix:/path``. ``family`` is the socket's, as an int."""
    if peer is None:
        return "connection to a given socket (driver)"
    if family == socket.AF_UNIX:
        return f"connection to unix:{peer} (driver)"
    return tuple(peer)


def _identity(sock: Any) -> int | None:
    """The inode of a socket (shared by every duplicate of its file descriptor)."""
    try:
        return os.fstat(sock.fileno()).st_ino
    except (OSError, AttributeError, ValueError):
        return None


def same_socket_as(
    scope: RequestScope,
    sock: Any,
    noted: tuple[tuple[ScopedResource, object], ...] | None = None,
) -> ScopedResource | None:
    """The open connection of ``scope`` that already runs on ``sock`` (a duplicate of its
    file descriptor), if any. ``noted``: ``scope.noted_sockets()``, when the caller has it.

    Only a connection its driver has just closed is continued. Its file descriptor is still
    open then (both loops close it a loop pass after ``transport.close()``, and the MySQL
    drivers re-connect in the same step), so the two inodes can be compared; were it closed,
    the inodes would differ and the new connection would take its own slot.
    """
    if noted is None:
        noted = scope.noted_sockets()
    if not noted:
        return None
    identity = _identity(sock)
    if identity is None:
        return None
    for owner, raw in reversed(noted):
        if scope.owns(owner) and owner.is_done() and _identity(raw) == identity:
            return owner
    return None
