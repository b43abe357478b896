"""Name resolution and TCP connection establishment, with happy eyeballs (RFC 8305).

The resolver and the per-address connector are injectable (``Dialer``), so tests can script DNS
answers and record connection attempts without touching the network, and so the egress gate can
decide on the very addresses that will be connected to: ``resolve`` returns concrete socket
addresses, and ``connect_first`` connects to exactly those, never resolving again.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, final

__all__ = [
    "Dialer",
    "Target",
    "current_dialer",
    "happy_eyeballs",
    "literal_target",
    "system_resolve",
    "use_dialer",
]

# RFC 8305 section 5 recommends 250 ms between connection attempts.
HAPPY_EYEBALLS_DELAY: Final = 0.25


@final
@dataclass(frozen=True, slots=True)
class Target:
    """One concrete address to connect to: an address family and a socket address."""

    family: socket.AddressFamily
    sockaddr: tuple[str, int] | tuple[str, int, int, int]

    @property
    def ip(self) -> str:
        return self.sockaddr[0]


Resolver = Callable[[str, int], Awaitable[list[Target]]]
Connector = Callable[[Target], Awaitable[socket.socket]]


async def system_resolve(host: str, port: int) -> list[Target]:
    """Resolve ``host`` with the system resolver; IP literals are converted without a lookup."""
    literal = literal_target(host, port)
    if literal is not None:
        return [literal]
    infos = await asyncio.get_running_loop().getaddrinfo(
        host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    targets: list[Target] = []
    for family, _type, _proto, _name, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            target = Target(socket.AddressFamily(family), sockaddr)  # type: ignore[arg-type]
            if target not in targets:
                targets.append(target)
    return targets


def literal_target(host: str, port: int) -> Target | None:
    """``host`` as an address to connect to when it is an IP literal, else ``None``."""
    # inet_pton is the C fast path for the common dotted quad (ipaddress takes ~10 us); it
    # accepts exactly the canonical form, so the text is already the address.
    try:
        socket.inet_pton(socket.AF_INET, host)
    except OSError:
        pass
    else:
        return Target(socket.AF_INET, (host, port))
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version == 4:
        return Target(socket.AF_INET, (str(ip), port))
    if "%" in host:
        # A zone id must become a numeric scope id; AI_NUMERICHOST does that without any lookup.
        info = socket.getaddrinfo(
            host, port, socket.AF_INET6, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST
        )[0]
        return Target(socket.AF_INET6, info[4])  # type: ignore[arg-type]
    return Target(socket.AF_INET6, (str(ip), port, 0, 0))


async def system_connect(target: Target) -> socket.socket:
    """Open a non-blocking TCP socket to exactly ``target``; close it if that fails."""
    sock = socket.socket(target.family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        # Small request/response protocols (every database) want their writes sent now.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.get_running_loop().sock_connect(sock, target.sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


@final
@dataclass(frozen=True, slots=True)
class Dialer:
    """How sockets find and reach their peers: resolver, per-address connector, attempt delay."""

    resolve: Resolver = system_resolve
    connect: Connector = system_connect
    happy_eyeballs_delay: float = HAPPY_EYEBALLS_DELAY

    async def connect_first(self, targets: Sequence[Target]) -> socket.socket:
        """Connect to the first of ``targets`` that answers (happy eyeballs)."""
        if len(targets) == 1:
            return await self.connect(targets[0])  # nothing to race
        return await happy_eyeballs(targets, self.connect, self.happy_eyeballs_delay)


# Dialer is frozen, so sharing one default instance is safe.
_dialer: contextvars.ContextVar[Dialer] = contextvars.ContextVar(
    "tcpworkers_dialer",
    default=Dialer(),  # noqa: B039
)


def current_dialer() -> Dialer:
    """The dialer ``connect()`` uses in this context."""
    return _dialer.get()


@contextlib.contextmanager
def use_dialer(dialer: Dialer) -> Iterator[Dialer]:
    """Use ``dialer`` for every ``connect()`` made in this context (and tasks it starts)."""
    token = _dialer.set(dialer)
    try:
        yield dialer
    finally:
        _dialer.reset(token)


def interleave(targets: Sequence[Target]) -> list[Target]:
    """Alternate address families, starting with the resolver's first (RFC 8305 section 4)."""
    if not targets:
        return []
    first = [t for t in targets if t.family == targets[0].family]
    other = [t for t in targets if t.family != targets[0].family]
    ordered: list[Target] = []
    for i in range(max(len(first), len(other))):
        ordered.extend(group[i] for group in (first, other) if i < len(group))
    return ordered


async def happy_eyeballs(
    targets: Sequence[Target], connect: Connector, delay: float
) -> socket.socket:
    """Race connection attempts, starting the next one after ``delay`` or when one fails.

    The first attempt to succeed wins; every other attempt is cancelled and its socket closed,
    including one that succeeds in the same instant.

    Raises:
        OSError: every attempt failed (the first failure, or one naming all when they differ).
        ValueError: ``targets`` is empty.
    """
    if not targets:
        raise ValueError("no addresses to connect to")
    errors: list[BaseException] = []
    pending: set[asyncio.Task[socket.socket]] = set()
    try:
        for target in interleave(targets):
            pending.add(asyncio.ensure_future(connect(target)))
            winner = await _first_result(pending, errors, wait=delay)
            if winner is not None:
                return winner
        while pending:
            winner = await _first_result(pending, errors, wait=None)
            if winner is not None:
                return winner
    finally:
        for task in pending:
            task.cancel()
            task.add_done_callback(_close_if_connected)
    raise _combined(errors)


async def _first_result(
    pending: set[asyncio.Task[socket.socket]], errors: list[BaseException], wait: float | None
) -> socket.socket | None:
    """Wait until an attempt ends or ``wait`` seconds pass; return a connected socket, if any."""
    done, _ = await asyncio.wait(pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    winner: socket.socket | None = None
    for task in done:
        pending.discard(task)
        exc = task.exception()
        if exc is not None:
            errors.append(exc)
        elif winner is None:
            winner = task.result()
        else:
            task.result().close()
    return winner


def _close_if_connected(task: asyncio.Task[socket.socket]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().close()


def _combined(errors: list[BaseException]) -> BaseException:
    first = errors[0]
    if all(
        type(e) is type(first) and getattr(e, "errno", None) == getattr(first, "errno", None)
        for e in errors
    ):
        return first
    combined = OSError(
        f"all {len(errors)} addresses failed: "
        + "; ".join(str(e) or type(e).__name__ for e in errors)
    )
    combined.__cause__ = first
    return combined
