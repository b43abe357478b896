"""env.DB against real PostgreSQL with a SCRAM password: asyncpg and psycopg through the binding,
the gate's view of binding connections, and what the worker sees."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator

import asyncpg
import psycopg
import pytest

from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import UpstreamAuthError
from tcpworkers.pool._binding import PostgresBinding, check_upstream
from tcpworkers.pool._dsn import parse_dsn
from tcpworkers.pool._pool import PoolSettings
from tcpworkers.scope import request_scope
from tests.pgserver import PgServer

SERVE = EgressPolicy.from_config({"preset": "serve"})  # refuses loopback and unix sockets


@pytest.fixture(params=["in-process", "socket"])
async def db(
    scram_postgres: PgServer, request: pytest.FixtureRequest
) -> AsyncIterator[PostgresBinding]:
    # asyncpg on the gated loop is served in-process; "socket" makes it use the unix socket
    # (as libpq always does), so both doors pass the same tests.
    binding = PostgresBinding(
        "DB",
        parse_dsn(scram_postgres.dsn()),
        PoolSettings(min_size=1, max_size=2),
        in_process=request.param == "in-process",
    )
    await binding.start()
    try:
        yield binding
    finally:
        await binding.stop()


async def test_fields_like_hyperdrive(db: PostgresBinding, scram_postgres: PgServer) -> None:
    assert db.user == scram_postgres.user
    assert db.database == scram_postgres.database
    assert db.password != scram_postgres.password  # the binding's own secret, not upstream's
    assert db.port == 5432
    assert db.connection_string.startswith(f"postgresql://{db.user}:{db.password}@/")
    assert f"host={db.host}&port=5432" in db.connection_string
    assert db.connectionString == db.connection_string  # Cloudflare's spelling
    info = await asyncio.to_thread(os.stat, db.host)
    assert stat.S_IMODE(info.st_mode) == 0o700  # only the runtime's user can reach the socket
    assert stat.S_ISSOCK((await asyncio.to_thread(os.stat, db.socket_path)).st_mode)


async def test_asyncpg_through_the_binding(db: PostgresBinding) -> None:
    conn = await asyncpg.connect(db.connection_string)
    try:
        assert await conn.fetchval("select current_user") == db.user
        # Prepared statements (asyncpg's cache) across server connections and repeats.
        for i in range(5):
            assert await conn.fetchval("select $1::int * 2", i) == i * 2
        async with conn.transaction():
            await conn.execute("create temp table pb_t(x int) on commit drop")
            await conn.executemany("insert into pb_t values ($1)", [(1,), (2,)])
            assert await conn.fetchval("select sum(x) from pb_t") == 3
    finally:
        await conn.close()


async def test_psycopg_through_the_binding(db: PostgresBinding) -> None:
    async with await psycopg.AsyncConnection.connect(db.connection_string) as conn:
        cur = await conn.execute("select %s::text || current_database()", ["db="])
        assert await cur.fetchone() == (f"db={db.database}",)
        async with conn.transaction():
            await conn.execute("create temp table pb_p(x int) on commit drop")
            await conn.execute("insert into pb_p values (%s), (%s)", [4, 5])
            cur = await conn.execute("select sum(x) from pb_p")
            assert await cur.fetchone() == (9,)


async def test_wrong_secret_is_refused_at_the_socket(db: PostgresBinding) -> None:
    bad = db.connection_string.replace(db.password, "not-the-secret")
    if db.in_process:  # only this process reaches that door: it asks no password
        await (await asyncpg.connect(bad)).close()
        return
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(bad)


async def test_binding_connection_in_a_request_under_serve_policy(db: PostgresBinding) -> None:
    async with request_scope(SERVE, max_sockets=2, label="GET /pg") as scope:
        conn = await asyncpg.connect(db.connection_string)
        await conn.execute("begin")
        await conn.execute("select 1")
        assert scope.stats.sockets_opened == 1
        # Left open, mid-transaction: the request's end closes it.
    assert conn.is_closed()
    stats = db.stats()
    assert stats is not None
    for _ in range(200):  # the pool rolls back and takes the server connection back
        stats = db.stats()
        assert stats is not None
        if stats.active == 0 and stats.resetting == 0:
            break
        await asyncio.sleep(0.01)
    assert stats.active == 0
    conn = await asyncpg.connect(db.connection_string)
    try:
        assert (
            await conn.fetchval("select count(*) from pg_stat_activity where state like 'idle in%'")
            == 0
        )
    finally:
        await conn.close()


async def test_check_reports_version_and_auth(scram_postgres: PgServer) -> None:
    result = await check_upstream(parse_dsn(scram_postgres.dsn()))
    assert result.auth_method == "scram-sha-256"
    assert result.server_version[:2].isdigit()
    assert result.address == f"127.0.0.1:{scram_postgres.port}"


async def test_start_fails_clearly_with_a_wrong_password(scram_postgres: PgServer) -> None:
    params = parse_dsn(scram_postgres.dsn()).with_password("wrong")
    binding = PostgresBinding("DB", params, PoolSettings(min_size=1, max_size=2))
    with pytest.raises(UpstreamAuthError, match=scram_postgres.user):
        await binding.start()
    assert binding.stats() is None


async def test_metrics_render_per_binding(db: PostgresBinding) -> None:
    from tcpworkers.runtime._poolmetrics import render_pool_metrics

    for _ in range(3):
        conn = await asyncpg.connect(db.connection_string)
        await conn.fetchval("select $1::int", 1)
        await conn.close()
    stats = db.stats()
    assert stats is not None
    text = render_pool_metrics([stats])
    assert 'tcpworkers_pool_server_connections{binding="DB",state="idle"}' in text
    assert 'tcpworkers_pool_max_size{binding="DB"} 2' in text
    assert 'tcpworkers_pool_acquire_wait_seconds_bucket{binding="DB",le="+Inf"}' in text
    opened = [
        ln
        for ln in text.splitlines()
        if ln.startswith("tcpworkers_pool_server_connections_opened_total")
    ]
    assert opened
    assert int(opened[0].split()[-1]) >= 1
    saved = [ln for ln in text.splitlines() if ln.startswith("tcpworkers_pool_parse_saved_total")]
    assert int(saved[0].split()[-1]) >= 1  # the same statement text, prepared on that server once
    assert render_pool_metrics([]) == ""


async def test_directories_of_killed_processes_are_swept(scram_postgres: PgServer) -> None:
    import subprocess
    import sys
    import tempfile

    # A process that has exited: its pid is free (a killed runtime never removed its directory).
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = int(done.stdout)
    with tempfile.TemporaryDirectory() as parent:
        stale = os.path.join(parent, f"tcpworkers-DB-{dead}-abc")
        other = os.path.join(parent, "tcpworkers-DBX-1-abc")  # another binding's name: kept
        for path in (stale, other):
            os.mkdir(path)
        binding = PostgresBinding(
            "DB",
            parse_dsn(scram_postgres.dsn()),
            PoolSettings(min_size=1, max_size=1),
            socket_dir=parent,
        )
        await binding.start()
        directory = binding.host
        try:
            assert not await asyncio.to_thread(os.path.exists, stale)
            assert await asyncio.to_thread(os.path.exists, other)
            assert os.path.basename(directory).startswith(f"tcpworkers-DB-{os.getpid()}-")
        finally:
            await binding.stop()
        assert not await asyncio.to_thread(os.path.exists, directory)  # removed at stop
