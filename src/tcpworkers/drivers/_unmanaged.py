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

Exempt: sockets connected to an endpoint the runtime registered with
:func:`register_local_endpoint` (the pool binding's listener for libpq), and in-process pairs
(``socket.socketpair``: Unix sockets with no name). Outside any request scope nothing is
checked: a plain asyncio program runs psycopg as usual.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Callable
from typing import Any

from tcpworkers.errors import UnmanagedSocketError

__all__ = ["check_unmanaged_fd", "register_local_endpoint"]

_STREAM_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)

_endpoints: dict[object, int] = {}  # endpoint -> registrations
_lock = threading.Lock()


def _normalise(endpoint: str | tuple[str, int]) -> object:
    if isinstance(endpoint, str):
        return os.path.realpath(endpoint)
    host, port = endpoint
    return (host.lower(), int(port))


def register_local_endpoint(endpoint: str | tuple[str, int]) -> Callable[[], None]:
    """Let drivers that open their own sockets (libpq) reach ``endpoint`` inside requests.

    For the runtime's own local listeners, such as the pool binding's socket for libpq: the
    binding applies the policy and the limits to the server connections it makes itself.

    Args:
        endpoint: a Unix socket path, or ``(ip, port)`` of a loopback listener.

    Returns:
        A function that removes the registration (idempotent).
    """
    key = _normalise(endpoint)
    with _lock:
        _endpoints[key] = _endpoints.get(key, 0) + 1
    done = False

    def unregister() -> None:
        nonlocal done
        with _lock:
            if done:
                return
            done = True
            left = _endpoints.get(key, 0) - 1
            if left > 0:
                _endpoints[key] = left
            else:
                _endpoints.pop(key, None)

    return unregister


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
        try:
            peer: Any = sock.getpeername()
        except OSError:
            peer = None  # not connected yet (a remote TCP connect in progress) or a listener
        if sock.family == socket.AF_UNIX:
            if peer in ("", b"") or (peer is None and _is_listening(sock)):
                return  # a socketpair, or a server socket: nothing leaves the process
            where = f"unix:{peer}" if peer else "a Unix socket"
            key: object = os.path.realpath(peer) if isinstance(peer, str) and peer else None
        else:
            if peer is None and _is_listening(sock):
                return
            where = f"{peer[0]}:{peer[1]}" if peer else "an address it connected to itself"
            key = (str(peer[0]).lower(), int(peer[1])) if peer else None
    finally:
        sock.detach()  # the fd stays open: it is the driver's
    if key is not None and key in _endpoints:
        return
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
