"""Shared helpers for the benchmarks: CPU time, statistics, tables, JSON, and peer processes.

Peer processes. A benchmark that measures the client side of a connection must not share a
process (or its CPU accounting) with the server side, so the servers here run in a child
process started with :class:`PeerProcess`. Run as a script, this module *is* that child::

    python benchmarks/_common.py bulk-sender   # per connection: read an 8-byte size N, send N bytes
    python benchmarks/_common.py echo          # per connection: echo everything back

The child listens on 127.0.0.1 on a port the OS picks and prints ``PORT <n>`` on stdout. It
exits when its stdin reaches EOF, so it cannot outlive the benchmark even if the benchmark is
killed with SIGKILL; :class:`PeerProcess` also terminates it on exit, exceptions and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import select
import socket
import statistics
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal

try:
    import resource
except ImportError:  # pragma: no cover - Windows
    resource = None  # type: ignore[assignment]

__all__ = [
    "BULK_HEADER",
    "CpuPlan",
    "LoopName",
    "PeerProcess",
    "Usage",
    "cpu_plan",
    "environment",
    "format_table",
    "load_average",
    "loop_factory",
    "median",
    "percentile",
    "pin_to",
    "write_json",
]

LoopName = Literal["uvloop", "asyncio"]

# The bulk sender's request: the number of bytes to send, as an unsigned 64-bit big-endian int.
BULK_HEADER: Final = struct.Struct("!Q")
_SEND_BLOCK: Final = 1 << 20
_PEER_START_TIMEOUT: Final = 15.0
RESULTS_DIR: Final = Path(__file__).resolve().parent / "results"


# -- measurement ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    """What *this* process (all its threads) used: CPU seconds, page faults, context switches.

    Child processes are not included (``RUSAGE_SELF``), so a peer process's work is never
    counted. System time matters for network benchmarks: it holds the kernel's copy of the
    received bytes into user space, and the zero-filling of fresh pages, which the minor page
    fault count reveals (the allocator returning memory to the OS and taking it back).
    """

    user: float
    system: float
    minor_faults: int = 0
    voluntary_switches: int = 0
    involuntary_switches: int = 0

    @property
    def cpu(self) -> float:
        return self.user + self.system

    @classmethod
    def now(cls) -> Usage:
        if resource is None:  # pragma: no cover - no user/system split available
            return cls(time.process_time(), 0.0)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return cls(ru.ru_utime, ru.ru_stime, ru.ru_minflt, ru.ru_nvcsw, ru.ru_nivcsw)

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.user - other.user,
            self.system - other.system,
            self.minor_faults - other.minor_faults,
            self.voluntary_switches - other.voluntary_switches,
            self.involuntary_switches - other.involuntary_switches,
        )


def median(values: Sequence[float]) -> float:
    """The median; robust to the odd round a noisy machine spoils."""
    return float(statistics.median(values))


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) of already sorted values, linearly interpolated."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= p <= 100:
        raise ValueError(f"p must be within 0..100, got {p}")
    rank = (len(sorted_values) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


# -- event loops and the machine -----------------------------------------------------------


def positive_int(text: str) -> int:
    """argparse type: a positive integer."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def progress(message: str) -> None:
    """A progress line on stderr, so stdout keeps only the results."""
    print(message, file=sys.stderr, flush=True)


def load_average() -> float:
    """The 1-minute load average (0.0 where the OS has none): a noise indicator."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return 0.0


@dataclass(frozen=True, slots=True)
class CpuPlan:
    """Which CPUs the measured process and its peer processes run on (empty: not pinned)."""

    measured: frozenset[int]
    peers: frozenset[int]


def cpu_plan(pin: bool) -> CpuPlan:
    """One CPU for the measured process, the others for peers, if there are at least two.

    Where the scheduler places the two ends of a loopback connection changes what is measured
    (same CPU: data still in cache, no cross-CPU wake-up; different CPUs: neither) and it moves
    between runs. Pinning keeps the placement the same for every variant and every run; each
    benchmark decides which peer goes where.
    """
    if not pin or not hasattr(os, "sched_getaffinity"):
        return CpuPlan(frozenset(), frozenset())
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return CpuPlan(frozenset(), frozenset())
    return CpuPlan(frozenset(available[-1:]), frozenset(available[:-1]))


def pin_to(cpus: Collection[int]) -> None:
    """Restrict this process (all its threads) to ``cpus``; a no-op where the OS cannot."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))


def loop_factory(name: LoopName) -> Callable[[], asyncio.AbstractEventLoop]:
    """The factory for the named loop; raises ``SystemExit`` with the fix if uvloop is missing."""
    if name == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        raise SystemExit(
            "uvloop is not installed; pip install uvloop, or pass --loop asyncio"
        ) from None
    return uvloop.new_event_loop


def loop_version(name: LoopName) -> str:
    if name == "uvloop":
        import uvloop

        return str(getattr(uvloop, "__version__", "unknown"))
    return platform.python_version()


