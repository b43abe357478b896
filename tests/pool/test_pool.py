"""The pool on its own: sizes, waiting, timeouts, lifetimes, cancellation, close, stats.
Real server connections; the clock is injected so lifetimes need no sleeping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tcpworkers.errors import PoolClosedError, PoolTimeoutError
from tcpworkers.pool._dsn import parse_dsn
from tcpworkers.pool._pool import MAX_STATEMENTS, WAIT_BOUNDS, Pool, PoolSettings
from tcpworkers.pool._server import ServerStatement
from tcpworkers.pool._upstream import cancel_query, open_server_connection

from .conftest import eventually, pool_upstream_dsn


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make(clock: Clock) -> AsyncIterator[list[Pool]]:
    pools: list[Pool] = []
    yield pools
    for pool in pools:
        await pool.close()


def new_pool(pools: list[Pool], clock: Clock, **settings: float) -> Pool:
    upstream = parse_dsn(pool_upstream_dsn())
    pool = Pool(
        "DB",
        PoolSettings(**settings),  # type: ignore[arg-type]
        lambda: open_server_connection(upstream),
        lambda pid, secret: cancel_query(upstream, pid, secret),
        clock=clock,
        janitor_interval=0.02,
    )
    pools.append(pool)
    return pool


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"min_size": 3, "max_size": 2}, "min_size <= max_size"),
        ({"max_size": 0, "min_size": 0}, "max_size >= 1"),
        ({"acquire_timeout": 0}, "acquire_timeout must be > 0"),
        ({"idle_timeout": -1}, "idle_timeout must be > 0"),
    ],
)
def test_settings_are_checked(settings: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PoolSettings(**settings)  # type: ignore[arg-type]


async def test_start_opens_min_size_and_lends_lifo(make: list[Pool], clock: Clock) -> None:
    pool = new_pool(make, clock, min_size=2, max_size=3)
    await pool.start()
    assert (pool.stats().idle, pool.stats().opened) == (2, 2)
    first = await pool.acquire()
    pool.release(first)
    assert await pool.acquire() is first  # most recently used first
    assert pool.stats().active == 1
    assert pool.parameters["server_encoding"]


async def test_waiters_are_served_in_order_and_time_out(make: list[Pool], clock: Clock) -> None:
    pool = new_pool(make, clock, min_size=1, max_size=1, acquire_timeout=0.3)
    await pool.start()
    held = await pool.acquire()
    order: list[int] = []

    async def wait(i: int) -> None:
        server = await pool.acquire()
        order.append(i)
        pool.release(server)

    waiters = [asyncio.ensure_future(wait(i)) for i in range(3)]
    await eventually(lambda: pool.stats().waiting == 3)
    pool.release(held)
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2]
    held = await pool.acquire()
    with pytest.raises(PoolTimeoutError, match=r"all 1 server connections .* raise max_size"):
        await pool.acquire()
    stats = pool.stats()
    assert stats.acquire_timeouts == 1
    assert stats.waiting == 0
    assert len(stats.acquire_wait_counts) == len(WAIT_BOUNDS) + 1
    assert sum(stats.acquire_wait_counts) == stats.acquires == 5
    pool.release(held)


async def test_a_cancelled_waiter_loses_nothing(make: list[Pool], clock: Clock) -> None:
    pool = new_pool(make, clock, min_size=1, max_size=1, acquire_timeout=5)
    await pool.start()
    held = await pool.acquire()
    waiter = asyncio.ensure_future(pool.acquire())
    await eventually(lambda: pool.stats().waiting == 1)
    pool.release(held)  # handed to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs: the connection must come back
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.stats().idle == 1
    assert await pool.acquire() is held


async def test_max_lifetime_and_idle_timeout(make: list[Pool], clock: Clock) -> None:
    pool = new_pool(make, clock, min_size=1, max_size=3, max_lifetime=60, idle_timeout=10)
    await pool.start()
    a, b = await pool.acquire(), await pool.acquire()
    pool.release(a)
    pool.release(b)
    assert pool.stats().idle == 2
    clock.now += 11  # both idle past idle_timeout: one closes, min_size keeps the other
    await eventually(lambda: pool.stats().closed.get("idle_timeout") == 1)
    assert pool.stats().idle == 1
    clock.now += 60  # past max_lifetime: replaced by a fresh one
    await eventually(lambda: pool.stats().closed.get("max_lifetime") == 1)
    await eventually(lambda: pool.stats().idle == 1)
    server = await pool.acquire()
    assert server not in (a, b)
    clock.now += 61
    pool.release(server)  # expired while lent: closed on release, not reused
    assert pool.stats().closed["max_lifetime"] == 2


async def test_dirty_release_resets_before_reuse(make: list[Pool], clock: Clock) -> None:
    pool = new_pool(make, clock, min_size=1, max_size=1)
    await pool.start()
    server = await pool.acquire()
    pool.release(server, dirty=True, txn_status="T")
    assert pool.stats().resetting == 1
    again = await pool.acquire()  # waits for the reset, then gets the same connection
    assert again is server
    assert pool.stats().resets == 1


async def test_close_fails_waiters_and_later_acquires(make: list[Pool], clock: Clock) -> None:
    pool = new_pool(make, clock, min_size=1, max_size=1, acquire_timeout=5)
    await pool.start()
    held = await pool.acquire()
    waiter = asyncio.ensure_future(pool.acquire())
    await eventually(lambda: pool.stats().waiting == 1)
    await pool.close()
    with pytest.raises(PoolClosedError):
        await waiter
    with pytest.raises(PoolClosedError, match="closed"):
        await pool.acquire()
    pool.release(held)  # after close: ignored, never raises
    assert pool.stats().closed == {"pool_closed": 1}


async def test_a_full_statement_cache_is_reset_on_release(make: list[Pool], clock: Clock) -> None:
    pool = new_pool(make, clock, min_size=1, max_size=1)
    await pool.start()
    server = await pool.acquire()
    for i in range(MAX_STATEMENTS + 1):
        server.statements[(f"select {i}", ())] = ServerStatement(f"_tw_x{i}", (f"select {i}", ()))
    pool.release(server)
    assert pool.stats().resetting == 1
    assert await pool.acquire() is server
    assert server.statements == {}
