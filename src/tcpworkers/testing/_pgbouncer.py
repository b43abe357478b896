"""A real PgBouncer for tests: started in a temporary directory, stopped by the test.

Runs the system's ``pgbouncer`` (Debian package ``pgbouncer``, ``/usr/sbin/pgbouncer``) in the
foreground on 127.0.0.1 and a free port, in front of one PostgreSQL server, with transaction
pooling by default. Everything it writes (config, user list, log, unix socket) lives in a
temporary directory removed at :meth:`PgBouncer.stop`. PgBouncer refuses to run as root, so as
root it runs as ``nobody`` (``run_as``).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Final, final
from urllib.parse import quote

from tcpworkers.errors import ServerNotFoundError
from tcpworkers.testing._process import free_port

__all__ = ["PgBouncer"]

DEFAULT_BINARY: Final = "/usr/sbin/pgbouncer"
_START_TIMEOUT: Final = 15.0
_STOP_TIMEOUT: Final = 10.0


@final
class PgBouncer:
    """A PgBouncer process in front of ``upstream_host:upstream_port``.

    Args:
        upstream_host: the PostgreSQL server's host (or unix socket directory).
        upstream_port: its port.
        users: user name -> password for the user list (PgBouncer logs in upstream with these
            passwords, and checks clients against them unless ``auth_type="trust"``).
        auth_type: how clients authenticate to PgBouncer: ``trust``, ``plain``, ``md5`` or
            ``scram-sha-256``.
        pool_mode: ``transaction`` (default), ``session`` or ``statement``.
        pool_size: server connections per user and database.
        settings: more ``[pgbouncer]`` settings (e.g. ``{"max_client_conn": "500"}``).
        binary: the pgbouncer executable.
        run_as: the user to run as when started by root.

    Use as ``async with PgBouncer(...) as bouncer:``; then :attr:`host`, :attr:`port` and
    :meth:`dsn` say where to connect. Any database name is forwarded to the upstream database
    of the same name.
    """

    def __init__(
        self,
        upstream_host: str,
        upstream_port: int,
        *,
        users: Mapping[str, str],
        auth_type: str = "scram-sha-256",
        pool_mode: str = "transaction",
        pool_size: int = 10,
        settings: Mapping[str, str] | None = None,
        binary: str = DEFAULT_BINARY,
        run_as: str = "nobody",
    ) -> None:
        if auth_type not in ("trust", "plain", "md5", "scram-sha-256"):
            raise ValueError(
                f"auth_type must be trust, plain, md5 or scram-sha-256, not {auth_type!r}"
            )
        if pool_mode not in ("session", "transaction", "statement"):
            raise ValueError(
                f"pool_mode must be session, transaction or statement, not {pool_mode!r}"
            )
        self.upstream_host = upstream_host
        self.upstream_port = upstream_port
        self.users = dict(users)
        self.auth_type = auth_type
        self.pool_mode = pool_mode
        self.pool_size = pool_size
        self.settings = dict(settings or {})
        self.binary = binary
        self.run_as = run_as
        self.host = "127.0.0.1"
        self.port = 0
        self._dir: str | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def dsn(self, user: str, database: str, *, password: str | None = None) -> str:
        """A ``postgresql://`` URL for ``user`` (password from :attr:`users` unless given)."""
        secret = self.users.get(user) if password is None else password
        auth = quote(user, safe="") + (f":{quote(secret, safe='')}" if secret else "")
        return f"postgresql://{auth}@{self.host}:{self.port}/{quote(database, safe='')}"

    @property
    def log(self) -> str:
        """What PgBouncer logged so far (empty before start)."""
        text = ""
        for name in ("stderr.log", "pgbouncer.log"):
            if self._dir is None:
                break
            try:
                with open(os.path.join(self._dir, name), encoding="utf-8", errors="replace") as f:
                    text += f.read()
            except FileNotFoundError:
                pass
        return text

    async def start(self) -> None:
        """Write the config, start PgBouncer and wait until it accepts connections.

        Raises:
            ServerNotFoundError: pgbouncer is not installed (``apt-get install pgbouncer``).
            RuntimeError: it exited or did not listen in time; the message has its log.
        """
        if self._process is not None:
            raise RuntimeError("PgBouncer already started")
        await asyncio.to_thread(self._prepare)
        for _attempt in range(3):
            await asyncio.to_thread(self._launch)
            if await self._wait_listening():
                return
            await asyncio.to_thread(self._reap)
            if "Address already in use" not in self.log:
                break
        log = self.log[-2000:]
        await self.stop()
        raise RuntimeError(f"PgBouncer did not start; its log:\n{log}")

    async def stop(self) -> None:
        """Stop PgBouncer (SIGINT: immediate shutdown) and remove its directory. Idempotent."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                await asyncio.to_thread(process.wait, _STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                await asyncio.to_thread(process.wait)
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def _prepare(self) -> None:
        if not (os.path.isfile(self.binary) and os.access(self.binary, os.X_OK)):
            raise ServerNotFoundError(
                f"PgBouncer not found ({self.binary}): apt-get install pgbouncer, or "
                "scripts/services in a tcpworkers checkout"
            )
        self._dir = tempfile.mkdtemp(prefix="tcpworkers-pgbouncer-")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.run_as)
            os.chown(self._dir, entry.pw_uid, entry.pw_gid)

    def _launch(self) -> None:
        assert self._dir is not None
        command = [self.binary, "-q", os.path.join(self._dir, "pgbouncer.ini")]
        if os.geteuid() == 0:
            command[1:1] = ["-u", self.run_as]
        # PgBouncer cannot listen on port 0 and report the port; if the one picked is taken
        # before it binds, start() tries again.
        self.port = free_port(self.host)
        self._write_config()
        with open(os.path.join(self._dir, "stderr.log"), "ab") as stderr:
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr
            )

    async def __aenter__(self) -> PgBouncer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _write_config(self) -> None:
        assert self._dir is not None
        userlist = os.path.join(self._dir, "userlist.txt")
        with open(userlist, "w", encoding="utf-8") as f:
            for user, password in self.users.items():
                f.write(f'"{_quote(user)}" "{_quote(password)}"\n')
        settings = {
            "listen_addr": self.host,
            "listen_port": str(self.port),
            "unix_socket_dir": self._dir,
            "auth_type": self.auth_type,
            "auth_file": userlist,
            "pool_mode": self.pool_mode,
            "default_pool_size": str(self.pool_size),
            "max_client_conn": "1000",
            "logfile": os.path.join(self._dir, "pgbouncer.log"),
            "pidfile": os.path.join(self._dir, "pgbouncer.pid"),
            "ignore_startup_parameters": "extra_float_digits",
            "server_tls_sslmode": "disable",
            "log_connections": "0",
            "log_disconnections": "0",
        }
        settings.update(self.settings)
        lines = [
            "[databases]",
            f"* = host={self.upstream_host} port={self.upstream_port}",
            "[pgbouncer]",
            *(f"{key} = {value}" for key, value in settings.items()),
        ]
        with open(os.path.join(self._dir, "pgbouncer.ini"), "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        if os.geteuid() == 0:
            entry = pwd.getpwnam(self.run_as)
            for name in os.listdir(self._dir):
                os.chown(os.path.join(self._dir, name), entry.pw_uid, entry.pw_gid)

    async def _wait_listening(self) -> bool:
        assert self._process is not None
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                return False
            try:
                _reader, writer = await asyncio.open_connection(self.host, self.port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            return True
        return False

    def _reap(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.kill()
            process.wait()


def _quote(value: str) -> str:
    # PgBouncer's auth_file: double-quoted, a double quote inside doubled.
    return value.replace('"', '""')
