"""The binding's in-process door: asyncpg on the gated loop reaches env.DB through a transport
pair (no kernel socket, no accept), still counted and closed like a socket, with a socket's flow
control in both directions; libpq keeps using the real socket."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import psycopg
import pytest

from tcpworkers.drivers._counting import CountedTransport
from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import SocketLimitError
from tcpworkers.pool._binding import PostgresBinding
from tcpworkers.pool._dsn import parse_dsn
from tcpworkers.pool._inprocess import HIGH_WATER, ClientTransport
from tcpworkers.pool._pool import PoolSettings
from tcpworkers.scope import request_scope
from tests.pgserver import PgServer

SERVE = EgressPolicy.from_config({"preset": "serve"})  # refuses loopback and unix sockets
IDLE_IN_TXN = "select count(*) from pg_stat_activity where state like 'idle in t%'"


@pytest.fixture
async def db(scram_postgres: PgServer) -> AsyncIterator[PostgresBinding]:
    binding = PostgresBinding(
        "DB", parse_dsn(scram_postgres.dsn()), PoolSettings(min_size=1, max_size=2)
    )
    await binding.start()
    try:
        yield binding
    finally:
        await binding.stop()


@pytest.fixture
async def direct(scram_postgres: PgServer) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(scram_postgres.dsn())
    try:
        yield conn
    finally:
        await conn.close()


def _pipe(conn: asyncpg.Connection) -> ClientTransport:
    """The in-process transport (under the gate's counting view inside a request)."""
    transport: Any = conn._transport  # asyncpg keeps the transport the loop gave it
    pipe = transport.wrapped if isinstance(transport, CountedTransport) else transport
    assert isinstance(pipe, ClientTransport)
    return pipe


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _settled(binding: PostgresBinding) -> None:
    for _ in range(300):
        stats = binding.stats()
        assert stats is not None
        if stats.active == 0 and stats.resetting == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the pool did not settle: {binding.stats()}")


async def test_no_socket_no_accept(db: PostgresBinding) -> None:
    fds = _fds()
    async with request_scope(SERVE, max_sockets=2, label="GET /pg") as scope:
        conn = await asyncpg.connect(db.connection_string)
        try:
            assert await conn.fetchval("select 41 + 1") == 42
            assert _fds() == fds  # the server connection was already open: nothing new
            assert conn._transport.get_extra_info("socket") is None
            assert scope.stats.sockets_opened == 1
        finally:
            await conn.close()
    assert (db.connections_in_process, db.connections_accepted) == (1, 0)
    assert _fds() == fds


async def test_counted_against_the_limit_and_closed_at_request_end(
    db: PostgresBinding, direct: asyncpg.Connection
) -> None:
    table = f"pb_inproc_{secrets.token_hex(4)}"
    await direct.execute(f"create table {table}(x int)")
    try:
        async with request_scope(SERVE, max_sockets=1, slot_timeout=0.2, label="GET /pg"):
            conn = await asyncpg.connect(db.connection_string)
            with pytest.raises(SocketLimitError):  # the one slot is the binding connection's
                await asyncpg.connect(db.connection_string)
            await conn.execute("begin")
            await conn.execute(f"insert into {table} values (1)")
            # Left open mid-transaction: the request's end closes it.
        assert conn.is_closed()
        assert _pipe(conn).is_closing()
        await _settled(db)
        assert await direct.fetchval(f"select count(*) from {table}") == 0  # rolled back
        assert await direct.fetchval(IDLE_IN_TXN) == 0
        again = await asyncpg.connect(db.connection_string)
        try:
            assert await again.fetchval("select count(*) from " + table) == 0
        finally:
            await again.close()
    finally:
        await direct.execute(f"drop table {table}")
    assert db.connections_accepted == 0


async def test_copy_out_to_a_slow_reader_is_bounded(db: PostgresBinding) -> None:
    rows, width = 20_000, 1000  # ~20 MB through a reader that takes ~1 ms per chunk
    conn = await asyncpg.connect(db.connection_string)
    try:
        pipe = _pipe(conn)
        received = backlog = 0

        async def slow_sink(chunk: bytes) -> None:
            nonlocal received, backlog
            received += len(chunk)
            backlog = max(backlog, pipe.backlog_size)
            await asyncio.sleep(0.001)

        await conn.copy_from_query(
            f"select repeat('x', {width}) from generate_series(1, {rows})", output=slow_sink
        )
        assert received == rows * (width + 1)
        # asyncpg paused reading while its sink was busy: the pooler kept what it had read
        # (the backlog) and stopped reading PostgreSQL past the high mark.
        assert 0 < backlog <= HIGH_WATER + 256 * 1024
        assert await conn.fetchval("select 1") == 1
    finally:
        await conn.close()


async def test_copy_in_pauses_a_fast_writer(
    db: PostgresBinding, direct: asyncpg.Connection
) -> None:
    table = f"pb_copyin_{secrets.token_hex(4)}"
    await direct.execute(f"create table {table}(x text)")
    rows, value = 20_000, "y" * 1000  # ~20 MB
    peak = 0
    try:
        conn = await asyncpg.connect(db.connection_string)
        try:
            pipe = _pipe(conn)

            def records() -> Iterator[tuple[str]]:
                # asyncpg encodes these without awaiting anything but its writing_allowed
                # event, which only pause_writing clears.
                nonlocal peak
                for _ in range(rows):
                    peak = max(peak, pipe.get_write_buffer_size())
                    yield (value,)

            await conn.copy_records_to_table(table, records=records())
        finally:
            await conn.close()
        assert await direct.fetchval(f"select count(*) from {table}") == rows
        # The pooler's inbox passed the high mark, asyncpg was paused until the pooler had
        # read it, and the inbox never held more than one of asyncpg's 512 KiB writes beyond.
        assert HIGH_WATER < peak <= HIGH_WATER + 600 * 1024
    finally:
        await direct.execute(f"drop table {table}")


async def test_client_vanishing_mid_result(db: PostgresBinding, direct: asyncpg.Connection) -> None:
    conn = await asyncpg.connect(db.connection_string)
    pipe = _pipe(conn)
    pipe.pause_reading()  # a reader that stopped: the result backs up into the pooler
    query = "select repeat('z', 1000) from generate_series(1, 100000)"
    fetch = asyncio.create_task(conn.execute(query))  # simple protocol: one message
    for _ in range(500):
        if pipe.backlog_size > HIGH_WATER:
            break
        await asyncio.sleep(0.01)
    assert HIGH_WATER < pipe.backlog_size <= HIGH_WATER + 256 * 1024  # bounded, not 100 MB
    pipe.abort()  # gone mid-result: the server connection's state is unknown
    with pytest.raises(asyncpg.ConnectionDoesNotExistError):
        await fetch
    await _settled(db)
    stats = db.stats()
    assert stats is not None
    assert stats.closed.get("client_gone_mid_request", 0) == 1
    again = await asyncpg.connect(db.connection_string)
    try:
        assert await again.fetchval("select 7") == 7
    finally:
        await again.close()
    running = "select count(*) from pg_stat_activity where query = $1 and state = 'active'"
    for _ in range(300):  # the discarded backend's query was cancelled, then it went away
        if await direct.fetchval(running, query) == 0:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("the abandoned query is still running")


async def test_cancel_goes_in_process_too(db: PostgresBinding) -> None:
    conn = await asyncpg.connect(db.connection_string)
    try:
        with pytest.raises(TimeoutError):
            await conn.fetchval("select pg_sleep(30)", timeout=0.2)  # asyncpg sends a cancel
        assert await conn.fetchval("select 'after'") == "after"
    finally:
        await conn.close()
    assert db.connections_in_process == 2  # the query's connection and its CancelRequest
    assert db.connections_accepted == 0


async def test_libpq_uses_the_socket(db: PostgresBinding) -> None:
    async with await psycopg.AsyncConnection.connect(db.connection_string) as conn:
        cur = await conn.execute("select 'libpq'")
        assert await cur.fetchone() == ("libpq",)
    assert (db.connections_in_process, db.connections_accepted) == (0, 1)


async def test_stopping_the_binding_ends_in_process_clients(db: PostgresBinding) -> None:
    conn = await asyncpg.connect(db.connection_string)
    await conn.execute("begin")
    await db.stop()
    for _ in range(100):
        if conn.is_closed():
            break
        await asyncio.sleep(0.01)
    assert conn.is_closed()
    assert _pipe(conn).is_closing()


async def test_the_in_process_door_asks_no_password(db: PostgresBinding) -> None:
    """Only this process reaches the in-process door, so it skips the password round trip;
    the socket, which other processes of the same user can reach, still checks the secret."""
    wrong = db.connection_string.replace(db.password, "not-the-secret")
    conn = await asyncpg.connect(wrong)
    try:
        assert await conn.fetchval("select 'in-process'") == "in-process"
    finally:
        await conn.close()
    assert (db.connections_in_process, db.connections_accepted) == (1, 0)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        await psycopg.AsyncConnection.connect(wrong)
    assert db.connections_accepted == 1


async def test_the_in_process_door_still_checks_user_and_database(db: PostgresBinding) -> None:
    for field, value, error in (
        ("user", "intruder", asyncpg.InvalidAuthorizationSpecificationError),
        ("database", "elsewhere", asyncpg.InvalidCatalogNameError),
    ):
        dsn = db.connection_string.replace(
            f"{db.user}:" if field == "user" else f"@/{db.database}?",
            f"{value}:" if field == "user" else f"@/{value}?",
        )
        with pytest.raises(error, match="pool binding"):
            await asyncpg.connect(dsn)
    assert db.connections_accepted == 0
