"""env.DB inside a served worker (real HTTP, the serve egress policy, the SCRAM cluster):
drivers per request, concurrency past max_size, session state checked from the next request,
clients that vanish mid-transaction."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import psycopg
import pytest

from tcpworkers import Request, Response
from tcpworkers.egress import EgressPolicy
from tcpworkers.pool._binding import PostgresBinding
from tcpworkers.pool._dsn import parse_dsn
from tcpworkers.pool._pool import PoolSettings
from tcpworkers.runtime import Env, ExecutionContext, RuntimeSettings
from tcpworkers.testing import WorkerServer, serve_worker
from tests.pgserver import PgServer

SERVE = RuntimeSettings(mode="serve", policy=EgressPolicy.from_config({"preset": "serve"}))


async def worker(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    """POST {"sql": [...], "driver": "asyncpg"|"psycopg", "leave_open": bool}: run each
    statement on a new connection to env.DB; answer the last one's rows."""
    job: dict[str, Any] = await request.json()
    statements: list[str] = job["sql"]
    if job.get("driver") == "psycopg":
        pconn = await psycopg.AsyncConnection.connect(env.DB.connection_string, autocommit=True)
        try:
            for sql in statements[:-1]:
                await pconn.execute(sql)
            cur = await pconn.execute(statements[-1])
            rows = [list(r) for r in await cur.fetchall()] if cur.description else []
        finally:
            await pconn.close()
        return Response.json(rows)
    conn = await asyncpg.connect(env.DB.connection_string)
    for sql in statements[:-1]:
        await conn.execute(sql)
    result = [list(r.values()) for r in await conn.fetch(statements[-1])]
    if not job.get("leave_open"):
        await conn.close()  # else: the request's end closes it (the gate owns it)
    return Response.json(result)


async def run(server: WorkerServer, *sql: str, **options: Any) -> Any:
    response = await server.client.post("/", json={"sql": list(sql), **options})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(params=["in-process", "socket"])
async def served(
    scram_postgres: PgServer, request: pytest.FixtureRequest
) -> AsyncIterator[tuple[WorkerServer, PostgresBinding]]:
    # Both doors: asyncpg in-process (the default) and over the unix socket, as libpq is.
    binding = PostgresBinding(
        "DB",
        parse_dsn(scram_postgres.dsn()),
        PoolSettings(min_size=1, max_size=1, acquire_timeout=5),
        in_process=request.param == "in-process",
    )
    async with serve_worker(worker, SERVE, bindings={"DB": binding}) as server:
        yield server, binding


async def test_asyncpg_and_psycopg_under_the_serve_policy(
    served: tuple[WorkerServer, PostgresBinding],
) -> None:
    server, _ = served
    assert await run(server, "select $$asyncpg$$, current_user = session_user") == [
        ["asyncpg", True]
    ]
    assert await run(server, "select 'psycopg'", driver="psycopg") == [["psycopg"]]


LEAKS = {
    "set": (["SET search_path = pb_leaked, public"], "show search_path", [['"$user", public']]),
    "set_config": (
        ["select set_config('application_name', 'pb_leaked', false)"],
        "select current_setting('application_name') = 'pb_leaked'",
        [[False]],
    ),
    "temp": (
        ["create temp table pb_leak_tmp(x int)"],
        "select to_regclass('pb_leak_tmp') is null",
        [[True]],
    ),
    "advisory": (
        ["select pg_advisory_lock(909090)"],
        "select count(*) from pg_locks where locktype = 'advisory' and objid = 909090",
        [[0]],
    ),
    "prepare": (
        ["prepare pb_leak_stmt as select 1"],
        "select count(*) from pg_prepared_statements where name = 'pb_leak_stmt'",
        [[0]],
    ),
    "listen": (["listen pb_leak_channel"], "select count(*) from pg_listening_channels()", [[0]]),
    "with_hold": (
        ["begin", "declare pb_leak_cur cursor with hold for select 1", "commit"],
        "select count(*) from pg_cursors where name = $$pb_leak_cur$$",
        [[0]],
    ),
}


@pytest.mark.parametrize("leave_open", [False, True], ids=["closed", "left-open"])
@pytest.mark.parametrize("case", sorted(LEAKS))
async def test_state_never_reaches_the_next_request(
    served: tuple[WorkerServer, PostgresBinding], case: str, leave_open: bool
) -> None:
    server, binding = served
    setup, check, expected = LEAKS[case]
    before = await run(server, "select pg_backend_pid()")
    await run(server, *setup, "select 1", leave_open=leave_open)
    # max_size=1: the next request gets the same server connection, reset.
    assert await run(server, "select pg_backend_pid()") == before
    assert await run(server, check) == expected
    stats = binding.stats()
    assert stats is not None
    assert stats.resets >= 1


async def test_request_left_mid_transaction_is_rolled_back(
    served: tuple[WorkerServer, PostgresBinding], scram_postgres: PgServer
) -> None:
    server, _ = served
    table = f"pb_abandoned_{secrets.token_hex(4)}"
    direct = await asyncpg.connect(scram_postgres.dsn())
    try:
        await direct.execute(f"create table {table}(x int)")
        await run(server, "begin", f"insert into {table} values (1)", "select 1", leave_open=True)
        assert await run(server, f"select count(*) from {table}") == [[0]]
        assert await run(server, "select 1") == [[1]]
    finally:
        await direct.execute(f"drop table {table}")
        await direct.close()


@pytest.mark.parametrize("in_process", [True, False], ids=["in-process", "socket"])
async def test_client_killed_mid_transaction(scram_postgres: PgServer, in_process: bool) -> None:
    binding = PostgresBinding(
        "DB",
        parse_dsn(scram_postgres.dsn()),
        PoolSettings(min_size=1, max_size=1),
        in_process=in_process,
    )
    await binding.start()
    table = f"pb_killed_{secrets.token_hex(4)}"
    direct = await asyncpg.connect(scram_postgres.dsn())
    try:
        await direct.execute(f"create table {table}(x int)")
        conn = await asyncpg.connect(binding.connection_string)
        await conn.execute("begin")
        await conn.execute(f"insert into {table} values (1)")
        conn.terminate()  # the socket is dropped, no Terminate message, mid-transaction
        assert (binding.connections_in_process, binding.connections_accepted) == (
            (1, 0) if in_process else (0, 1)
        )
        again = await asyncpg.connect(binding.connection_string)
        try:
            assert await again.fetchval(f"select count(*) from {table}") == 0
            idle_in_txn = "select count(*) from pg_stat_activity where state like 'idle in t%'"
            assert await direct.fetchval(idle_in_txn) == 0
        finally:
            await again.close()
    finally:
        await direct.execute(f"drop table {table}")
        await direct.close()
        await binding.stop()


async def test_100_concurrent_requests_on_max_size_5(scram_postgres: PgServer) -> None:
    binding = PostgresBinding(
        "DB",
        parse_dsn(scram_postgres.dsn()),
        PoolSettings(min_size=1, max_size=5, acquire_timeout=30),
    )
    async with serve_worker(worker, SERVE, bindings={"DB": binding}) as server:
        results = await asyncio.gather(
            *(run(server, f"select {i}, pg_sleep(0.02) is null") for i in range(100))
        )
        assert sorted(r[0][0] for r in results) == list(range(100))
        stats = binding.stats()
        assert stats is not None
        assert stats.opened <= 5
        assert stats.acquire_timeouts == 0
