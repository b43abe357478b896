"""A real PostgreSQL restart under load: requests during it fail clearly, later ones succeed
without restarting the pool. Its own SCRAM cluster (tcpworkers.localpg) on a fixed port."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psycopg
import pytest

from tcpworkers.localpg import LocalPostgres
from tcpworkers.localpg._proc import free_port
from tcpworkers.pool._pool import PoolSettings

from .conftest import eventually, serve_binding

pytestmark = pytest.mark.slow


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A directory the server's account can reach (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="pool-core-pg-"))
    base.chmod(0o755)
    try:
        yield base / "cluster"
    finally:
        shutil.rmtree(base, ignore_errors=True)


async def test_postgres_restart_under_load(data_dir: Path) -> None:
    pg = LocalPostgres(data_dir, auth="scram-sha-256", port=free_port("127.0.0.1"))
    await pg.start_async()
    try:
        settings = PoolSettings(min_size=2, max_size=4, acquire_timeout=2)
        async with serve_binding(settings, upstream_dsn=pg.dsn(sslmode="disable")) as binding:
            outcomes: list[str] = []
            stop = asyncio.Event()

            async def load() -> None:
                while not stop.is_set():
                    try:
                        conn = await asyncpg.connect(binding.dsn)
                        try:
                            assert await conn.fetchval("select $1::int", 5) == 5
                            outcomes.append("ok")
                        finally:
                            await conn.close()
                    except (
                        asyncpg.PostgresError,
                        asyncpg.InterfaceError,
                        # asyncpg, when the server's FATAL (shutdown) arrives between its
                        # prepare and its execute, as it does without the pool
                        asyncpg.InternalClientError,
                        OSError,
                    ) as exc:
                        outcomes.append(type(exc).__name__ + ": " + str(exc))
                        await asyncio.sleep(0.02)

            workers = [asyncio.ensure_future(load()) for _ in range(4)]
            await eventually(lambda: outcomes.count("ok") >= 20, within=20)
            await pg.stop_async()
            failed_from = len(outcomes)
            await eventually(lambda: len(outcomes) >= failed_from + 4, within=20)
            await pg.start_async()
            await eventually(lambda: outcomes[-8:] == ["ok"] * 8, within=30)
            stop.set()
            await asyncio.gather(*workers)
            failures = [o for o in outcomes[failed_from:] if o != "ok"]
            assert failures, "no request saw the outage"
            # During the outage requests fail with a message that names the binding.
            assert any("pool binding 'DB'" in f for f in failures), failures[:5]
            # And psycopg, too, works again without restarting the pool.
            async with await psycopg.AsyncConnection.connect(binding.dsn) as conn:
                cur = await conn.execute("select 1")
                assert await cur.fetchone() == (1,)
            assert binding.pool.stats().connect_failures >= 1
    finally:
        await pg.stop_async()


async def test_scram_upstream_with_asyncpg_and_psycopg() -> None:
    async with LocalPostgres(auth="scram-sha-256") as pg:
        settings = PoolSettings(min_size=1, max_size=2, acquire_timeout=5)
        async with serve_binding(settings, upstream_dsn=pg.dsn(sslmode="disable")) as binding:
            for _ in range(3):  # new client connections: no SCRAM on the client leg
                conn = await asyncpg.connect(binding.dsn)
                try:
                    assert await conn.fetchval("select current_user") == pg.user
                finally:
                    await conn.close()
                async with await psycopg.AsyncConnection.connect(binding.dsn) as pconn:
                    cur = await pconn.execute("select %s::int", (3,))
                    assert await cur.fetchone() == (3,)
            assert binding.pool.stats().opened <= 2
