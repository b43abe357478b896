"""The pool of warm server connections for one binding, in one process.

Server connections live on the lists named in ``_state`` (idle, active, pinned, reset, login);
:meth:`Pool._move` is the one place a connection changes list. Idle connections are handed out
most recently used first (warm caches; the cold ones age out by ``idle_timeout``). A released
clean connection goes straight to the longest-waiting client, if any. A connection that comes
back pinned or dirty is reset in a pool-owned task (ROLLBACK when a transaction is open, then
DISCARD ALL and ``pg_advisory_unlock_all()``) and only then joins the idle list. Dead
connections are found when they come back broken, when they are about to be handed out (bytes
or EOF arrived while idle: PostgreSQL says FATAL before it closes), and by the janitor, which
also applies ``idle_timeout``/``max_lifetime`` and refills to ``min_size`` (retrying with
backoff while the server is down, so a restart is survived without the runtime restarting).

:meth:`Pool.release` is synchronous, so a cancelled request cannot interrupt it halfway.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import secrets
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping
from typing import final

from tcpworkers.errors import PoolClosedError, PoolTimeoutError

from ._server import PooledServer, ServerLink, looks_dead, run_queries
from ._settings import WAIT_BOUNDS, PoolSettings, PoolStats
from ._state import Event, ServerState, next_state

__all__ = ["WAIT_BOUNDS", "Pool", "PoolSettings", "PoolStats"]

log = logging.getLogger("tcpworkers.pool")

_RESET_TIMEOUT = 5.0
# Statements the pooler keeps prepared on one server connection; past this, the next release
# resets it (DISCARD ALL drops them) so memory on both sides stays bounded.
MAX_STATEMENTS = 1000


@final
class Pool:
    """Warm server connections for one binding; see the module docstring."""

    def __init__(
        self,
        name: str,
        settings: PoolSettings,
        connect: Callable[[], Awaitable[ServerLink]],
        cancel: Callable[[int, int], Awaitable[None]],
        *,
        clock: Callable[[], float] = time.monotonic,
        janitor_interval: float = 1.0,
    ) -> None:
        self.name = name
        self.settings = settings
        self._connect = connect
        self._cancel = cancel
        self._clock = clock
        self._janitor_interval = janitor_interval
        self._lists: dict[ServerState, set[PooledServer]] = {s: set() for s in ServerState}
        self._idle: deque[PooledServer] = deque()  # SV_IDLE, most recently used on the right
        self._opening = 0
        self._waiters: deque[asyncio.Future[PooledServer]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._janitor: asyncio.Task[None] | None = None
        self._refilling = False
        self._closed = False
        self._numbers = 0
        self.parameters: Mapping[str, str] = {}
        self.clients = 0
        # synthetic BackendKeyData -> the client's current server connection, for CancelRequest
        self.cancel_targets: dict[tuple[int, int], Callable[[], PooledServer | None]] = {}
        self._client_numbers = 0
        self._opened = 0
        self._connect_failures = 0
        self._closed_by = Counter[str]()
        self._acquires = 0
        self._timeouts = 0
        self._waits = [0] * (len(WAIT_BOUNDS) + 1)
        self._wait_sum = 0.0
        self.parse_saved = 0
        self.parse_forwarded = 0
        self.describe_saved = 0
        self._resets = 0
        self._pins = Counter[str]()

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open ``min_size`` connections (the first failure is raised) and start the janitor."""
        for _ in range(self.settings.min_size - self._total()):
            self._add_idle(await self._open())
        self._janitor = asyncio.get_running_loop().create_task(self._janitor_loop())

    async def close(self) -> None:
        """Stop handing out connections and close every server connection."""
        self._closed = True
        if self._janitor is not None:
            self._janitor.cancel()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(PoolClosedError(f"pool {self.name!r} was closed"))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        servers = [
            s
            for state, group in self._lists.items()
            if state is not ServerState.SV_CLOSED
            for s in group
        ]
        for server in servers:
            self._discard(server, "pool_closed", background=False)
        await asyncio.gather(*(s.link.close() for s in servers), return_exceptions=True)

    # -- acquire and release ---------------------------------------------------------------------

    async def acquire(self) -> PooledServer:
        """A server connection for one transaction (``SV_ACTIVE``).

        Raises:
            PoolTimeoutError: none became free within ``acquire_timeout``.
            PoolClosedError: the pool is closed.
            Whatever opening a server connection raises (e.g. ``UpstreamError``).
        """
        if self._closed:
            raise PoolClosedError(f"pool {self.name!r} is closed")
        started = self._clock()
        while self._idle:
            server = self._idle.pop()
            if self._usable(server):
                return self._lend(server, started)
        if self._total() < self.settings.max_size and not self._waiters:
            try:
                async with asyncio.timeout(self.settings.acquire_timeout):
                    server = await self._open()
            except TimeoutError:
                raise PoolTimeoutError(
                    f"opening a server connection for binding {self.name!r} took longer than "
                    f"acquire_timeout={self.settings.acquire_timeout:g}s; is the database "
                    "reachable? (raise acquire_timeout or connect_timeout if it is just slow)"
                ) from None
            self._move(server, Event.LOGIN_OK)
            return self._lend(server, started)
        waiter: asyncio.Future[PooledServer] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._refill()
        try:
            async with asyncio.timeout(self.settings.acquire_timeout):
                server = await waiter
        except TimeoutError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                server = waiter.result()  # handed over just as the timeout fired: keep it
                self._record_wait(self._clock() - started)
                return server
            self._timeouts += 1
            s = self.settings
            raise PoolTimeoutError(
                f"pool for binding {self.name!r} is exhausted: all {s.max_size} server connections "
                f"stayed busy for acquire_timeout={s.acquire_timeout:g}s; raise max_size (or "
                f"acquire_timeout) in [bindings.{self.name}], or hold connections for less time"
            ) from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self.release(waiter.result())
            raise
        finally:
            if waiter.cancelled() or not waiter.done():  # resolved waiters were popped already
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
        self._record_wait(self._clock() - started)
        return server

    def release(self, server: PooledServer, *, dirty: bool = False, txn_status: str = "I") -> None:
        """Give a server connection back: clean (idle, or straight to a waiting client), or
        dirty/pinned (reset first). Synchronous: cancellation cannot interrupt it."""
        if server.state is ServerState.SV_CLOSED:
            return
        if self._clock() - server.created >= self.settings.max_lifetime:
            self._discard(server, "max_lifetime")
        elif (
            dirty
            or txn_status != "I"
            or server.state is ServerState.SV_PINNED
            or len(server.statements) > MAX_STATEMENTS
        ):
            self._move(server, Event.RELEASE_DIRTY)
            self._spawn(self._reset(server, txn_status))
        else:
            self._move(server, Event.RELEASE)
            self._park(server)

    def discard(self, server: PooledServer, reason: str) -> None:
        """Close a server connection that must not be used again (broken, unknown state)."""
        self._discard(server, reason)

    def pin(self, server: PooledServer, reason: str) -> None:
        self._pins[reason] += 1
        self._move(server, Event.PIN)

    async def cancel(self, server: PooledServer) -> None:
        """Ask the server to cancel what ``server`` is running (a CancelRequest upstream)."""
        await self._cancel(server.link.backend_pid, server.link.backend_secret)

    def cancel_soon(self, server: PooledServer) -> None:
        """:meth:`cancel` in a pool-owned task; failures are logged, never raised."""

        async def cancel() -> None:
            try:
                await self.cancel(server)
            except Exception as exc:
                log.info("pool %s: cancelling on %r failed: %s", self.name, server, exc)

        self._spawn(cancel())

    def new_client_key(self) -> tuple[int, int]:
        """A synthetic (process id, secret key) for a client's BackendKeyData."""
        self._client_numbers += 1
        return self._client_numbers, secrets.randbits(32) - 2**31

    def stats(self) -> PoolStats:
        lists = self._lists
        return PoolStats(
            name=self.name,
            min_size=self.settings.min_size,
            max_size=self.settings.max_size,
            idle=len(lists[ServerState.SV_IDLE]),
            active=len(lists[ServerState.SV_ACTIVE]),
            pinned=len(lists[ServerState.SV_PINNED]),
            resetting=len(lists[ServerState.SV_RESET]),
            opening=self._opening,
            waiting=len(self._waiters),
            clients=self.clients,
            opened=self._opened,
            connect_failures=self._connect_failures,
            closed=dict(self._closed_by),
            acquires=self._acquires,
            acquire_timeouts=self._timeouts,
            acquire_wait_bounds=WAIT_BOUNDS,
            acquire_wait_counts=tuple(self._waits),
            acquire_wait_sum=self._wait_sum,
            parse_saved=self.parse_saved,
            parse_forwarded=self.parse_forwarded,
            describe_saved=self.describe_saved,
            resets=self._resets,
            pins=dict(self._pins),
        )

    # -- internals -------------------------------------------------------------------------------

    def _total(self) -> int:
        lists, s = self._lists, ServerState
        return (
            len(lists[s.SV_IDLE])
            + len(lists[s.SV_ACTIVE])
            + len(lists[s.SV_PINNED])
            + len(lists[s.SV_RESET])
            + self._opening
        )

    def _move(self, server: PooledServer, event: Event) -> None:
        new = next_state(server.state, event)
        self._lists[server.state].discard(server)
        if new is not ServerState.SV_CLOSED:  # closed ones are counted, not kept
            self._lists[new].add(server)
        server.state = new

    def _usable(self, server: PooledServer) -> bool:
        if looks_dead(server):
            self._discard(server, "died_idle")
            return False
        if self._clock() - server.created >= self.settings.max_lifetime:
            self._discard(server, "max_lifetime")
            return False
        return True

    def _lend(self, server: PooledServer, started: float) -> PooledServer:
        self._move(server, Event.ACQUIRE)
        self._record_wait(self._clock() - started)
        return server

    def _record_wait(self, seconds: float) -> None:
        self._acquires += 1
        self._wait_sum += seconds
        self._waits[bisect.bisect_left(WAIT_BOUNDS, seconds)] += 1

    async def _open(self) -> PooledServer:
        self._opening += 1
        try:
            link = await self._connect()
        except Exception:
            self._connect_failures += 1
            raise
        finally:
            self._opening -= 1
        self._opened += 1
        self._numbers += 1
        self.parameters = dict(link.parameters)
        return PooledServer(link, self._clock(), self._numbers)

    def _add_idle(self, server: PooledServer) -> None:
        self._move(server, Event.LOGIN_OK)
        self._park(server)

    def _park(self, server: PooledServer) -> None:
        """An idle connection: to the first live waiter (lent at once), else the idle list."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._move(server, Event.ACQUIRE)
                waiter.set_result(server)
                return
        server.idle_since = self._clock()
        self._idle.append(server)

    def _discard(self, server: PooledServer, reason: str, *, background: bool = True) -> None:
        if server.state is ServerState.SV_CLOSED:
            return
        with contextlib.suppress(ValueError):
            self._idle.remove(server)
        self._move(server, Event.CLOSE)
        self._closed_by[reason] += 1
        log.debug("pool %s: closing %r (%s)", self.name, server, reason)
        if background:
            self._spawn(server.link.close())
            self._refill()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _refill(self) -> None:
        """Open connections in the background up to min_size, and one per waiting client."""
        if self._closed or self._refilling:
            return
        need = max(self.settings.min_size - self._total(), 0)
        need = max(need, min(len(self._waiters), self.settings.max_size - self._total()))
        if need:
            self._refilling = True
            self._spawn(self._refill_task())

    async def _refill_task(self) -> None:
        backoff = 0.1
        try:
            while not self._closed:
                missing = self.settings.min_size - self._total()
                wanted = min(len(self._waiters), self.settings.max_size - self._total())
                if max(missing, wanted) <= 0:
                    return
                try:
                    server = await self._open()
                except Exception as exc:
                    log.warning("pool %s: cannot open a server connection: %s", self.name, exc)
                    while self._waiters:  # fail a waiter clearly rather than by timeout
                        waiter = self._waiters.popleft()
                        if not waiter.done():
                            waiter.set_exception(exc)
                            break
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                self._add_idle(server)
        finally:
            self._refilling = False

    async def _reset(self, server: PooledServer, txn_status: str) -> None:
        queries = ["DISCARD ALL", "SELECT pg_advisory_unlock_all()"]
        if txn_status != "I":
            queries.insert(0, "ROLLBACK")
        try:
            async with asyncio.timeout(_RESET_TIMEOUT):
                await run_queries(server, queries)
        except Exception as exc:
            log.info("pool %s: reset of %r failed (%s); closing it", self.name, server, exc)
            self._discard(server, "reset_failed")
            return
        self._resets += 1
        server.forget_statements()
        if server.parameters != server.baseline:
            self._discard(server, "reset_failed")
            return
        self._move(server, Event.RESET_OK)
        self._park(server)

    async def _janitor_loop(self) -> None:
        while not self._closed:
            await asyncio.sleep(self._janitor_interval)
            try:
                self._sweep()
            except Exception:  # a bug here must not stop the janitor for good
                log.exception("pool %s: janitor sweep failed", self.name)

    def _sweep(self) -> None:
        now = self._clock()
        s = self.settings
        for server in list(self._idle):
            if looks_dead(server):
                self._discard(server, "died_idle")
            elif now - server.created >= s.max_lifetime:
                self._discard(server, "max_lifetime")
        for server in list(self._idle):  # oldest idle first
            if self._total() <= s.min_size:
                break
            if now - server.idle_since >= s.idle_timeout:
                self._discard(server, "idle_timeout")
        self._refill()
