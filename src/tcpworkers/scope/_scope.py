"""The request scope: who owns a connection, how many may be open at once, and the clean-up.

Theory of operation. A ``RequestScope`` is entered for one request (a contextvar, so every task
the handler starts inherits it). Whatever opens a connection inside it — ``connect()`` or a
driver through the gated event loop — first takes a *slot* with :meth:`RequestScope.acquire`,
registering a :class:`ScopedResource`; the slot is freed by :meth:`RequestScope.release` when
that connection closes. At most ``max_sockets`` slots are taken at once; further acquirers wait
in FIFO order and fail with ``SocketLimitError`` after ``slot_timeout`` seconds. When the scope
ends, :meth:`RequestScope.aclose` closes everything still registered (gracefully for a short
grace period, then by abort) so nothing outlives the request.

How the scope learns that a connection ended: a ``connect()`` socket releases its slot itself
the moment it closes. A driver connection is watched by the gate's protocol proxy, whose
``connection_lost`` releases the slot; a driver that swaps the proxy out
(``transport.set_protocol``, as asyncpg does after its SSLRequest exchange) is caught whenever
the scope needs to know: :meth:`ScopedResource.is_done` reports a transport that is already
closing and puts the proxy back in front of the driver's protocol otherwise, so its end is heard
again. No timer polls.

The scope lives beside the current-request contextvar (``tcpworkers.scope._current``): sockets
depend on this package, never on the runtime.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Final, Protocol, final

from tcpworkers.egress import EgressPolicy, default_policy
from tcpworkers.errors import ScopeClosedError, SocketLimitError

__all__ = [
    "CLEANUP_GRACE",
    "DEFAULT_MAX_SOCKETS",
    "DEFAULT_SLOT_TIMEOUT",
    "RequestScope",
    "ScopeStats",
    "ScopedResource",
    "new_scope",
]

# Cloudflare Workers allow six simultaneous open connections per request; we keep its default.
DEFAULT_MAX_SOCKETS: Final = 6
DEFAULT_SLOT_TIMEOUT: Final = 30.0
# How many connections a scope remembers for the dev error page's socket table.
HISTORY_SIZE: Final = 32
# At scope end, how long leftover connections may take to flush and close before being aborted.
CLEANUP_GRACE: Final = 1.0

logger = logging.getLogger("tcpworkers.scope")

_SECONDS: Final = (int, float)  # a tuple: `int | float` would build a union on every request


class ScopedResource(Protocol):
    """A connection a scope owns: something it can describe, close politely, and abort.

    ``is_done()`` lets the scope reclaim the slot of a connection that ended without telling it
    (a driver that replaced the gate's protocol proxy with ``transport.set_protocol``); a
    resource that is still open makes sure, there, that its end will be reported from now on.
    ``close()`` may wait as long as it likes: the scope bounds it by :data:`CLEANUP_GRACE` and
    then calls ``abort()``.
    """

    @property
    def bytes_in(self) -> int: ...

    @property
    def bytes_out(self) -> int: ...

    def describe(self) -> str: ...

    def is_done(self) -> bool: ...

    async def close(self) -> None: ...

    def abort(self) -> None: ...


@final
@dataclass(slots=True)
class ScopeStats:
    """What one scope's connections did.

    Attributes:
        sockets_opened: connections that took a slot (including those that then failed).
        sockets_denied: connection attempts the egress policy refused.
        peak_open: most connections open at the same time.
        bytes_in: bytes received by connections that have closed.
        bytes_out: bytes sent by connections that have closed.
        connect_seconds: total time spent opening connections (DNS, TCP, TLS).
        slot_wait_seconds: total time spent waiting for a free slot.
        closed_at_end: connections the scope had to close itself when it ended.
    """

    sockets_opened: int = 0
    sockets_denied: int = 0
    peak_open: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    connect_seconds: float = 0.0
    slot_wait_seconds: float = 0.0
    closed_at_end: int = 0


@final
class RequestScope:
    """Owns every connection opened while handling one request.

    Args:
        policy: the egress policy for this request; ``None`` means :func:`default_policy`.
        max_sockets: how many connections may be open at once; more wait for a free slot.
        slot_timeout: seconds a connection may wait for a slot before failing.
        label: how errors name the request (e.g. ``"GET /orders"``).
    """

    def __init__(
        self,
        policy: EgressPolicy | None = None,
        *,
        max_sockets: int = DEFAULT_MAX_SOCKETS,
        slot_timeout: float = DEFAULT_SLOT_TIMEOUT,
        label: str = "this request",
    ) -> None:
        # Every request makes a scope: the exact types (what callers pass) are checked with one
        # comparison each; anything else gets the full checks (about 1k instructions more).
        if (
            type(max_sockets) is not int
            and (not isinstance(max_sockets, int) or isinstance(max_sockets, bool))
        ) or max_sockets < 1:
            raise ValueError(f"max_sockets must be a positive int, got {max_sockets!r}")
        if type(slot_timeout) is not float or slot_timeout <= 0:
            if not isinstance(slot_timeout, _SECONDS) or slot_timeout <= 0:
                raise ValueError(f"slot_timeout must be positive seconds, got {slot_timeout!r}")
            slot_timeout = float(slot_timeout)
        self.policy = policy if policy is not None else default_policy()
        self.max_sockets = max_sockets
        self.slot_timeout = slot_timeout
        self.label = label
        self.stats = ScopeStats()
        self._open: dict[ScopedResource, None] = {}  # insertion-ordered set
        # Every connection that took a slot (bounded); made by the first one (most requests
        # open none, and an empty list costs a few hundred instructions to make and free).
        self._history: list[ScopedResource] | None = None
        # Made by the first acquire that has to wait: most requests never do, and a deque
        # costs about 1k instructions to make and free (every request makes a scope).
        self._waiters: deque[tuple[asyncio.Future[None], ScopedResource]] | None = None
        self._closed = False
        self._sockets: dict[ScopedResource, object] | None = None  # see note_socket

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` started: no new connection may be opened."""
        return self._closed

    @property
    def waiting(self) -> int:
        """How many connections are waiting for a slot now."""
        return 0 if self._waiters is None else len(self._waiters)

    @property
    def open_resources(self) -> tuple[ScopedResource, ...]:
        """The connections holding a slot now, oldest first."""
        self._reap()
        return tuple(self._open)

    @property
    def history(self) -> tuple[ScopedResource, ...]:
        """The first ``HISTORY_SIZE`` connections that took a slot, open or not, oldest first
        (what the dev error page lists)."""
        return () if self._history is None else tuple(self._history)

    def try_acquire(self, resource: ScopedResource) -> bool:
        """Take a slot for ``resource`` if one is free and nobody waits (True); else take
        nothing (False) and leave the wait to :meth:`acquire`. The common case, without the
        cost of a coroutine.

        Raises:
            ScopeClosedError: the scope ended.
        """
        if self._closed:
            self._check_open(resource)  # raises
        if len(self._open) < self.max_sockets and not self._waiters:
            self._take(resource)
            return True
        return False

    async def acquire(self, resource: ScopedResource) -> None:
        """Take a slot for ``resource``, waiting (FIFO) while ``max_sockets`` are taken.

        Raises:
            SocketLimitError: no slot freed up within ``slot_timeout`` seconds.
            ScopeClosedError: the scope ended (before or while waiting).
        """
        self._check_open(resource)
        if len(self._open) >= self.max_sockets or self._waiters:
            self._reap()
        if len(self._open) < self.max_sockets and not self._waiters:
            self._take(resource)
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        entry = (waiter, resource)
        waiters = self._waiters
        if waiters is None:
            waiters = self._waiters = deque()
        waiters.append(entry)
        started = loop.time()
        try:
            # Every open connection now reports its end (see _reap), so a freed slot resolves
            # the first waiter: no polling.
            async with asyncio.timeout(self.slot_timeout):
                await asyncio.shield(waiter)
        except BaseException as exc:
            if entry in waiters:
                waiters.remove(entry)
            if waiter.done():
                self.release(resource)  # the slot arrived as we gave up: hand it on
            else:
                waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise self._limit_error(resource) from None
            raise
        finally:
            self.stats.slot_wait_seconds += loop.time() - started
        self._check_open(resource)

    def _reap(self) -> None:
        """Release the connections that ended without telling us; the others (re-)arm the
        report of their end (``is_done``)."""
        # Over a copy (release changes _open); a loop, not a comprehension, which in this
        # Python is a function call of its own (this runs at the end of most requests).
        for resource in tuple(self._open):
            if resource.is_done():
                self.release(resource)

    def release(self, resource: ScopedResource) -> None:
        """Free ``resource``'s slot (idempotent) and add its traffic to the stats."""
        if resource not in self._open:
            return
        del self._open[resource]
        self.stats.bytes_in += resource.bytes_in
        self.stats.bytes_out += resource.bytes_out
        waiters = self._waiters
        while waiters and len(self._open) < self.max_sockets:
            waiter, waiting = waiters.popleft()
            if not waiter.done():
                self._take(waiting)
                waiter.set_result(None)

    def admit(self, resource: ScopedResource) -> None:
        """Take a slot for ``resource`` at once, even over ``max_sockets``: for a connection
        that exists to end another one of this request (a driver's query cancellation), which
        must not wait behind the very connection it cancels.

        Raises:
            ScopeClosedError: the scope ended.
        """
        self._check_open(resource)
        self._take(resource)

    def hand_over(self, old: ScopedResource, new: ScopedResource) -> None:
        """Let ``new`` take ``old``'s slot (STARTTLS: the same connection, a new socket)."""
        if old in self._open:
            del self._open[old]
            self._open[new] = None
            self._remember(new)

    def note_socket(self, resource: ScopedResource, sock: object) -> None:
        """Remember that ``resource`` runs on ``sock``, a raw socket its driver asked for: a
        driver that re-connects on a duplicate of it (the MySQL drivers' TLS upgrade) continues
        the same connection (:meth:`hand_over`); see ``tcpworkers.drivers._companions``."""
        if self._sockets is None:
            self._sockets = {}
        self._sockets[resource] = sock

    def noted_sockets(self) -> tuple[tuple[ScopedResource, object], ...]:
        """What :meth:`note_socket` remembered, oldest first."""
        return () if self._sockets is None else tuple(self._sockets.items())

    def record_connect(self, seconds: float) -> None:
        self.stats.connect_seconds += seconds

    def record_denial(self) -> None:
        self.stats.sockets_denied += 1

    def owns(self, resource: ScopedResource) -> bool:
        return resource in self._open

    def close_if_idle(self) -> bool:
        """End the scope at once when no connection is open or waiting (True); else leave it to
        :meth:`aclose` (False)."""
        if self._waiters:
            return False
        if self._open:
            self._reap()
            if self._open:
                return False
        self._closed = True
        return True

    async def aclose(self) -> None:
        """End the scope: refuse new connections, close (then abort) every one still open."""
        self._closed = True
        waiters = self._waiters
        while waiters:
            waiter, _ = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the acquirer sees the closed scope and raises
        leftovers = list(self._open)
        if not leftovers:
            return
        self.stats.closed_at_end += len(leftovers)
        self._warn_driver_leftovers(leftovers)
        closing = [asyncio.ensure_future(resource.close()) for resource in leftovers]
        done, pending = await asyncio.wait(closing, timeout=CLEANUP_GRACE)
        for task in pending:
            task.cancel()
        for task in done:
            task.exception()  # a failing close must not log "never retrieved"
        for resource in leftovers:
            if resource in self._open:
                resource.abort()
                self.release(resource)
        if pending:
            await asyncio.wait(pending)

    def _warn_driver_leftovers(self, leftovers: list[ScopedResource]) -> None:
        # A connect() socket left to the scope is normal (Response(sock.readable) streams it
        # until the end); a driver connection left open is usually one kept at module level,
        # which the next request would find closed: say so once, naming each.
        drivers = [r for r in leftovers if getattr(r, "opened_by_driver", False)]
        if not drivers:
            return
        logger.warning(
            "%s left %d driver connection%s open: %s. %s closed at the end of the request, "
            "because connections belong to the request that opened them: a connection or pool "
            "kept at module level finds them closed in the next request. To reuse database "
            "connections across requests, connect through the pool binding "
            "(env.DB.connection_string); otherwise close them before the request ends",
            self.label,
            len(drivers),
            "s" * (len(drivers) > 1),
            "; ".join(r.describe() for r in drivers),
            "They were" if len(drivers) > 1 else "It was",
        )

    def _take(self, resource: ScopedResource) -> None:
        self._open[resource] = None
        self._remember(resource)
        stats = self.stats
        stats.sockets_opened += 1
        if len(self._open) > stats.peak_open:
            stats.peak_open = len(self._open)

    def _remember(self, resource: ScopedResource) -> None:
        history = self._history
        if history is None:
            self._history = [resource]
        elif len(history) < HISTORY_SIZE:
            history.append(resource)

    def _check_open(self, resource: ScopedResource) -> None:
        if self._closed:
            self.release(resource)
            raise ScopeClosedError(
                f"{resource.describe()}: {self.label} has ended, so it cannot open connections; "
                "this attempt comes from a task that request started and that is still running "
                "(a background task, or a connection pool kept at module level refilling "
                "itself). Work for that request belongs in ctx.wait_until(); to share database "
                "connections across requests, connect through the pool binding "
                "(env.DB.connection_string) instead of a module-level pool"
            )

    def _limit_error(self, resource: ScopedResource) -> SocketLimitError:
        listing = "; ".join(r.describe() for r in self._open)
        return SocketLimitError(
            f"{resource.describe()}: {self.label} already has {len(self._open)} open connections "
            f"(the limit is {self.max_sockets}) and none closed within {self.slot_timeout:g}s: "
            f"{listing}. Close connections you no longer need (await sock.close()) or raise "
            "the limit"
        )


def new_scope(
    policy: EgressPolicy | None, max_sockets: int, slot_timeout: float, label: str
) -> RequestScope:
    """``RequestScope(policy, max_sockets=..., slot_timeout=..., label=...)``, for the paths
    that make one per request (``request_scope()``, the runtime's requests). With the default
    limits the scope is made without keyword arguments, which a class call turns into a dict
    (~1.3k instructions per request); any other limits go through the keyword call, so its
    checks and messages apply unchanged."""
    if (
        max_sockets is DEFAULT_MAX_SOCKETS  # any int 6 is this object, no bool is
        and type(slot_timeout) is float
        and slot_timeout == DEFAULT_SLOT_TIMEOUT
    ):
        scope = RequestScope(policy)
        scope.label = label
        return scope
    return RequestScope(policy, max_sockets=max_sockets, slot_timeout=slot_timeout, label=label)
