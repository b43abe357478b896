"""The relay end to end: asyncpg and psycopg through serve_client to real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import io
import secrets
from pathlib import Path

import asyncpg
import psycopg
import pytest

from tcpworkers.pool._pool import PoolSettings
from tcpworkers.pool._relay import serve_client

from .conftest import DATABASE, PASSWORD, USER, Binding, eventually, serve_binding


async def test_asyncpg_simple_and_prepared(binding: Binding) -> None:
    conn = await asyncpg.connect(binding.dsn)
    try:
        assert await conn.fetchval("select 1") == 1
        assert await conn.fetchval("select $1::int + 1", 41) == 42
        assert await conn.fetchval("select $1::int + 1", 1) == 2
        rows = await conn.fetch("select g from generate_series(1, 3) g")
        assert [r["g"] for r in rows] == [1, 2, 3]
        async with conn.transaction():
            assert await conn.fetchval("select count(*) from pg_class where relname = 'x'") == 0
    finally:
        await conn.close()
    stats = binding.pool.stats()
    assert (stats.active, stats.parse_saved) == (0, 0)
    # A second client preparing the same text on the same (only idle) server: answered locally.
    conn = await asyncpg.connect(binding.dsn)
    try:
        assert await conn.fetchval("select $1::int + 1", 2) == 3
    finally:
        await conn.close()
    assert binding.pool.stats().parse_saved == 1


async def test_psycopg_async(binding: Binding) -> None:
    async with await psycopg.AsyncConnection.connect(binding.dsn) as conn, conn.cursor() as cur:
        await cur.execute("select %s::int * 2", (21,))
        assert await cur.fetchone() == (42,)
        for i in range(8):  # past prepare_threshold (5): psycopg names its statements
            await cur.execute("select %s::int + 0", (i,))
            assert await cur.fetchone() == (i,)


@pytest.mark.parametrize("password", ["wrong", ""])
async def test_wrong_password_is_refused(binding: Binding, password: str) -> None:
    dsn = binding.dsn.replace("binding-secret", password or "x")
    with pytest.raises(asyncpg.InvalidPasswordError, match="password authentication failed"):
        await asyncpg.connect(dsn)


async def test_prepared_statements_across_server_connections() -> None:
    """Long-lived asyncpg connections (statement cache on) whose transactions land on whichever
    server connection is free: the pooler prepares each text per server connection."""
    settings = PoolSettings(min_size=3, max_size=3, acquire_timeout=10)
    async with serve_binding(settings) as binding:
        clients = [await asyncpg.connect(binding.dsn) for _ in range(6)]
        seen_pids: set[int] = set()
        try:

            async def work(conn: asyncpg.Connection, n: int) -> None:
                for i in range(15):
                    async with conn.transaction():
                        pid = await conn.fetchval("select pg_backend_pid() + $1::int * 0", i)
                        seen_pids.add(pid)
                        assert await conn.fetchval("select $1::int + $2::int", i, n) == i + n
                        row = await conn.fetchrow("select $1::text as t, $2::int as n", "x", n)
                        assert (row["t"], row["n"]) == ("x", n)
                    assert await conn.fetchval("select $1::int + $2::int", n, 1) == n + 1

            await asyncio.gather(*(work(c, n) for n, c in enumerate(clients)))
            stmt = await clients[0].prepare("select $1::int * 3")  # explicit, reused later
            for _ in range(5):
                assert await stmt.fetchval(4) == 12
        finally:
            for conn in clients:
                await conn.close()
        stats = binding.pool.stats()
        assert len(seen_pids) == 3
        assert stats.opened == 3
        # Each client parses each of its 3 texts once; the servers prepare each text at most once.
        assert stats.parse_forwarded + stats.parse_saved >= 6 * 3
        assert stats.closed == {}


async def test_statements_used_on_a_server_that_lacks_them() -> None:
    """Prepare on one server connection, then Bind/Describe on the other (the pooler injects
    the Parse it needs), Close, and unnamed statements."""
    settings = PoolSettings(min_size=2, max_size=2, acquire_timeout=5)
    async with serve_binding(settings) as binding:
        a = await asyncpg.connect(binding.dsn)
        holder = await asyncpg.connect(binding.dsn)
        try:
            async with a.transaction():
                stmt = await a.prepare("select $1::int * 10")
                a_pid = await a.fetchval("select pg_backend_pid()")
            for _ in range(4):  # make the holder sit on a_pid's server connection
                tx = holder.transaction()
                await tx.start()
                if await holder.fetchval("select pg_backend_pid()") == a_pid:
                    break
                await tx.rollback()
            else:
                pytest.fail("the holder never got the other server connection")
            async with a.transaction():
                assert await stmt.fetchval(3) == 30  # Bind of a statement this server lacks
                assert await a.fetchval("select pg_backend_pid()") != a_pid
                again = await a.prepare("select $1::int * 10")  # Parse + Describe
                assert [p.name for p in again.get_parameters()] == ["int4"]
            await tx.commit()
            saved = binding.pool.stats().parse_saved
            async with a.transaction():
                assert await stmt.fetchval(4) == 40
            assert binding.pool.stats().parse_saved == saved
        finally:
            await a.close()
            await holder.close()


async def test_copy_in_and_out(binding: Binding) -> None:
    table = f"pool_core_copy_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(binding.dsn)
    try:
        await conn.execute(f"create table {table} (a int, b text)")
        try:
            records = [(i, f"row {i}") for i in range(2000)]
            await conn.copy_records_to_table(table, records=records)
            assert await conn.fetchval(f"select count(*) from {table}") == 2000
            out = io.BytesIO()
            await conn.copy_from_query(f"select a, b from {table} order by a", output=out)
            lines = out.getvalue().decode().splitlines()
            assert lines[0] == "0\trow 0"
            assert len(lines) == 2000
            assert await conn.fetchval("select 1") == 1  # the connection is fine afterwards
        finally:
            await conn.execute(f"drop table {table}")
    finally:
        await conn.close()
    assert binding.pool.stats().pinned == 0


async def test_errors_and_notices_pass_through(binding: Binding) -> None:
    conn = await asyncpg.connect(binding.dsn)
    notices: list[str] = []
    conn.add_log_listener(lambda _c, message: notices.append(message.message))
    try:
        with pytest.raises(asyncpg.DivisionByZeroError):
            await conn.fetchval("select 1 / 0")
        with pytest.raises(asyncpg.DivisionByZeroError):
            await conn.fetchval("select $1::int / 0", 1)
        with pytest.raises(asyncpg.UndefinedTableError):
            await conn.fetch("select * from pool_core_does_not_exist")
        async with conn.transaction():
            with pytest.raises(asyncpg.DivisionByZeroError):
                async with conn.transaction():  # a savepoint
                    await conn.execute("select 1 / 0")
            assert await conn.fetchval("select 5") == 5
        await conn.execute("ROLLBACK")  # outside a transaction: a WARNING notice
        await eventually(lambda: bool(notices))
        assert "no transaction in progress" in notices[0]
        assert await conn.fetchval("select $1::int", 9) == 9
    finally:
        await conn.close()
    assert binding.pool.stats().active == 0


async def test_psycopg_pipeline_and_unnamed_statements(binding: Binding) -> None:
    async with await psycopg.AsyncConnection.connect(binding.dsn, autocommit=True) as conn:
        async with conn.pipeline():
            cursors = [await conn.execute("select %s::int + 1", (i,)) for i in range(20)]
        assert [(await c.fetchone()) for c in cursors] == [(i + 1,) for i in range(20)]
        async with conn.transaction():
            await conn.execute("select 1")

        async def failing_batch() -> None:
            async with conn.pipeline():
                await conn.execute("select 1 / %s::int", (0,))
                await conn.execute("select 2")

        with pytest.raises(psycopg.errors.DivisionByZero):
            await failing_batch()
        cur = await conn.execute("select %s::text", ("still fine",))
        assert await cur.fetchone() == ("still fine",)


async def test_psycopg_over_a_unix_socket(tmp_path: Path) -> None:
    settings = PoolSettings(min_size=1, max_size=2, acquire_timeout=5)
    async with serve_binding(settings) as binding:
        path = tmp_path / ".s.PGSQL.5432"

        async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await serve_client(
                    reader, writer, binding.pool, user=USER, database=DATABASE, password=PASSWORD
                )

        server = await asyncio.start_unix_server(on_client, str(path))
        try:
            dsn = f"postgresql://{USER}:{PASSWORD}@/{DATABASE}?host={tmp_path}&port=5432"
            async with await psycopg.AsyncConnection.connect(dsn) as conn:
                cur = await conn.execute("select %s::int * 2", (21,))
                assert await cur.fetchone() == (42,)
                await conn.commit()
            conn2 = await asyncpg.connect(dsn)
            try:
                assert await conn2.fetchval("select 7") == 7
            finally:
                await conn2.close()
        finally:
            server.close()
            await server.wait_closed()


async def test_asyncpg_pool_on_the_binding_does_not_pin(binding: Binding) -> None:
    """asyncpg's own pool resets a connection on release (RESET ALL, UNLISTEN *, ...)."""
    async with asyncpg.create_pool(binding.dsn, min_size=2, max_size=2) as client_pool:
        for i in range(6):
            async with client_pool.acquire() as conn:
                assert await conn.fetchval("select $1::int", i) == i
    stats = binding.pool.stats()
    assert stats.pins == {}
    assert stats.pinned == 0


