"""Sockets a driver opened itself (libpq under psycopg 3): refused inside a request.

Theory of operation. psycopg 3's async connections are libpq connections: libpq resolves (or
psycopg does, with ``loop.getaddrinfo``), creates and connects its own socket, then psycopg
waits for it with ``loop.add_reader``/``loop.add_writer``. No ``create_connection`` happens, so
the gate cannot choose the address, hold a slot while the request waits, count bytes, or close
the connection when the request ends without closing a file descriptor libpq still owns.

The decision (issue 11): inside a request scope, the gated loop refuses ``add_reader`` and
``add_writer`` on a *connected stream socket it did not open* (TCP, or a named Unix socket)
with :class:`~tcpworkers.errors.UnmanagedSocketError`, whose message names the fix: the pool
binding (``env.DB.connection_string``), which psycopg can connect to and which runs the server
connections itself, or an asyncio driver such as asyncpg. The check runs on the first wait, after
libpq's TCP connect and before it has sent a byte (it waits for the socket to be writable first),
so no start-up packet, password or query leaves.

Exempt: sockets connected to a local endpoint the runtime registered
(``tcpworkers.egress._local``: the pool binding's Unix socket, which libpq can reach), in-process
pairs (``socket.socketpair``: Unix sockets with no name), listeners, UDP and anything that is not
a socket. Outside any request scope, and for the runtime's own trusted connections, nothing is
checked: a plain asyncio program runs psycopg as usual.
"""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVarTuple

from tcpworkers.egress._local import is_local_endpoint
from tcpworkers.errors import UnmanagedSocketError
from tcpworkers.scope import RequestScope, current_scope
from tcpworkers.scope._trust import is_trusted

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

__all__ = ["UnmanagedSocketsMixin", "check_unmanaged_fd"]

_Ts = TypeVarTuple("_Ts")
_STREAM_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


class UnmanagedSocketsMixin:
    """``add_reader``/``add_writer`` of the gated loop: refuse unmanaged sockets in requests."""

    def add_reader(
        self, fd: FileDescriptorLike, callback: Callable[[*_Ts], object], *args: *_Ts
    ) -> None:
        scope = current_scope()
        if scope is not None and not is_trusted():
            _refuse(scope, fd)
        base: Any = super()  # the event loop class this mixin is combined with
        base.add_reader(fd, callback, *args)

    def add_writer(
        self, fd: FileDescriptorLike, callback: Callable[[*_Ts], object], *args: *_Ts
    ) -> None:
        scope = current_scope()
        if scope is not None and not is_trusted():
            _refuse(scope, fd)
        base: Any = super()
        base.add_writer(fd, callback, *args)


def _refuse(scope: RequestScope, fd: Any) -> None:
    try:
        check_unmanaged_fd(fd, scope.label)
    except UnmanagedSocketError:
        scope.record_denial()
        raise


def _fileno(fd: Any) -> int:
    if isinstance(fd, int):
        return fd
    fileno: int = fd.fileno()
    return fileno


def check_unmanaged_fd(fd: Any, label: str) -> None:
    """Raise :class:`UnmanagedSocketError` if ``fd`` is a connected stream socket to anything
    but a registered local endpoint (see the module docstring). Cheap for everything else.

    Args:
        fd: what was passed to ``add_reader``/``add_writer`` (an int or an object with
            ``fileno()``).
        label: how the message names the request.
    """
    number = _fileno(fd)
    try:
        if not stat.S_ISSOCK(os.fstat(number).st_mode):
            return  # a pipe, an eventfd, a terminal: not a network connection
    except OSError:
        return  # not an open fd: the base loop reports that as it always does
    sock = socket.socket(fileno=number)
    try:
        if sock.family not in _STREAM_FAMILIES or sock.type != socket.SOCK_STREAM:
            return  # UDP (a DNS resolver), netlink, ...
        if _is_listening(sock):
            return
        try:
            peer: Any = sock.getpeername()
        except OSError:
            peer = None  # not connected yet (a remote TCP connect in progress)
        if sock.family == socket.AF_UNIX:
            if peer in ("", b""):
                return  # a socketpair: nothing leaves the process
            if isinstance(peer, str) and is_local_endpoint(peer):
                return  # the runtime's own listener (a pool binding)
            where = f"unix:{peer}" if peer else "a Unix socket"
        else:
            where = f"{peer[0]}:{peer[1]}" if peer else "an address it connected to itself"
    finally:
        sock.detach()  # the fd stays open: it is the driver's
    raise UnmanagedSocketError(
        f"{label}: a driver opened its own socket to {where} (libpq, as under psycopg 3, "
        "connects without asyncio), which the tcpworkers gate can neither check nor count nor "
        "close at the end of the request, so it is refused here. Connect psycopg to the pool "
        "binding instead (psycopg.AsyncConnection.connect(env.DB.connection_string)), or use "
        "an asyncio driver such as asyncpg"
    )


def _is_listening(sock: socket.socket) -> bool:
    try:
        return bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
    except OSError:
        return False
