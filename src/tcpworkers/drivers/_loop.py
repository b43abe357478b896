"""An event loop that routes existing drivers' connections through the gate.

Theory of operation. asyncio drivers (asyncpg, redis.asyncio, aiomysql, aiosmtplib, httpx via
anyio, ``asyncio.open_connection``) open connections with ``loop.create_connection`` or
``loop.create_unix_connection`` and upgrade them with ``loop.start_tls``. The gated loop overrides
those three methods. Outside a request scope they do exactly what the base loop does. Inside
one, ``create_connection``:

1. takes a slot in the scope (waiting while the request is at its limit);
2. resolves the host once and keeps the addresses the request's egress policy permits
   (``EgressDeniedError``, an ``OSError``, if none), then dials one of exactly those addresses;
3. hands the connected socket to the base loop (``sock=``), with TLS if asked;
4. wraps the driver's protocol in a thin proxy that counts received bytes and frees the slot
   when the connection is lost, and registers the connection with the scope, which closes it
   if the request ends while it is still open.

``start_tls`` on a tracked connection re-wraps the driver's protocol, because the TLS layer
replaces the transport's protocol: the proxy must sit above it to see the loss.

Some drivers replace the transport's protocol themselves (asyncpg's ``set_protocol`` after its
SSLRequest exchange), which takes the proxy out of the path. The scope asks the connection
whenever it needs to know (a request waits for a slot, the request ends): a transport that is
closing has ended, and an open one gets the proxy put back in front of the driver's protocol
(``set_protocol`` again), so its ``connection_lost`` frees the slot at once from then on and the
clean-up at request end hears the close instead of waiting out the grace period. Bytes are
counted only while the proxy is in place.

A ``create_unix_connection`` to a registered local endpoint (a pool binding's socket) is not
egress: no policy decision, but the same slot, tracking and clean-up; when the endpoint has an
in-process connector (``egress._local``), the connection is that connector's transport pair
instead of a kernel socket.

The same mixin serves the stdlib loop and uvloop. The runtime's own connections (the pooler's
server connections, for example) run in ``tcpworkers.scope._trust.trusted_connections()``,
so the worker's policy never applies to them. Outside a request scope every other connection is
decided by the process-wide default policy (in a served runtime, the configured one), so code
that escapes its request (a fresh context, a thread) gets no more than a request would. The
remaining entry points (``sock_connect``, UDP, listening) are in ``_entry.py``; sockets drivers
open without asyncio (libpq) in ``_unmanaged.py``; connections opened because of another one
(query cancellation, the MySQL drivers' TLS re-connect) in ``_companions.py``; the record of
one connection and its protocol proxies in ``_tracked.py``.
"""

from __future__ import annotations

import asyncio
import functools
import os
import socket
import ssl as _ssl
import time
from collections.abc import Callable
from typing import Any

from tcpworkers.drivers._companions import claim_slot, describe_peer, take_slot
from tcpworkers.drivers._counting import CountedTransport, unwrap_protocol
from tcpworkers.drivers._entry import (
    EntryPointsMixin,
    decide_given_socket,
    decide_unix,
    family_of,
    peer_of,
)
from tcpworkers.drivers._tracked import ProxyBase, track
from tcpworkers.drivers._unmanaged import UnmanagedSocketsMixin
from tcpworkers.egress import default_policy
from tcpworkers.egress._local import local_connector
from tcpworkers.scope import RequestScope
from tcpworkers.scope._current import connection_scope
from tcpworkers.scope._trust import is_trusted
from tcpworkers.sockets._dial import current_dialer
from tcpworkers.sockets._gate import remembered_target
from tcpworkers.sockets._open import open_gated

__all__ = ["GateMixin", "GatedEventLoop", "gated_loop_factory", "new_gated_loop"]


# Options of create_connection that make no sense once the gate has dialled the socket itself.
_DIAL_OPTIONS = ("happy_eyeballs_delay", "interleave", "all_errors")