async def test_psycopg_closes_statements_at_the_protocol_level(binding: Binding) -> None:
    async with await psycopg.AsyncConnection.connect(binding.dsn, autocommit=True) as conn:
        conn.prepare_threshold = 0  # prepare everything...
        conn.prepared_max = 2  # ...and evict (protocol-level Close) past two statements
        for i in range(6):
            cur = await conn.execute(f"select %s::int + {i}", (1,))
            assert await cur.fetchone() == (1 + i,)
        for i in range(6):
            cur = await conn.execute(f"select %s::int + {i}", (2,))
            assert await cur.fetchone() == (2 + i,)
    assert binding.pool.stats().pinned == 0


async def test_psycopg_copy_cursors_and_notices(binding: Binding) -> None:
    table = f"pool_core_pcopy_{secrets.token_hex(4)}"
    notices: list[str] = []
    async with await psycopg.AsyncConnection.connect(binding.dsn, autocommit=True) as conn:
        conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
        await conn.execute(f"create table {table} (a int, b text)")
        try:
            async with conn.cursor() as cur:
                async with cur.copy(f"copy {table} (a, b) from stdin") as copy:
                    for i in range(500):
                        await copy.write_row((i, f"r{i}"))
                await cur.execute(f"select count(*), sum(a) from {table}")
                assert await cur.fetchone() == (500, sum(range(500)))
                rows = []
                async with cur.copy(f"copy (select a from {table} order by a) to stdout") as copy:
                    async for row in copy.rows():
                        rows.append(int(row[0]))
                assert rows == list(range(500))
            # A server-side cursor, fetched in pieces inside its transaction.
            async with conn.transaction(), conn.cursor("pool_core_named") as named:
                await named.execute(f"select a from {table} order by a")
                assert len(await named.fetchmany(100)) == 100
                assert len(await named.fetchall()) == 400
            await conn.execute("rollback")  # outside a transaction: a warning notice
            assert any("no transaction in progress" in n for n in notices)
        finally:
            await conn.execute(f"drop table {table}")
    stats = binding.pool.stats()
    assert (stats.pinned, stats.active) == (0, 0)


