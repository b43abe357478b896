"""The one gated opener: resolve, keep what the egress policy permits, connect to exactly that.

Both ``connect()`` sockets and the gated event loop's ``create_connection`` (existing drivers)
open their connections here, so the decision and the dial are written once. The caller passes
its loop's ``create_connection`` (for the gated loop, the *base* loop's) and everything the
transport needs; the address the transport ends up on is always one the policy checked.

The transport is created in the caller's context, never inside ``trusted_connections()``: a
transport runs its protocol's callbacks in the context it was created in, so a connection a
driver's callback opens (or a task it starts) would otherwise pass no policy and take no slot.
So the caller passes a ``create_connection`` that does not gate again (a gated loop's *base*
method, or a call the caller itself runs trusted, as ``connect()`` does for its own protocol).
Only the gate's own dial (``dialer.connect_first``) runs trusted, so a gated loop's
``sock_connect`` does not decide it again; that is also why only uvloop (or a trusted caller)
dials an IP literal itself: the stdlib loop's ``create_connection`` calls the gated
``sock_connect``.
"""

from __future__ import annotations

import asyncio
import ssl as _ssl
from collections.abc import Awaitable, Callable
from typing import Any

from tcpworkers.egress import EgressPolicy
from tcpworkers.scope import RequestScope
from tcpworkers.scope._trust import is_trusted, trusted_connections
from tcpworkers.sockets._dial import Dialer, system_connect, system_resolve
from tcpworkers.sockets._gate import permitted_targets, remembered_targets

__all__ = ["CreateConnection", "open_gated"]

CreateConnection = Callable[..., Awaitable[tuple[asyncio.BaseTransport, asyncio.BaseProtocol]]]


async def open_gated(
    create_connection: CreateConnection,
    protocol_factory: Callable[[], asyncio.BaseProtocol],
    host: str,
    port: int,
    *,
    policy: EgressPolicy,
    scope: RequestScope | None,
    dialer: Dialer,
    family: int = 0,
    ssl: _ssl.SSLContext | bool | None = None,
    server_hostname: str | None = None,
    local_addr: tuple[str, int] | None = None,
    before_tls: Callable[[], None] | None = None,
    **kwargs: Any,
) -> tuple[asyncio.BaseTransport, asyncio.BaseProtocol]:
    """Open a connection to ``host:port`` through the gate.

    Args:
        create_connection: the loop's ``create_connection`` that builds the transport; it must
            not gate again (see the module docstring).
        protocol_factory: as for ``loop.create_connection``.
        policy: decides on the name and each resolved address.
        scope: the request's scope (counts a denial), or ``None``.
        dialer: resolves and connects (injectable; ``current_dialer()`` by default).
        family: keep only addresses of this family, when any (``0``: all).
        ssl, server_hostname, kwargs: passed on to ``create_connection``.
        local_addr: passed on only when the loop dials the literal itself (see below).
        before_tls: called between the TCP connect and the TLS handshake, so the caller can
            tell a TLS failure from a TCP one; given, the TCP connect always happens first.

    One permitted address and the system connector: the loop connects to that very IP literal
    itself (no lookup happens for a literal); on uvloop this is ~60 us cheaper than
    ``sock_connect`` + ``create_connection(sock=)``. Otherwise (and on the stdlib loop unless
    the caller is trusted: see ``_dials_ungated``) the dialer connects (happy eyeballs over the
    permitted addresses) and the transport is built on its socket. (The gated loop's
    ``create_connection`` takes the same shortcut itself for an address remembered by
    ``_gate.remembered_target(..., dials=True)``, without this coroutine.)

    Raises:
        EgressDeniedError: the policy permits none of the addresses.
        ConnectError: the name has no addresses.
        OSError, ssl.SSLError: connecting failed (translated by the caller).
    """
    targets = (
        remembered_targets(policy, host, port) if dialer.resolve is system_resolve else None
    ) or await permitted_targets(dialer, policy, host, port, scope)
    if family:
        targets = [t for t in targets if t.family == family] or targets
    if (
        len(targets) == 1
        and dialer.connect is system_connect
        and (before_tls is None or not ssl)
        and _dials_ungated(create_connection)
    ):
        target = targets[0]
        return await create_connection(
            protocol_factory,
            target.ip,
            target.sockaddr[1],
            ssl=ssl,
            server_hostname=server_hostname,
            local_addr=local_addr,
            **kwargs,
        )
    with trusted_connections():
        sock = await dialer.connect_first(targets)
    try:
        if ssl and before_tls is not None:
            before_tls()
        return await create_connection(
            protocol_factory, sock=sock, ssl=ssl, server_hostname=server_hostname, **kwargs
        )
    except BaseException:
        sock.close()
        raise


def _dials_ungated(create_connection: CreateConnection) -> bool:
    """Whether ``create_connection`` can dial an IP literal itself without the gate deciding
    it again: uvloop's dials in C; the stdlib loop's calls the loop's ``sock_connect``, which a
    gated loop gates, so there the gate dials (trusted) unless the caller is trusted already."""
    return is_trusted() or not isinstance(
        getattr(create_connection, "__self__", None), asyncio.BaseEventLoop
    )
