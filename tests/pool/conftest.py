"""A pool binding served on loopback in the test: the session's shared PostgreSQL (trust, db
``test``; tests/pgserver.py) behind serve_client, reached by real drivers over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import pytest

from tcpworkers.pool._dsn import UpstreamParams, parse_dsn
from tcpworkers.pool._pool import Pool, PoolSettings
from tcpworkers.pool._relay import serve_client
from tcpworkers.pool._upstream import cancel_query, open_server_connection

from ..pgserver import shared


def pool_upstream_dsn(port: int | None = None) -> str:
    """The shared server (or the same user and database behind ``port``, a proxy) for a pool."""
    server = shared()
    return (
        f"postgresql://{server.user}@{server.host}:{port or server.port}/{server.database}"
        "?sslmode=disable&application_name=pool-core-tests"
    )


def direct_dsn() -> str:
    """The shared server, for checks that bypass the pool."""
    return shared().dsn()


USER, DATABASE, PASSWORD = "worker", "app", "binding-secret"


@dataclass
class Binding:
    pool: Pool
    dsn: str
    port: int
    upstream: UpstreamParams
    unix_path: str | None = None


def make_pool(settings: PoolSettings, upstream: UpstreamParams, name: str = "DB") -> Pool:
    return Pool(
        name,
        settings,
        lambda: open_server_connection(upstream),
        lambda pid, secret: cancel_query(upstream, pid, secret),
        janitor_interval=0.05,
    )


@contextlib.asynccontextmanager
async def serve_binding(
    settings: PoolSettings,
    *,
    name: str = "DB",
    start: bool = True,
    upstream_port: int | None = None,
    upstream_dsn: str | None = None,
) -> AsyncIterator[Binding]:
    # A name of its own per binding, so a test that terminates "its" backends on the shared
    # server (test_chaos) never hits another test's, or another worktree's.
    own = pool_upstream_dsn(upstream_port).replace(
        "pool-core-tests", f"pool-core-tests-{secrets.token_hex(4)}"
    )
    upstream = parse_dsn(upstream_dsn or own)
    pool = make_pool(settings, upstream, name)
    if start:
        await pool.start()
    tasks: set[asyncio.Task[None]] = set()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await serve_client(
                reader, writer, pool, user=USER, database=DATABASE, password=PASSWORD
            )
        except asyncio.CancelledError:
            pass  # torn down by the fixture (3.11's start_server reports a cancelled handler)
        finally:
            tasks.discard(task)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    dsn = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}?sslmode=disable"
    try:
        yield Binding(pool, dsn, port, upstream)
    finally:
        server.close()
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        await pool.close()


@pytest.fixture
async def binding() -> AsyncIterator[Binding]:
    async with serve_binding(PoolSettings(min_size=1, max_size=5, acquire_timeout=5)) as b:
        yield b


async def eventually(check: Callable[[], Awaitable[bool] | bool], within: float = 5.0) -> None:
    """Wait until ``check`` holds (polling a condition, not sleeping a fixed time)."""
    async with asyncio.timeout(within):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)