async def test_large_pipelines_executemany(binding: Binding) -> None:
    conn = await asyncpg.connect(binding.dsn)
    try:
        async with conn.transaction():
            await conn.execute("CREATE TEMP TABLE pool_core_many (a int, b text) ON COMMIT DROP")
            rows = [(i, "x" * (i % 50)) for i in range(5000)]
            await conn.executemany("insert into pool_core_many values ($1, $2)", rows)
            assert await conn.fetchval("select count(*) from pool_core_many") == 5000
            assert await conn.fetchval("select sum(a) from pool_core_many") == sum(range(5000))
        assert binding.pool.stats().pins == {}
    finally:
        await conn.close()
    pconn = await psycopg.AsyncConnection.connect(binding.dsn)
    async with pconn, pconn.transaction(), pconn.cursor() as cur:
        await cur.execute("CREATE TEMP TABLE pool_core_pmany (a int) ON COMMIT DROP")
        await cur.executemany(
            "insert into pool_core_pmany values (%s)", [(i,) for i in range(3000)]
        )
        await cur.execute("select count(*) from pool_core_pmany")
        assert await cur.fetchone() == (3000,)


async def test_a_client_that_never_logs_in_is_hung_up_on(
    binding: Binding, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tcpworkers.pool import _relay

    monkeypatch.setattr(_relay, "LOGIN_TIMEOUT", 0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", binding.port)
    try:
        writer.write(b"\0\0\0")  # part of a startup packet, then nothing
        async with asyncio.timeout(5):
            assert await reader.read() == b""  # closed by the pool after LOGIN_TIMEOUT
    finally:
        writer.close()
    assert binding.pool.stats().clients == 0
