"""The gated loop's other doors: every asyncio entry point that opens or accepts a connection.

``GateMixin`` (``_loop.py``) gates the doors drivers use (``create_connection``,
``create_unix_connection``, ``start_tls``). This mixin closes the rest, so no asyncio API is a
way around the policy:

- ``sock_connect`` is decided like ``create_connection`` (resolve once, connect only to a
  permitted address); the socket it connects is the caller's, so it is not counted or closed by
  the request (hand it to ``create_connection(sock=...)`` for that).
- ``create_datagram_endpoint``: UDP with ``remote_addr`` is decided on that address, counted and
  closed at request end; inside a request an endpoint must be connected (``remote_addr``), since
  ``sendto`` on an unconnected one could reach any address. ``sock_sendto`` is decided per call.
- ``create_server``/``create_unix_server`` (so ``asyncio.start_server`` too) and
  ``connect_accepted_socket``: a worker handles requests, it does not listen or accept; refused
  inside a request.

Outside a request the default policy applies (see ``tcpworkers.scope._trust``), except to the
runtime's and the gate's own connections. What no in-process gate can stop is said in the
README: code that calls the OS directly (``socket.connect``, C extensions) never passes here.
"""

from __future__ import annotations

import _socket
import asyncio
import socket
from collections.abc import Callable
from typing import Any, Final, cast

from tcpworkers.egress import default_policy
from tcpworkers.egress._local import is_local_endpoint
from tcpworkers.errors import ConnectNotAllowedError, EgressDeniedError
from tcpworkers.scope import RequestScope, current_scope
from tcpworkers.scope._current import connection_scope
from tcpworkers.scope._trust import is_trusted
from tcpworkers.sockets._address import format_hostport
from tcpworkers.sockets._dial import Target, current_dialer
from tcpworkers.sockets._gate import decide, permitted_targets, remembered_target

__all__ = [
    "EntryPointsMixin",
    "decide_given_socket",
    "decide_unix",
    "family_of",
    "peer_of",
]

# ``sock.family`` turns the C socket's int into an ``AddressFamily`` through the enum machinery
# (four Python calls per read); the gate reads it for every connection only to compare it, so
# it reads the int itself (the C getter ``socket.socket.family`` wraps) and compares ints.
_family_int: Final = cast(Callable[[Any], int], _socket.socket.family.__get__)
_AF_UNIX: Final = int(socket.AF_UNIX)


def family_of(sock: Any) -> int:
    """``int(sock.family)``: read from the C socket for a real socket; anything else (a socket
    look-alike a caller hands over) is asked as before."""
    return _family_int(sock) if isinstance(sock, _socket.socket) else int(sock.family)


def _refuse(scope: RequestScope, what: str, fix: str) -> ConnectNotAllowedError:
    return ConnectNotAllowedError(f"{what} is not allowed while handling {scope.label}: {fix}")


async def _permitted(scope: RequestScope | None, address: Any, family: int) -> Target:
    """Resolve and check ``address`` (a ``(host, port, ...)`` tuple) under the policy in force."""
    host, port = str(address[0]), int(address[1])
    policy = scope.policy if scope is not None else default_policy()
    targets = await permitted_targets(current_dialer(), policy, host, port, scope)
    if family and (len(targets) > 1 or targets[0].family != family):
        targets = [t for t in targets if t.family == family] or targets
    return targets[0]


def decide_unix(scope: RequestScope | None, path: str, lead: str) -> bool:
    """Decide on a Unix-socket connection to ``path``, for every door that can make one.

    Returns True when ``path`` is the runtime's own listener (a pool binding): not egress, so
    no policy decision; the caller still counts and closes the connection like any other.

    Raises:
        EgressDeniedError: the policy does not permit it; the message starts with ``lead``.
    """
    if is_local_endpoint(path):
        return True
    policy = scope.policy if scope is not None else default_policy()
    decision = policy.decide_unix(path)
    if not decision.allowed:
        if scope is not None:
            scope.record_denial()
        raise EgressDeniedError(f"{lead}denied by the egress policy ({decision.reason})")
    return False


def peer_of(sock: socket.socket) -> Any | None:
    """``sock.getpeername()``, or ``None`` when it is not connected."""
    try:
        return sock.getpeername()
    except OSError:
        return None


def decide_given_socket(
    scope: RequestScope | None, sock: socket.socket, peer: Any | None = None, family: int = -1
) -> None:
    """A caller that connected its own socket: decide on the peer it actually reached.

    Args:
        peer: ``peer_of(sock)`` when the caller has it already (one system call fewer).
        family: ``family_of(sock)`` when the caller has it already.

    Raises:
        ConnectNotAllowedError: the socket is not connected (nothing to decide on).
        EgressDeniedError: the policy does not permit the peer.
    """
    if peer is None:
        peer = peer_of(sock)
    if peer is None:
        raise ConnectNotAllowedError(
            "create_connection(sock=...) needs a connected socket so the egress policy can "
            "decide on its peer; pass host and port instead and let the gate connect"
        )
    if (family if family >= 0 else family_of(sock)) == _AF_UNIX:
        decide_unix(scope, str(peer), "connection ")
        return
    policy = scope.policy if scope is not None else default_policy()
    decision = decide(policy, peer[0], peer[0], peer[1])
    if not decision.allowed:
        if scope is not None:
            scope.record_denial()
        raise EgressDeniedError(f"connection denied by the egress policy ({decision.reason})")


