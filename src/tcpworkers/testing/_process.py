"""What the test kit's server launchers share: a private directory, a free port, a child process.

:class:`LocalMariaDB` and :class:`LocalRedis` run a real server binary from the system (Debian's
``mariadb-server`` and ``redis-server``) as a child process, in a temporary directory of its
own, listening on loopback only. Servers that refuse to run as root (``mariadbd``) run as an
unprivileged system user when the test runs as root; the directory is handed to that user.
Starting and stopping are synchronous (``subprocess``), so a session-scoped pytest fixture can
own one server for every event loop the tests run on.

A server must not outlive the test process: a run killed with SIGKILL (a CI timeout, a second
Ctrl-C) runs no clean-up, so each server is started under localpg's parent-death guard and gets
SIGTERM from the kernel when the process that started it dies.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

# One way to pick a port for a server that cannot report the one it bound, and one parent-death
# guard (shared with localpg).
from tcpworkers.errors import ServerNotFoundError
from tcpworkers.localpg._proc import free_port, parent_death_prefix

if TYPE_CHECKING:
    from tcpworkers.testing._certs import TestCA

__all__ = ["ServerLauncher", "ServerProcess", "find_binary", "free_port"]

# How long a server gets to start (mariadbd creates its InnoDB files first) and to stop.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


def find_binary(
    name: str, *, package: str, what: str, extra_dirs: Sequence[str] = ("/usr/sbin",)
) -> str:
    """The path of a server binary, or :class:`ServerNotFoundError` naming ``what`` it is
    (``"MariaDB server"``), the binary and the package to install."""
    found = shutil.which(name)
    if found is None:
        for directory in extra_dirs:
            candidate = Path(directory) / name
            if candidate.is_file() and os.access(candidate, os.X_OK):
                found = str(candidate)
                break
    if found is None:
        raise ServerNotFoundError(
            f"{what} not found ({name}, looked on PATH and in {', '.join(extra_dirs)}): "
            f"apt-get install {package}, or scripts/services in a tcpworkers checkout"
        )
    return found


class ServerProcess:
    """A temporary directory and a child process, owned by one launcher.

    Args:
        prefix: the temporary directory's name prefix.
        run_as: a system user to run the process as when this process is root (and to hand the
            directory to); ignored when not root.
    """

    def __init__(self, prefix: str, *, run_as: str | None = None) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix=prefix))
        self.user: str | None = None
        if run_as is not None and os.geteuid() == 0:
            entry = pwd.getpwnam(run_as)  # KeyError: the package that creates it is missing
            self.user = run_as
            self._uid, self._gid = entry.pw_uid, entry.pw_gid
            os.chmod(self.directory, 0o755)
            os.chown(self.directory, self._uid, self._gid)
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.directory / "server.log"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs (the guard execs into it: same process)."""
        return self.process.pid if self.process is not None else None

    def write_tls(self, ca: TestCA) -> tuple[str, Path, Path]:
        """Write ``ca``'s certificate and a server certificate and key it issues (for
        ``localhost``, ``127.0.0.1``, ``::1``); their paths: CA (as ``str``), cert, key."""
        ca_file = str(self.write("ca.pem", ca.ca_pem, mode=0o644))
        server = ca.issue_server_cert()
        cert = self.write("server.crt", server.cert_pem, mode=0o644)
        key = self.write("server.key", server.key_pem)
        return ca_file, cert, key

    def write(self, name: str, text: str, *, mode: int = 0o600) -> Path:
        """Write a file into the directory, readable by the server's user."""
        path = self.directory / name
        path.touch(mode=mode)
        path.write_text(text, encoding="utf-8")
        self.give(path)
        return path

    def give(self, path: Path) -> None:
        """Hand a file or directory to the server's user (no-op when not running as root)."""
        if self.user is not None:
            os.chown(path, self._uid, self._gid)

    def run(self, argv: Sequence[str], *, timeout: float = START_TIMEOUT) -> str:
        """Run a set-up command to completion; its output, or ``RuntimeError`` with it."""
        result = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        output = (result.stdout + result.stderr).decode(errors="replace")
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed (exit {result.returncode}):\n{output[-2000:]}")
        return output

    def start(self, argv: Sequence[str], ready: Callable[[], bool], what: str) -> None:
        """Start the server (as :attr:`user` when set) and wait until ``ready()`` says it serves
        (or raise, with its log). SIGTERM reaches it if this process dies first."""
        log = self.log_path.open("ab")
        switch = self.user is not None
        try:
            self.process = subprocess.Popen(
                # Started as its user, not dropping root itself: the kernel forgets the guard
                # when a process changes its user id.
                [*parent_death_prefix("TERM"), *argv],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                user=self._uid if switch else None,
                group=self._gid if switch else None,
                extra_groups=[] if switch else None,
                start_new_session=True,  # a Ctrl-C in the test run does not hit it first
            )
        finally:
            log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{what} exited with status {self.process.returncode} while starting:\n"
                    f"{self.log_tail()}"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(
                    f"{what} did not start in {START_TIMEOUT:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the process (SIGTERM, then SIGKILL) and remove the directory. Idempotent."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_TIMEOUT)
        shutil.rmtree(self.directory, ignore_errors=True)


class ServerLauncher:
    """What :class:`LocalMariaDB` and :class:`LocalRedis` share: they own one
    :class:`ServerProcess` between :meth:`start` and :meth:`stop`, and are context managers."""

    _proc: ServerProcess | None

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else ``None``."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server and delete its temporary directory (its data). Idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            proc.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
