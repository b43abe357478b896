"""The pool in front of a real PgBouncer in transaction mode: PgBouncer may run each of the
pool's transactions on another backend, so the pool keeps no named statements there
(``prepared_statements=False``) and drivers' prepared statements still work."""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import pytest

from tcpworkers.pool._pool import PoolSettings
from tcpworkers.testing import PgBouncer

from ..pgserver import PgServer
from .conftest import serve_binding

pytestmark = pytest.mark.slow


async def test_prepared_statements_through_pgbouncer_transaction_mode(pg_server: PgServer) -> None:
    async with PgBouncer(
        pg_server.host, pg_server.port, users={"postgres": "unused"}, auth_type="trust", pool_size=3
    ) as bouncer:
        upstream = bouncer.dsn("postgres", "test") + "?sslmode=disable"
        settings = PoolSettings(
            min_size=2, max_size=4, acquire_timeout=10, prepared_statements=False
        )
        async with serve_binding(settings, upstream_dsn=upstream) as binding:
            clients = [await asyncpg.connect(binding.dsn) for _ in range(6)]
            try:

                async def work(conn: asyncpg.Connection, n: int) -> None:
                    stmt = await conn.prepare("select $1::int * 2")
                    for i in range(20):
                        assert await conn.fetchval("select $1::int + 1", i) == i + 1
                        assert await stmt.fetchval(n) == 2 * n
                        async with conn.transaction():
                            assert await conn.fetchval("select $1::text", "t") == "t"

                await asyncio.gather(*(work(c, n) for n, c in enumerate(clients)))
            finally:
                for conn in clients:
                    await conn.close()
            async with await psycopg.AsyncConnection.connect(binding.dsn) as pconn:
                pconn.prepare_threshold = 0
                for i in range(10):
                    cur = await pconn.execute("select %s::int", (i,))
                    assert await cur.fetchone() == (i,)
            stats = binding.pool.stats()
            assert stats.parse_saved == 0
            assert stats.closed == {}


async def test_named_statements_fail_through_pgbouncer_transaction_mode(
    pg_server: PgServer,
) -> None:
    """Why the setting exists: with statements kept per connection, PgBouncer's backend
    switching loses them (the check that makes the test above meaningful)."""
    async with PgBouncer(
        pg_server.host, pg_server.port, users={"postgres": "unused"}, auth_type="trust", pool_size=2
    ) as bouncer:
        upstream = bouncer.dsn("postgres", "test") + "?sslmode=disable"
        settings = PoolSettings(min_size=2, max_size=4, acquire_timeout=10)
        async with serve_binding(settings, upstream_dsn=upstream) as binding:
            clients = [await asyncpg.connect(binding.dsn) for _ in range(6)]
            failures = 0
            try:

                async def work(conn: asyncpg.Connection) -> None:
                    nonlocal failures
                    for i in range(40):
                        try:
                            await conn.fetchval("select $1::int + 1", i)
                        except asyncpg.PostgresError:
                            failures += 1

                await asyncio.gather(*(work(c) for c in clients))
            finally:
                for conn in clients:
                    await conn.close()
            assert failures > 0
