"""LocalPostgres: a PostgreSQL cluster on 127.0.0.1 for demos and tests.

Theory of operation. ``start()`` makes sure a data directory exists (``initdb`` on first use,
then the role's password and the database set in single-user mode, so no client library is
needed), writes ``pg_hba.conf`` for the chosen auth method, then runs ``postgres`` directly as a
child process on a port picked by binding a probe socket (PostgreSQL cannot take port 0). If the
port was taken in between, the server exits with "Address already in use" and the launcher
retries with another. Readiness is read from ``postmaster.pid``, whose last line says ``ready``
once the server accepts connections. ``stop()`` sends SIGINT (fast shutdown). A temporary
cluster (no ``data_dir``) is deleted on stop; a named one is kept and starts in about a second
next time.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Literal, Self, final

from ..errors import LocalPostgresError
from ._binaries import Binaries, BinariesChoice, find_binaries
from ._proc import (
    Account,
    free_port,
    reachable_install,
    resolve_account,
    run,
    spawn,
    stop_stale,
    terminate,
)

__all__ = ["AuthMethod", "LocalPostgres"]

AuthMethod = Literal["scram-sha-256", "md5", "password", "trust"]
_AUTH_METHODS = ("scram-sha-256", "md5", "password", "trust")
_META = "tcpworkers-cluster.json"  # what initdb was run with, kept in the data directory
_LOG = "tcpworkers-postgres.log"
_PORT_ATTEMPTS = 8
# Settings for throwaway clusters: durability is not wanted, speed is.
_EPHEMERAL = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


@final
class LocalPostgres:
    """A local PostgreSQL server: initdb, start on a free port, stop.

    Example::

        with LocalPostgres(auth="scram-sha-256") as pg:
            conn = await asyncpg.connect(pg.dsn())

    Args:
        data_dir: where the cluster lives; kept after ``stop()`` and reused next time. ``None``:
            a temporary directory, deleted on ``stop()``.
        auth: the ``pg_hba.conf`` method for TCP and unix-socket connections.
        user: the superuser role created by initdb.
        password: its password; ``None`` generates one (or reuses the one stored in
            ``data_dir``). Ignored for ``trust``.
        database: a database created for ``user`` on first start.
        host: the address to listen on (loopback).
        port: a fixed port; ``None`` picks a free one on every start.
        ssl_cert, ssl_key: PEM files to serve TLS with (``ssl = on``); both or neither.
        require_ssl: refuse TCP connections without TLS (``hostssl`` lines only).
        binaries: ``"auto"``, ``"embedded"``, ``"system"`` or a bin directory (see
            :func:`tcpworkers.localpg.find_binaries`).
        run_as: the account initdb and postgres run as; default ``nobody`` when root.
        settings: extra ``postgresql.conf`` settings passed as ``-c name=value``.
        start_timeout: seconds to wait for the server to accept connections.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike[str] | None = None,
        *,
        auth: AuthMethod = "scram-sha-256",
        user: str = "tcpworkers",
        password: str | None = None,
        database: str = "tcpworkers",
        host: str = "127.0.0.1",
        port: int | None = None,
        ssl_cert: str | os.PathLike[str] | None = None,
        ssl_key: str | os.PathLike[str] | None = None,
        require_ssl: bool = False,
        binaries: BinariesChoice | os.PathLike[str] = "auto",
        run_as: str | None = None,
        settings: Mapping[str, str] | None = None,
        start_timeout: float = 30.0,
    ) -> None:
        if auth not in _AUTH_METHODS:
            raise ValueError(f"auth must be one of {', '.join(_AUTH_METHODS)}, got {auth!r}")
        if (ssl_cert is None) != (ssl_key is None):
            raise ValueError("pass both ssl_cert and ssl_key (PEM files), or neither")
        if require_ssl and ssl_cert is None:
            raise ValueError("require_ssl needs ssl_cert and ssl_key")
        for name, value in (("user", user), ("database", database), ("password", password)):
            if value is not None and (not value or any(c in value for c in "\0\r\n\"'\\")):
                raise ValueError(f"{name} must be non-empty without quotes, backslashes, newlines")
        self._data_dir = Path(data_dir).resolve() if data_dir is not None else None
        self._temporary = data_dir is None
        self.auth: AuthMethod = auth
        self.user = user
        self.database = database
        self.host = host
        self._password = password
        self._fixed_port = port
        self._ssl = (Path(ssl_cert), Path(ssl_key)) if ssl_cert and ssl_key else None
        self._require_ssl = require_ssl
        self._binaries_choice = binaries
        self._run_as = run_as
        self._settings = dict(settings or {})
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._run_dir: Path | None = None
        self._port: int | None = None
        self._binaries: Binaries | None = None
        self.initialised = False  # True when the last start() ran initdb
        self.init_seconds = 0.0  # initdb + first set-up, 0 when the data dir was reused
        self.start_seconds = 0.0  # postgres spawn until ready

    # -- what clients need

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise LocalPostgresError("the cluster has no data directory yet: call start() first")
        return self._data_dir

    @property
    def port(self) -> int:
        if self._port is None:
            raise LocalPostgresError("the cluster is not running: call start() first")
        return self._port

    @property
    def password(self) -> str | None:
        return None if self.auth == "trust" else self._password

    @property
    def socket_dir(self) -> Path:
        if self._run_dir is None:
            raise LocalPostgresError("the cluster is not running: call start() first")
        return self._run_dir

    @property
    def binaries(self) -> Binaries:
        if self._binaries is None:
            raise LocalPostgresError("the cluster is not running: call start() first")
        return self._binaries

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def dsn(self, database: str | None = None, *, sslmode: str | None = None) -> str:
        """A libpq URL for TCP: ``postgresql://user:password@127.0.0.1:PORT/db[?sslmode=..]``."""
        auth = urllib.parse.quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + urllib.parse.quote(self.password, safe="")
        host = f"[{self.host}]" if ":" in self.host else self.host
        query = f"?sslmode={sslmode}" if sslmode else ""
        return f"postgresql://{auth}@{host}:{self.port}/{database or self.database}{query}"

    def unix_dsn(self, database: str | None = None) -> str:
        """A libpq URL for the unix socket (``?host=DIR&port=PORT``)."""
        auth = urllib.parse.quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + urllib.parse.quote(self.password, safe="")
        query = urllib.parse.urlencode({"host": str(self.socket_dir), "port": self.port})
        return f"postgresql://{auth}@/{database or self.database}?{query}"

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.data_dir / _LOG).read_text(errors="replace")
        except (OSError, LocalPostgresError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    # -- life cycle (sync)

    def start(self) -> Self:
        """Initialise if needed, start, and wait until the server accepts connections."""
        if self.running:
            return self
        account = self._prepare()
        self._spawn_until_ready(account)
        return self

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then the temporary files; idempotent, never raises."""
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            terminate(proc)
        self._cleanup()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- life cycle (async): initdb in a thread, the server spawned from the loop's thread

    async def start_async(self) -> Self:
        if self.running:
            return self
        account = await asyncio.to_thread(self._prepare)
        started = time.monotonic()
        for attempt in range(_PORT_ATTEMPTS):
            proc = self._spawn(account)
            while True:
                state = self._poll_ready(proc)
                if state == "ready":
                    self.start_seconds = time.monotonic() - started
                    return self
                if state == "retry" and attempt + 1 < _PORT_ATTEMPTS:
                    break
                if time.monotonic() - started > self._start_timeout or state != "wait":
                    self._fail_start(proc, state)
                await asyncio.sleep(0.02)
        raise AssertionError("unreachable")

    async def stop_async(self) -> None:
        await asyncio.to_thread(self.stop)

    async def __aenter__(self) -> Self:
        return await self.start_async()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop_async()

    # -- internals

    def _prepare(self) -> Account:
        self._binaries = binaries = find_binaries(self._binaries_choice, ssl=self._ssl is not None)
        account = resolve_account(self._run_as)
        label = f"postgres-{binaries.source}-{binaries.version}"
        bin_dir = reachable_install(binaries.bin_dir, account, label)
        if bin_dir != binaries.bin_dir:
            self._binaries = binaries = dataclasses.replace(binaries, bin_dir=bin_dir)
        if self._data_dir is not None and not account.can_reach(self._data_dir.parent):
            raise LocalPostgresError(
                f"user {account.name!r} (PostgreSQL runs as it because we are root) cannot "
                f"reach {self._data_dir}; choose a data directory outside a private home, "
                "e.g. under /var/lib"
            )
        self._run_dir = Path(tempfile.mkdtemp(prefix="tcpw-pg-"))
        try:
            account.chown(self._run_dir)
            if self._data_dir is None:
                self._data_dir = self._run_dir / "data"
            self._init_or_reuse(account, binaries)
        except BaseException:
            self._cleanup()
            raise
        return account

    def _init_or_reuse(self, account: Account, binaries: Binaries) -> None:
        assert self._data_dir is not None
        stop_stale(self._data_dir)
        started = time.monotonic()
        self.initialised = not (self._data_dir / "PG_VERSION").exists()
        if self.initialised:
            self._initdb(account, binaries)
        else:
            self._check_reuse(account, binaries)
        self._write_hba(account)
        self.init_seconds = time.monotonic() - started if self.initialised else 0.0

    def _initdb(self, account: Account, binaries: Binaries) -> None:
        data = self.data_dir
        data.mkdir(parents=True, exist_ok=True)
        if any(data.iterdir()):
            raise LocalPostgresError(f"{data} is not empty and holds no cluster; pick another")
        account.chown(data)
        data.chmod(0o700)
        argv = [binaries.path("initdb"), "-D", str(data), "-U", self.user, "--auth=trust"]
        argv += ["-E", "UTF8", "--no-locale", "--no-sync", "--no-instructions"]
        run(argv, account, what="initdb")
        if self._password is None:
            self._password = secrets.token_urlsafe(18)
        self._single_user(
            account,
            binaries,
            f"ALTER ROLE \"{self.user}\" PASSWORD '{self._password}'",
            f'CREATE DATABASE "{self.database}" OWNER "{self.user}"'
            if self.database not in ("postgres", "template1")
            else "SELECT 1",
        )
        self._write_meta()

    def _check_reuse(self, account: Account, binaries: Binaries) -> None:
        data = self.data_dir
        major = (data / "PG_VERSION").read_text().strip()
        if major != str(binaries.major):
            raise LocalPostgresError(
                f"{data} was initialised by PostgreSQL {major}, but the binaries in "
                f"{binaries.bin_dir} are {binaries.version}; use a data directory per major "
                "version or remove this one"
            )
        try:
            meta = json.loads((data / _META).read_text())
        except (OSError, ValueError):
            raise LocalPostgresError(
                f"{data} holds a cluster tcpworkers did not create ({_META} missing); "
                "pick another data directory"
            ) from None
        if meta.get("user") != self.user:
            raise LocalPostgresError(
                f"{data} was initialised for user {meta.get('user')!r}, not {self.user!r}"
            )
        if self._password is None:
            self._password = str(meta["password"])
        elif self._password != meta["password"] or meta.get("auth") != self.auth:
            self._single_user(
                account, binaries, f"ALTER ROLE \"{self.user}\" PASSWORD '{self._password}'"
            )
            self._write_meta()

    def _single_user(self, account: Account, binaries: Binaries, *statements: str) -> None:
        # md5 needs an md5-hashed password stored; everything else keeps SCRAM hashes.
        encryption = "md5" if self.auth == "md5" else "scram-sha-256"
        argv = [binaries.path("postgres"), "--single", "-D", str(self.data_dir)]
        argv += ["-c", f"password_encryption={encryption}", "postgres"]
        run(argv, account, what="postgres --single", stdin="\n".join(statements).encode() + b"\n")

    def _write_meta(self) -> None:
        meta = {"user": self.user, "password": self._password, "auth": self.auth}
        path = self.data_dir / _META
        path.write_text(json.dumps(meta))
        path.chmod(0o600)

    def _write_hba(self, account: Account) -> None:
        host = "hostssl" if self._require_ssl else "host"
        lines = [
            "# written by tcpworkers.localpg on every start",
            f"local all all {self.auth}",
            f"{host} all all 127.0.0.1/32 {self.auth}",
            f"{host} all all ::1/128 {self.auth}",
        ]
        path = self.data_dir / "pg_hba.conf"
        path.write_text("\n".join(lines) + "\n")
        account.chown(path)
        path.chmod(0o600)
        if self._ssl is not None:
            for source, name in zip(self._ssl, ("server.crt", "server.key"), strict=True):
                target = self.data_dir / name
                shutil.copyfile(source, target)
                account.chown(target)
                target.chmod(0o600)

    def _spawn(self, account: Account) -> subprocess.Popen[bytes]:
        self._port = self._fixed_port or free_port(self.host)
        settings = {} if not self._temporary else dict(_EPHEMERAL)
        settings.update(
            listen_addresses=self.host,
            port=str(self._port),
            unix_socket_directories=str(self.socket_dir),
            password_encryption="md5" if self.auth == "md5" else "scram-sha-256",
        )
        if self._ssl is not None:
            settings.update(ssl="on", ssl_cert_file="server.crt", ssl_key_file="server.key")
        settings.update(self._settings)
        argv = [self.binaries.path("postgres"), "-D", str(self.data_dir)]
        for name, value in settings.items():
            argv += ["-c", f"{name}={value}"]
        with self._open_log() as log:
            self._proc = proc = spawn(argv, account, log=log, guard=True)
        atexit.register(self.stop)
        return proc

    def _open_log(self) -> IO[bytes]:
        path = self.data_dir / _LOG
        if path.exists() and path.stat().st_size > 1 << 20:
            path.unlink()  # keep the log of a long-lived demo cluster small
        return path.open("ab")

    def _spawn_until_ready(self, account: Account) -> None:
        started = time.monotonic()
        for attempt in range(_PORT_ATTEMPTS):
            proc = self._spawn(account)
            state = self._wait_ready_sync(proc)
            if state == "ready":
                self.start_seconds = time.monotonic() - started
                return
            if state != "retry" or attempt + 1 == _PORT_ATTEMPTS:
                self._fail_start(proc, state)

    def _wait_ready_sync(self, proc: subprocess.Popen[bytes]) -> str:
        deadline = time.monotonic() + self._start_timeout
        while (state := self._poll_ready(proc)) == "wait":
            if time.monotonic() > deadline:
                return "timeout"
            time.sleep(0.02)
        return state

    def _poll_ready(self, proc: subprocess.Popen[bytes]) -> str:
        """``ready``, ``wait``, ``retry`` (port taken) or ``exited``."""
        if proc.poll() is not None:
            self._proc = None
            atexit.unregister(self.stop)
            if self._fixed_port is None and "already in use" in self.log_tail(10):
                return "retry"
            return "exited"
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return "wait"
        if len(lines) >= 8 and lines[0].strip() == str(proc.pid) and lines[7].strip() == "ready":
            return "ready"
        return "wait"

    def _fail_start(self, proc: subprocess.Popen[bytes], state: str) -> None:
        terminate(proc)
        self._proc = None
        log, tail = self.data_dir / _LOG, self.log_tail()
        self._cleanup()
        what = "did not become ready in time" if state == "timeout" else "exited"
        kept = "" if self._temporary else f" ({log})"
        raise LocalPostgresError(
            f"PostgreSQL ({self.binaries.bin_dir}) {what}; its log{kept} ends with:\n{tail}"
        )

    def _cleanup(self) -> None:
        run_dir, self._run_dir = self._run_dir, None
        if run_dir is not None:
            shutil.rmtree(run_dir, ignore_errors=True)
        if self._temporary:
            self._data_dir = None
        self._port = self._fixed_port