class GateMixin(EntryPointsMixin, UnmanagedSocketsMixin):
    """Overrides the connection-opening methods of an event loop class (see module docstring)."""

    async def create_connection(  # type: ignore[no-untyped-def]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        host: str | None = None,
        port: int | None = None,
        *,
        ssl: _ssl.SSLContext | bool | None = None,
        family: int = 0,
        proto: int = 0,
        flags: int = 0,
        sock: socket.socket | None = None,
        local_addr: tuple[str, int] | None = None,
        server_hostname: str | None = None,
        **kwargs: Any,
    ):
        base: Any = super()  # the event loop class this mixin is combined with
        if is_trusted():
            return await base.create_connection(
                protocol_factory,
                host,
                port,
                ssl=ssl,
                family=family,
                proto=proto,
                flags=flags,
                sock=sock,
                local_addr=local_addr,
                server_hostname=server_hostname,
                **kwargs,
            )
        scope = connection_scope()  # raises where connections are forbidden
        if scope is None:
            return await _outside_scopes(
                base,
                protocol_factory,
                host,
                port,
                ssl=ssl,
                family=family,
                sock=sock,
                local_addr=local_addr,
                server_hostname=server_hostname,
                **kwargs,
            )
        if local_addr is not None:
            raise ValueError(
                "local_addr is not supported for connections made inside a request "
                "(the tcpworkers gate chooses the socket); remove it"
            )
        if kwargs:
            for option in _DIAL_OPTIONS:
                kwargs.pop(option, None)
        # Every connection pays for what follows, so it is written for few Python frames: the
        # description is rendered only when read, the common dial is made from here, not
        # through open_gated's coroutine (see below).
        to = (str(host), int(port or 0))
        if sock is None:
            peer, sock_family = None, -1
            conn = track(scope, to)
            taken = take_slot(scope, conn)
        else:
            peer, sock_family = peer_of(sock), family_of(sock)
            conn = track(scope, describe_peer(sock_family, peer))
            taken = claim_slot(scope, conn, sock)  # or continues a re-connected socket's slot
        if not taken:
            await scope.acquire(conn)
        factory = functools.partial(conn.make_protocol, protocol_factory)
        started = time.perf_counter()
        try:
            if ssl and server_hostname is None:
                server_hostname = host
            if sock is not None:
                try:  # as _on_given_socket does
                    decide_given_socket(scope, sock, peer, sock_family)
                    transport, protocol = await base.create_connection(
                        factory, sock=sock, ssl=ssl, server_hostname=server_hostname, **kwargs
                    )
                except BaseException:
                    sock.close()
                    raise
            else:
                # open_gated's own shortcut, without its coroutine: the one address the gate
                # permitted before for a host that needs no resolver, dialled by the loop
                # itself where that is not gated again (uvloop; see _dials_ungated there).
                target = (
                    None
                    if isinstance(self, asyncio.BaseEventLoop)
                    else remembered_target(scope.policy, to[0], to[1], dials=True)
                )
                if target is not None:
                    transport, protocol = await base.create_connection(
                        factory,
                        target.sockaddr[0],
                        target.sockaddr[1],
                        ssl=ssl,
                        server_hostname=server_hostname,
                        **kwargs,
                    )
                else:
                    transport, protocol = await open_gated(
                        base.create_connection,
                        factory,
                        to[0],
                        to[1],
                        policy=scope.policy,
                        scope=scope,
                        dialer=current_dialer(),
                        family=family,
                        ssl=ssl,
                        server_hostname=server_hostname,
                        **kwargs,
                    )
        except BaseException:
            scope.release(conn)
            raise
        finally:
            scope.record_connect(time.perf_counter() - started)
        # The protocol the loop made is conn's proxy around the driver's (no cast(): a call);
        # its connection_made made the view of this transport, which view() returns.
        return conn.view(transport), protocol._app

    async def create_unix_connection(  # type: ignore[no-untyped-def]
        self,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        path: str | None = None,
        **kwargs: Any,
    ):
        base: Any = super()  # the event loop class this mixin is combined with
        if is_trusted():
            return await base.create_unix_connection(protocol_factory, path, **kwargs)
        scope = connection_scope()  # raises where connections are forbidden
        local = False  # the runtime's own listener (a pool binding)
        if path is not None or kwargs.get("sock") is None:
            local = decide_unix(scope, str(path), f"could not connect to {path}: ")
        else:
            decide_given_socket(scope, kwargs["sock"])
        # A binding served in-process (no TLS or socket options asked): no kernel socket.
        connector = local_connector(str(path)) if local and not kwargs else None
        if scope is None:
            if connector is not None:
                return await connector(protocol_factory)
            # Decided; not trusted, so the transport runs its callbacks in the caller's context
            # (see _open.py). The stdlib loop's sock_connect underneath decides it again.
            return await base.create_unix_connection(protocol_factory, path, **kwargs)
        # Still counted against the request's limit and closed at request end, binding or not.
        description = (
            f"connection to binding socket {path} (driver)"
            if local
            else f"connection to unix:{path} (driver)"
        )
        conn = track(scope, description)
        if not take_slot(scope, conn):
            await scope.acquire(conn)
        factory = functools.partial(conn.make_protocol, protocol_factory)
        try:
            if connector is not None:
                transport, protocol = await connector(factory)
            else:  # as above: in the request's context, whose slot it has already taken
                transport, protocol = await base.create_unix_connection(factory, path, **kwargs)
        except BaseException:
            scope.release(conn)
            raise
        return conn.view(transport), protocol._app

    async def start_tls(  # type: ignore[no-untyped-def]
        self,
        transport: asyncio.BaseTransport,
        protocol: asyncio.BaseProtocol,
        sslcontext: _ssl.SSLContext,
        **kwargs: Any,
    ):
        base: Any = super()  # the event loop class this mixin is combined with
        if isinstance(transport, CountedTransport):
            transport = transport.wrapped  # the base loop takes only its own transports
        proxy = transport.get_protocol()
        if not isinstance(proxy, ProxyBase):
            return await base.start_tls(transport, protocol, sslcontext, **kwargs)
        conn = proxy._conn
        protocol = unwrap_protocol(protocol)
        tls_transport = await base.start_tls(transport, conn.wrap(protocol), sslcontext, **kwargs)
        if tls_transport is None:
            return None
        conn.transport = tls_transport
        return conn.view(tls_transport)