# -- output --------------------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain-text table; the first column is left-aligned, the others right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def environment(loop: LoopName) -> dict[str, Any]:
    """What the numbers depend on, recorded next to them."""
    return {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "loop": loop,
        "loop_version": loop_version(loop),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # glibc malloc tuning changes page-fault behaviour, hence system time: record it.
        "malloc_env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")},
    }


def write_json(name: str, data: dict[str, Any]) -> Path:
    """Write ``data`` to ``benchmarks/results/<name>.json`` (git-ignored) and return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


# -- peer processes (parent side) ----------------------------------------------------------


def stop_child(proc: subprocess.Popen[bytes]) -> None:
    """Close a child's stdin (its exit signal), then terminate, then kill if it lingers."""
    try:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    finally:
        if proc.stdout is not None:
            proc.stdout.close()


class PeerProcess:
    """A server from this module running in a child process; a context manager.

    ``with PeerProcess("echo") as peer: ... peer.port ...``. The child is always ended on exit,
    whatever ended the block (exception, Ctrl-C); it is in its own session, so a Ctrl-C in the
    terminal reaches only the benchmark, which then ends the child itself.
    """

    def __init__(self, role: str, *, cpus: Collection[int] | None = None) -> None:
        """``cpus``: pin the child to these CPUs (see :func:`cpu_plan`); ``None`` leaves it."""
        self.role = role
        self.port = 0
        self._cpus = sorted(cpus) if cpus else []
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PeerProcess:
        pin = [f"--cpus={','.join(map(str, self._cpus))}"] if self._cpus else []
        self._proc = subprocess.Popen(
            [sys.executable, "-u", str(Path(__file__).resolve()), self.role, *pin],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            self.port = self._read_port(self._proc)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def stop(self) -> None:
        """Close the child's stdin (its exit signal), then terminate, then kill if it lingers."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_child(proc)

    def _read_port(self, proc: subprocess.Popen[bytes]) -> int:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], _PEER_START_TIMEOUT)
        line = proc.stdout.readline() if ready else b""
        if not line.startswith(b"PORT "):
            raise RuntimeError(
                f"the {self.role!r} peer process did not report its port within "
                f"{_PEER_START_TIMEOUT:.0f} s (exit code {proc.poll()})"
            )
        return int(line.split()[1])


# -- peer processes (child side) -----------------------------------------------------------


def _exit_when_parent_goes() -> None:
    """Exit as soon as stdin reaches EOF: the parent closed it, or the parent died."""

    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _serve(handler: Callable[[socket.socket], None]) -> None:
    """Listen on 127.0.0.1:0, report the port, and run ``handler`` per connection in a thread."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(f"PORT {listener.getsockname()[1]}", flush=True)

    def run(conn: socket.socket) -> None:
        with conn:
            try:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                handler(conn)
            except OSError:
                pass  # the benchmark went away mid-stream (Ctrl-C): nothing to report

    while True:
        conn, _ = listener.accept()
        threading.Thread(target=run, args=(conn,), daemon=True).start()


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        part = conn.recv(n - len(data))
        if not part:
            raise ConnectionResetError("peer closed before sending its request")
        data += part
    return data


def _bulk_sender(conn: socket.socket) -> None:
    """Read the 8-byte size, send that many zero bytes, half-close, wait for the client's EOF."""
    (remaining,) = BULK_HEADER.unpack(_recv_exactly(conn, BULK_HEADER.size))
    block = memoryview(bytes(_SEND_BLOCK))
    while remaining >= _SEND_BLOCK:
        conn.sendall(block)
        remaining -= _SEND_BLOCK
    if remaining:
        conn.sendall(block[:remaining])
    conn.shutdown(socket.SHUT_WR)
    while conn.recv(65536):
        pass


def _echo(conn: socket.socket) -> None:
    """Send back everything received, until EOF."""
    buf = bytearray(65536)
    view = memoryview(buf)
    while n := conn.recv_into(buf):
        conn.sendall(view[:n])


_ROLES: Final[dict[str, Callable[[socket.socket], None]]] = {
    "bulk-sender": _bulk_sender,
    "echo": _echo,
}


def _main(argv: Sequence[str]) -> None:
    if not 1 <= len(argv) <= 2 or argv[0] not in _ROLES:
        raise SystemExit(
            f"usage: python {Path(__file__).name} {{{','.join(_ROLES)}}} [--cpus=N,M...]"
        )
    if len(argv) == 2:
        if not argv[1].startswith("--cpus="):
            raise SystemExit(f"unknown argument {argv[1]!r}; expected --cpus=N,M...")
        pin_to({int(cpu) for cpu in argv[1].removeprefix("--cpus=").split(",")})
    _exit_when_parent_goes()
    with contextlib.suppress(KeyboardInterrupt):
        _serve(_ROLES[argv[0]])


if __name__ == "__main__":
    _main(sys.argv[1:])