class _DatagramEndpoint:
    """A connected UDP endpoint as its request scope sees it (a ``ScopedResource``)."""

    opened_by_driver = True

    def __init__(self, scope: RequestScope, description: str) -> None:
        self.scope = scope
        self.description = description
        self.transport: asyncio.DatagramTransport | None = None
        self.bytes_in = 0
        self.bytes_out = 0

    def describe(self) -> str:
        return self.description

    def is_done(self) -> bool:
        return self.transport is not None and self.transport.is_closing()

    async def close(self) -> None:
        self.abort()  # nothing to flush: a datagram is sent whole or not at all

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.scope.release(self)


class _DatagramProxy(asyncio.DatagramProtocol):
    def __init__(self, app: asyncio.DatagramProtocol, endpoint: _DatagramEndpoint) -> None:
        self._app = app
        self._endpoint = endpoint

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._endpoint.transport = cast(asyncio.DatagramTransport, transport)
        self._app.connection_made(self._endpoint.transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._endpoint.bytes_in += len(data)
        self._app.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        self._app.error_received(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self._app.connection_lost(exc)
        finally:
            self._endpoint.scope.release(self._endpoint)

    def pause_writing(self) -> None:
        self._app.pause_writing()

    def resume_writing(self) -> None:
        self._app.resume_writing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)


class EntryPointsMixin:
    """Gates or refuses the loop's remaining connection entry points (see module docstring)."""

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        base: Any = super()  # the event loop class this mixin is combined with
        if is_trusted():
            return cast(None, await base.sock_connect(sock, address))
        scope = connection_scope()  # raises where connections are forbidden
        family = family_of(sock)
        # Neither base loop's sock_connect calls a gated method, nor any code of the caller's,
        # so the connect needs no trusted block (which would cost four contextvar operations).
        if family == _AF_UNIX:
            decide_unix(scope, str(address), f"could not connect to {address}: ")
            await base.sock_connect(sock, address)
            return
        # What the gate permitted before for a host that needs no resolver (aiohttp connects
        # this way to every IP literal): no coroutine to decide it again. Denials are never
        # remembered, so a denied address is decided (and counted) every time.
        policy = scope.policy if scope is not None else default_policy()
        target = remembered_target(policy, str(address[0]), int(address[1]))
        if target is None:
            target = await _permitted(scope, address, family)
        await base.sock_connect(sock, target.sockaddr)

    async def sock_sendto(self, sock: socket.socket, data: Any, address: Any) -> int:
        base: Any = super()
        if is_trusted():
            return cast(int, await base.sock_sendto(sock, data, address))
        target = await _permitted(connection_scope(), address, family_of(sock))
        return cast(int, await base.sock_sendto(sock, data, target.sockaddr))

    async def create_datagram_endpoint(  # type: ignore[no-untyped-def]
        self, protocol_factory, local_addr=None, remote_addr=None, **kwargs
    ):
        base: Any = super()
        family: int = kwargs.pop("family", 0)
        sock: socket.socket | None = kwargs.pop("sock", None)
        if is_trusted():
            return await base.create_datagram_endpoint(
                protocol_factory, local_addr, remote_addr, family=family, sock=sock, **kwargs
            )
        scope = connection_scope()  # raises where connections are forbidden
        if sock is not None:
            if scope is not None:
                raise _refuse(
                    scope,
                    "create_datagram_endpoint(sock=...)",
                    "pass remote_addr=(host, port) and let the gate open the endpoint",
                )
            return await base.create_datagram_endpoint(protocol_factory, sock=sock, **kwargs)
        if remote_addr is None:
            if scope is not None:
                raise _refuse(
                    scope,
                    "an unconnected UDP endpoint (no remote_addr)",
                    "its sendto() could reach any address; pass remote_addr=(host, port)",
                )
            return await base.create_datagram_endpoint(
                protocol_factory, local_addr, family=family, **kwargs
            )
        # Decided on the target; the endpoint is made in the caller's context, not trusted, so
        # its protocol's callbacks run there (see sockets/_open.py). The stdlib loop's
        # sock_connect underneath decides the same address again.
        if scope is None:
            target = await _permitted(None, remote_addr, family)
            return await base.create_datagram_endpoint(
                protocol_factory,
                local_addr,
                target.sockaddr,
                family=target.family,
                **kwargs,
            )
        where = format_hostport(str(remote_addr[0]), int(remote_addr[1]))
        endpoint = _DatagramEndpoint(scope, f"UDP endpoint to {where} (driver)")
        await scope.acquire(endpoint)
        try:
            target = await _permitted(scope, remote_addr, family)
            transport, proxy = await base.create_datagram_endpoint(
                lambda: _DatagramProxy(protocol_factory(), endpoint),
                local_addr,
                target.sockaddr,
                family=target.family,
                **kwargs,
            )
        except BaseException:
            scope.release(endpoint)
            raise
        return transport, cast(_DatagramProxy, proxy)._app

    async def create_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        scope = current_scope()
        if scope is not None and not is_trusted():
            raise _refuse(scope, "listening (create_server/start_server)", _NO_LISTEN)
        base: Any = super()
        return cast(asyncio.Server, await base.create_server(*args, **kwargs))

    async def create_unix_server(self, *args: Any, **kwargs: Any) -> asyncio.Server:
        scope = current_scope()
        if scope is not None and not is_trusted():
            raise _refuse(scope, "listening (create_unix_server/start_unix_server)", _NO_LISTEN)
        base: Any = super()
        return cast(asyncio.Server, await base.create_unix_server(*args, **kwargs))

    async def connect_accepted_socket(self, *args: Any, **kwargs: Any) -> Any:
        scope = current_scope()
        if scope is not None and not is_trusted():
            raise _refuse(scope, "connect_accepted_socket() (accepting connections)", _NO_LISTEN)
        base: Any = super()
        return await base.connect_accepted_socket(*args, **kwargs)


_NO_LISTEN = (
    "a worker answers the requests the runtime gives it and does not listen or accept "
    "connections itself; open outbound connections with connect() instead"
)