async def _on_given_socket(
    base: Any,
    scope: RequestScope | None,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    sock: socket.socket,
    peer: Any | None,
    **kwargs: Any,
) -> Any:
    """A driver that connected its own socket: decide on the peer it reached (``peer``, when
    the caller has it), then build the transport on it (closing the socket if that fails, and
    in a request if the decision does)."""
    if scope is None:
        decide_given_socket(scope, sock, peer)
    try:
        if scope is not None:
            decide_given_socket(scope, sock, peer)
        # The base loop calls no gated method for a connected socket; not trusted, so the
        # transport runs its callbacks in the caller's context (see sockets/_open.py).
        return await base.create_connection(protocol_factory, sock=sock, **kwargs)
    except BaseException:
        sock.close()
        raise


async def _outside_scopes(
    base: Any,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str | None,
    port: int | None,
    *,
    ssl: _ssl.SSLContext | bool | None,
    family: int,
    sock: socket.socket | None,
    local_addr: tuple[str, int] | None,
    server_hostname: str | None,
    **kwargs: Any,
) -> Any:
    """A connection made outside any request: decided by the process-wide default policy (in
    a served runtime, the configured one), neither counted nor closed by anyone but its owner."""
    if ssl and server_hostname is None and sock is None:
        server_hostname = host
    if sock is not None:
        return await _on_given_socket(
            base,
            None,
            protocol_factory,
            sock,
            None,
            ssl=ssl,
            server_hostname=server_hostname,
            **kwargs,
        )
    for option in _DIAL_OPTIONS:
        kwargs.pop(option, None)
    return await open_gated(
        base.create_connection,
        protocol_factory,
        str(host),
        int(port or 0),
        policy=default_policy(),
        scope=None,
        dialer=current_dialer(),
        family=family,
        ssl=ssl,
        server_hostname=server_hostname,
        local_addr=local_addr,
        **kwargs,
    )


class GatedEventLoop(GateMixin, asyncio.SelectorEventLoop):
    """The stdlib event loop with driver connections routed through the gate."""


def _gated_uvloop_class() -> type[asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None

    class GatedUVLoop(GateMixin, uvloop.Loop):  # type: ignore[misc]
        """uvloop with driver connections routed through the gate."""

    return GatedUVLoop


_GatedUVLoop = _gated_uvloop_class()


def gated_loop_factory(*, prefer_uvloop: bool = True) -> Callable[[], asyncio.AbstractEventLoop]:
    """A factory for a gated loop: uvloop-based when installed and preferred, else stdlib."""
    if prefer_uvloop and _GatedUVLoop is not None:
        return _GatedUVLoop
    return GatedEventLoop


class _GatedLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose new loops are gated (``asyncio.run`` in a thread, too)."""

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return new_gated_loop()


def gate_every_new_loop() -> None:
    """Make every loop asyncio creates from now on a gated one (idempotent).

    A served runtime calls this at start-up: a worker that runs ``asyncio.run(...)`` in a
    thread gets a gated loop, so its drivers pass the process-wide default policy too.
    """
    if not isinstance(asyncio.get_event_loop_policy(), _GatedLoopPolicy):
        asyncio.set_event_loop_policy(_GatedLoopPolicy())


def new_gated_loop() -> asyncio.AbstractEventLoop:
    """A new gated loop (uvloop unless ``TCPWORKERS_LOOP=asyncio``); a zero-argument loop
    factory, as ``uvicorn --loop tcpworkers.drivers:new_gated_loop`` expects."""
    prefer_uvloop = os.environ.get("TCPWORKERS_LOOP", "").lower() != "asyncio"
    return gated_loop_factory(prefer_uvloop=prefer_uvloop)()
