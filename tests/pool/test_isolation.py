"""Session state never leaks: each case runs on one client, the next client (same server
connection: max_size=1) checks that nothing of it is left, and the pool counted a pin and a reset.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tcpworkers.pool._pool import PoolSettings

from .conftest import Binding, direct_dsn, eventually, serve_binding

LOCK_KEY = 727_001  # advisory lock keys for this branch's tests


@pytest.fixture
async def single() -> AsyncIterator[Binding]:
    async with serve_binding(PoolSettings(min_size=1, max_size=1, acquire_timeout=5)) as b:
        yield b


# (what the first client runs, a query for the next one that must return True, pin reason)
CASES = {
    "set": (
        ["SET application_name = 'leaked'"],
        "select current_setting('application_name') <> 'leaked'",
        "set",
    ),
    "set_in_txn": (
        ["BEGIN", "SET search_path = leaked, public", "COMMIT"],
        "select current_setting('search_path') not like 'leaked%'",
        "set",
    ),
    "set_config": (
        ["select set_config('pool_core.user', '42', false)"],
        "select coalesce(current_setting('pool_core.user', true), '') = ''",
        "set_config",
    ),
    "listen": (
        ["LISTEN pool_core_channel"],
        "select count(*) = 0 from pg_listening_channels()",
        "listen",
    ),
    "temp": (
        ["CREATE TEMP TABLE pool_core_tmp (a int)"],
        "select to_regclass('pg_temp.pool_core_tmp') is null",
        "temp",
    ),
    "prepare": (
        ["PREPARE pool_core_q AS SELECT 1"],
        "select count(*) = 0 from pg_prepared_statements where name = 'pool_core_q'",
        "prepare",
    ),
    "advisory": (
        [f"select pg_advisory_lock({LOCK_KEY})"],
        f"select count(*) = 0 from pg_locks where locktype = 'advisory' and objid = {LOCK_KEY}",
        "advisory_lock",
    ),
    "with_hold": (
        ["BEGIN", "DECLARE pool_core_c CURSOR WITH HOLD FOR SELECT 1", "COMMIT"],
        "select count(*) = 0 from pg_cursors where name = 'pool_core_c'",
        "with_hold",
    ),
    "timezone_via_function": (  # no SET in the text: the server's ParameterStatus tells
        ["select set_config('TimeZone', 'Pacific/Chatham', false)"],
        "select current_setting('TimeZone') <> 'Pacific/Chatham'",
        "set_config",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_state_does_not_leak_to_the_next_client(single: Binding, case: str) -> None:
    statements, check, reason = CASES[case]
    first = await asyncpg.connect(single.dsn)
    try:
        for sql in statements:
            await first.execute(sql)
        stats = single.pool.stats()
        assert stats.pinned == 1
        assert stats.pins == {reason: 1}
    finally:
        await first.close()
    await eventually(lambda: single.pool.stats().idle == 1)
    second = await asyncpg.connect(single.dsn)
    try:
        assert await second.fetchval(check) is True
    finally:
        await second.close()
    stats = single.pool.stats()
    assert stats.resets == 1
    assert stats.opened == 1  # the same server connection, reset, not a new one


async def test_parameter_status_change_pins(single: Binding) -> None:
    """A function that changes a reported setting: invisible in the SQL, seen on the wire."""
    name = f"pool_core_tz_{secrets.token_hex(4)}"
    direct = await asyncpg.connect(direct_dsn())
    await direct.execute(
        f"create function {name}() returns text language sql as "
        "$$ select set_config('TimeZone', 'Asia/Kathmandu', false) $$"
    )
    try:
        conn = await asyncpg.connect(single.dsn)
        try:
            await conn.execute(f"select {name}()")
            assert single.pool.stats().pins == {"parameter_status": 1}
        finally:
            await conn.close()
        await eventually(lambda: single.pool.stats().idle == 1)
        conn = await asyncpg.connect(single.dsn)
        try:
            assert await conn.fetchval("select current_setting('TimeZone')") != "Asia/Kathmandu"
        finally:
            await conn.close()
    finally:
        await direct.execute(f"drop function {name}()")
        await direct.close()


async def test_set_local_does_not_pin(single: Binding) -> None:
    conn = await asyncpg.connect(single.dsn)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL application_name = 'only-here'")
            assert await conn.fetchval("select current_setting('application_name')") == "only-here"
        assert single.pool.stats().pinned == 0
        assert await conn.fetchval("select current_setting('application_name')") != "only-here"
    finally:
        await conn.close()
    assert single.pool.stats().resets == 0


async def test_a_listening_client_gets_its_notifications(single: Binding) -> None:
    conn = await asyncpg.connect(single.dsn)
    got: list[str] = []
    try:
        await conn.add_listener("pool_core_events", lambda *args: got.append(args[3]))
        assert single.pool.stats().pins == {"listen": 1}
        direct = await asyncpg.connect(direct_dsn())
        try:
            await direct.execute("select pg_notify('pool_core_events', 'hello')")
        finally:
            await direct.close()
        await eventually(lambda: got == ["hello"])
        assert await conn.fetchval("select 1") == 1  # the pinned connection keeps working
    finally:
        await conn.close()


async def test_temp_table_on_commit_drop_does_not_pin(single: Binding) -> None:
    conn = await asyncpg.connect(single.dsn)
    try:
        async with conn.transaction():
            await conn.execute("CREATE TEMP TABLE pool_core_stage (a int) ON COMMIT DROP")
            await conn.execute("insert into pool_core_stage values (1), (2)")
            assert await conn.fetchval("select count(*) from pool_core_stage") == 2
        assert single.pool.stats().pinned == 0
    finally:
        await conn.close()
    other = await asyncpg.connect(single.dsn)
    try:
        assert await other.fetchval("select to_regclass('pg_temp.pool_core_stage') is null")
    finally:
        await other.close()
    assert single.pool.stats().pins == {}
