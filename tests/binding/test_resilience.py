"""The binding against a TLS-only cluster, through a real PgBouncer, and across a PostgreSQL
restart under load."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tcpworkers.errors import UpstreamAuthError, UpstreamConnectError
from tcpworkers.localpg import LocalPostgres
from tcpworkers.pool._binding import PostgresBinding, check_upstream
from tcpworkers.pool._dsn import parse_dsn
from tcpworkers.pool._pool import PoolSettings
from tcpworkers.testing import PgBouncer, TestCA
from tests.pgserver import PgServer


@contextlib.asynccontextmanager
async def started(dsn: str, **settings: float) -> AsyncIterator[PostgresBinding]:
    binding = PostgresBinding("DB", parse_dsn(dsn), PoolSettings(**settings))  # type: ignore[arg-type]
    await binding.start()
    try:
        yield binding
    finally:
        await binding.stop()


async def select_twice(binding: PostgresBinding) -> list[int]:
    conn = await asyncpg.connect(binding.connection_string)
    try:
        return [await conn.fetchval("select $1::int + 1", i) for i in range(2)]
    finally:
        await conn.close()


# -- TLS ---------------------------------------------------------------------------------------


async def test_verify_full_against_a_tls_only_cluster(tls_postgres: PgServer) -> None:
    dsn = tls_postgres.dsn(sslmode="verify-full")
    result = await check_upstream(parse_dsn(dsn))
    assert result.tls is not None
    assert result.tls.startswith("TLSv1")
    assert result.auth_method == "scram-sha-256"
    async with started(dsn, min_size=1, max_size=2) as binding:
        assert await select_twice(binding) == [1, 2]


async def test_tls_refusals_are_clear(tls_postgres: PgServer) -> None:
    with pytest.raises(UpstreamAuthError, match="no encryption"):
        await check_upstream(parse_dsn(tls_postgres.dsn(sslmode="disable")))
    other_ca = TestCA()
    with tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False) as f:
        f.write(other_ca.ca_pem)
    try:
        wrong = tls_postgres.dsn(sslmode="verify-full").split("&sslrootcert=")[0]
        with pytest.raises(UpstreamConnectError, match=r"TLS handshake failed.*sslrootcert"):
            await check_upstream(parse_dsn(f"{wrong}&sslrootcert={f.name}"))
    finally:
        os.unlink(f.name)
    # require encrypts without verifying: the unknown CA does not matter.
    result = await check_upstream(parse_dsn(tls_postgres.dsn(sslmode="require").split("&")[0]))
    assert result.tls is not None


# -- PgBouncer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pool_mode", "prepared_statements"), [("session", True), ("transaction", False)]
)
async def test_binding_through_a_real_pgbouncer(
    scram_postgres: PgServer, pool_mode: str, prepared_statements: bool
) -> None:
    # Session mode: each of the binding's server connections keeps one backend, so the
    # statements the pool prepares there stay there. Transaction mode hands each transaction to
    # whichever backend is free, so the binding must not keep prepared statements
    # (prepared_statements = false); asyncpg's own statement cache stays on, the pool maps its
    # named statements to unnamed ones. PgBouncer still caps and queues what every machine's
    # pools open together.
    assert scram_postgres.password is not None
    async with PgBouncer(
        scram_postgres.host,
        scram_postgres.port,
        users={scram_postgres.user: scram_postgres.password},
        auth_type="scram-sha-256",
        pool_mode=pool_mode,
        pool_size=2,
    ) as bouncer:
        dsn = bouncer.dsn(scram_postgres.user, scram_postgres.database)
        result = await check_upstream(parse_dsn(dsn))
        assert result.auth_method == "scram-sha-256"
        settings = {"min_size": 1, "max_size": 2, "prepared_statements": prepared_statements}
        async with started(dsn, **settings) as binding:
            answers = await asyncio.gather(*(select_twice(binding) for _ in range(20)))
            assert answers == [[1, 2]] * 20


# -- restart -----------------------------------------------------------------------------------


async def test_postgres_restarted_under_load() -> None:
    from tcpworkers.localpg._proc import free_port

    parent = tempfile.mkdtemp(prefix="tcpworkers-restart-")
    os.chmod(parent, 0o755)  # reachable by the unprivileged user the cluster runs as
    pg = LocalPostgres(os.path.join(parent, "data"), port=free_port("127.0.0.1"))
    await pg.start_async()
    outcomes: list[tuple[float, str]] = []
    stop = asyncio.Event()

    async def load(binding: PostgresBinding) -> None:
        while not stop.is_set():
            try:
                conn = await asyncpg.connect(binding.connection_string, timeout=10)
                try:
                    await conn.fetchval("select 1")
                finally:
                    await conn.close()
                outcomes.append((time.monotonic(), "ok"))
            except Exception as exc:  # whatever the driver raises while the server is away
                outcomes.append((time.monotonic(), str(exc)))
                await asyncio.sleep(0.05)

    try:
        async with started(pg.dsn(), min_size=2, max_size=4, acquire_timeout=2) as binding:
            tasks = [asyncio.create_task(load(binding)) for _ in range(4)]
            await asyncio.sleep(0.5)
            await pg.stop_async()
            down = time.monotonic()
            await asyncio.sleep(1.0)
            await pg.start_async()
            up = time.monotonic()
            for _ in range(400):  # up to 20 s for the first success after the restart
                if any(t > up and o == "ok" for t, o in outcomes):
                    break
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.gather(*tasks)
    finally:
        await pg.stop_async()
        shutil.rmtree(parent, ignore_errors=True)
    assert any(o == "ok" for t, o in outcomes if t < down), "no success before the restart"
    failures = [o for t, o in outcomes if down <= t <= up and o != "ok"]
    assert failures, "requests during the outage should fail"
    assert any("DB" in f or "server" in f for f in failures), failures[:3]
    assert any(t > up and o == "ok" for t, o in outcomes), "no success after the restart"


async def test_starts_while_the_database_is_down_and_recovers() -> None:
    from tcpworkers.localpg._proc import free_port

    parent = tempfile.mkdtemp(prefix="tcpworkers-late-")
    os.chmod(parent, 0o755)
    port = free_port("127.0.0.1")
    pg = LocalPostgres(os.path.join(parent, "data"), port=port, password="pb-late-secret")
    dsn = f"postgresql://{pg.user}:pb-late-secret@127.0.0.1:{port}/{pg.database}"
    try:
        # Nothing listens yet: the runtime must still start (and say why clients fail).
        async with started(dsn, min_size=1, max_size=2, acquire_timeout=2) as binding:
            with pytest.raises(asyncpg.PostgresError, match="pool binding 'DB'"):
                await select_twice(binding)
            await pg.start_async()
            answer = None
            for _ in range(200):  # the background start retries, 0.5 s doubling
                try:
                    answer = await select_twice(binding)
                    break
                except asyncpg.PostgresError:
                    await asyncio.sleep(0.1)
            assert answer == [1, 2]
            stats = binding.stats()
            assert stats is not None
            assert stats.idle + stats.active >= 1
    finally:
        await pg.stop_async()
        shutil.rmtree(parent, ignore_errors=True)
