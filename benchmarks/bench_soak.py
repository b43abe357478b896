"""A soak run: steady load for a minute, then check nothing was lost and nothing grew.

A measurement, not a test: it prints tables and writes JSON, and exits 0 whatever the numbers
(issue 8's "Done when": 0 errors, flat RSS, fds back to baseline).

Servers (each its own process, started once; the same two bench_http.py compares):

1. ``bare``: a plain ASGI application on uvicorn + httptools + uvloop serving the bench worker's
   routes with raw asyncio (``bench_http.py --role bare``): the baseline.
2. ``runtime``: ``tcpworkers serve examples/bench_worker.py``, what users run: the gated loop,
   the front door's bounds, a request scope per request, ``connect()`` sockets, the JSON access
   log (to a pipe this benchmark drains).

The echo server for ``/echo`` runs in one more process (``bench_http.py --role peer``).

Load. A separate process per server (``--role soak``, uvloop, raw sockets, httptools parsing)
runs ``--connections`` clients for ``--duration`` seconds (default 60); the two servers are
loaded at the same time, so a busy machine weighs on both alike. Each load process sends:
half ask ``GET /hello``, half ``GET /echo?size=64`` (a ``connect()`` round trip to the echo
server per request); in each half, one client in four sends ``Connection: close`` and opens a
new connection for every request (churn: accept, close and their file descriptors), the others
keep their connection alive. Every response that is not ``200`` with the expected body is an
error, and so is a connection that fails (the client reconnects and goes on).

Figures, per server: requests and req/s per route, errors, latency p50/p99, and the server
process's resident memory (RSS) and open file descriptors: at the start (after a warm-up), every
``--sample`` seconds during the run (the minimum and maximum are shown), at the end of the load,
and after ``--settle`` seconds without load (kept-alive connections closed); open fds also before
the load starts ("idle"), the baseline the settled count returns to. **ratio** is the
runtime's req/s over the bare app's on the same route.

Run: ``.venv/bin/python benchmarks/bench_soak.py [--duration S] [--connections N] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import os
import queue
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, cast

from _common import environment, format_table, load_average, percentile, progress, write_json
from bench_http import _SERVING_RE, HOST, _Process, port_of, serve_argv
from bench_http import _this as _bench_http_role

ROUTES: Final = {"/hello": b"hello, world", "/echo?size=64": b"64"}
RUNTIME_CONFIG: Final = """\
# bench_soak.py: serve mode with the dev egress preset (the echo server is on loopback, which
# the serve preset refuses) and no metrics endpoint.
[egress]
preset = "dev"

[server]
metrics = false
"""
_READY_PORT: Final = re.compile(r"PORT (\d+)")


# -- the load (child process, --role soak) ---------------------------------------------------


@dataclass
class RouteCount:
    requests: int = 0
    errors: int = 0
    latencies_ns: list[int] = field(default_factory=list)


class _Client(asyncio.Protocol):
    """One connection; httptools parses the responses."""

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[tuple[int, bytes]] | None = None
        self.body = bytearray()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except Exception as exc:  # a malformed response is an error of that request
            self._fail(exc)

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result((self.parser.get_status_code(), bytes(self.body)))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(exc or ConnectionResetError("the server closed the connection"))
        if not self.lost.done():
            self.lost.set_result(None)

    def _fail(self, exc: BaseException) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc)


async def _soak_main(spec: Mapping[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    port, duration, warmup = int(spec["port"]), float(spec["duration"]), float(spec["warmup"])
    connections = int(spec["connections"])
    counts = {route: RouteCount() for route in ROUTES}
    recording = False
    stop = False
    failures: dict[str, int] = {}

    async def drive(route: str, churn: bool) -> None:
        expected = ROUTES[route]
        close = b"Connection: close\r\n" if churn else b""
        request = f"GET {route} HTTP/1.1\r\nHost: {HOST}:{port}\r\n".encode() + close + b"\r\n"
        client: _Client | None = None
        count = counts[route]
        while not stop:
            started = time.perf_counter_ns()
            try:
                if client is None or client.transport is None or client.transport.is_closing():
                    _, client = await loop.create_connection(_Client, HOST, port)
                client.body.clear()
                client.done = loop.create_future()
                assert client.transport is not None
                client.transport.write(request)
                status, body = await asyncio.wait_for(client.done, 30)
                ok = status == 200 and body == expected
                if not ok:
                    key = f"{status} {body[:40]!r}"
                    failures[key] = failures.get(key, 0) + 1
            except (OSError, TimeoutError) as exc:
                ok = False
                key = type(exc).__name__
                failures[key] = failures.get(key, 0) + 1
                client = None
            if recording:
                count.requests += 1
                count.latencies_ns.append(time.perf_counter_ns() - started)
                if not ok:
                    count.errors += 1
            if churn and client is not None:
                # The server closes (Connection: close); then a new connection.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(client.lost), 30)
                if client.transport is not None:
                    client.transport.close()
                client = None
        if client is not None and client.transport is not None:
            client.transport.close()

    routes = list(ROUTES)
    tasks = []
    for index in range(connections):
        route = routes[index % len(routes)]
        churn = (index // len(routes)) % 4 == 3  # one client in four per route
        tasks.append(asyncio.ensure_future(drive(route, churn)))
    await asyncio.sleep(warmup)
    failures.clear()
    print("START", flush=True)  # the parent samples the server now
    recording = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    recording = False
    wall = time.perf_counter() - started
    print("STOP", flush=True)
    stop = True
    await asyncio.wait(tasks, timeout=35)
    result: dict[str, Any] = {"wall": wall, "failures": failures, "routes": {}}
    for route, count in counts.items():
        latencies = sorted(count.latencies_ns)
        result["routes"][route] = {
            "requests": count.requests,
            "errors": count.errors,
            "p50_ms": percentile(latencies, 50) / 1e6 if latencies else 0.0,
            "p99_ms": percentile(latencies, 99) / 1e6 if latencies else 0.0,
        }
    return result


# -- the server process, seen from outside ---------------------------------------------------


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else float("nan")


def fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass
class Probe:
    rss_mib: float
    fds: int

    @classmethod
    def of(cls, pid: int) -> Probe:
        return cls(rss_mib(pid), fds(pid))


@dataclass
class Soak:
    server: str
    result: dict[str, Any]
    idle: Probe
    start: Probe
    end: Probe
    settled: Probe
    during: list[Probe]


def wait_until_serving(port: int) -> None:
    """Until one request on each route was answered (the startup line comes before the loop
    and the worker are ready), on connections that are closed again."""
    deadline = time.monotonic() + 30
    for route in ROUTES:
        while True:
            try:
                with socket.create_connection((HOST, port), timeout=5) as sock:
                    head = f"GET {route} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
                    sock.sendall(head.encode())
                    answer = b""
                    while chunk := sock.recv(65536):
                        answer += chunk
                if answer.startswith(b"HTTP/1.1 200"):
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{route} on port {port} did not answer 200 within 30 s")
            time.sleep(0.1)
    time.sleep(0.5)  # the server closes its side of those connections


def soak(name: str, server: _Process, config: Config) -> Soak:
    spec = {
        "port": port_of(server),
        "duration": config.duration,
        "warmup": config.warmup,
        "connections": config.connections,
    }
    wait_until_serving(port_of(server))
    idle = Probe.of(server.pid)  # before any load: the baseline the end is compared with
    proc = subprocess.Popen(
        [sys.executable, "-u", str(Path(__file__).resolve()), "--role", "soak", json.dumps(spec)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    during: list[Probe] = []
    start = end = None
    result: dict[str, Any] = {}
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.put(raw.decode().strip())
        lines.put("")  # EOF

    threading.Thread(target=read, daemon=True).start()
    try:
        line = lines.get(timeout=60)
        if line != "START":
            raise RuntimeError(f"the load generator did not start: {line!r}")
        start = Probe.of(server.pid)
        progress(f"{name}: load for {config.duration:g} s; start {start}")
        next_sample = time.monotonic() + config.sample
        # Sample while the load runs; the loader prints STOP, then its JSON result.
        while True:
            try:
                line = lines.get(timeout=max(0.0, next_sample - time.monotonic()))
            except queue.Empty:
                if end is None:
                    during.append(Probe.of(server.pid))
                next_sample += config.sample
                continue
            if line == "STOP":
                end = Probe.of(server.pid)
            elif line.startswith("{"):
                result = json.loads(line)
                break
            elif not line:
                break
        if proc.wait(timeout=60) != 0 or not result:
            raise RuntimeError(f"the load generator failed against {name}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert start is not None
    assert end is not None
    time.sleep(config.settle)
    settled = Probe.of(server.pid)
    progress(f"{name}: end {end}, after {config.settle:g} s {settled}")
    return Soak(name, result, idle, start, end, settled, during)


# -- the run ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    duration: float
    warmup: float
    connections: int
    sample: float
    settle: float


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(
        description="A steady minute of /hello and /echo against the runtime and a bare "
        "uvicorn app: errors, RSS and open fds at the start and the end."
    )
    parser.add_argument("--duration", type=float, help="seconds of load per server (60)")
    parser.add_argument("--connections", type=int, help="concurrent clients (32)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 10 s per server")
    args = parser.parse_args(argv)
    return Config(
        duration=args.duration or (10.0 if args.quick else 60.0),
        warmup=2.0,
        connections=args.connections or 32,
        sample=5.0,
        settle=3.0,
    )


def table(runs: list[Soak]) -> str:
    bare = next((r for r in runs if r.server == "bare"), None)
    rows = []
    for run in runs:
        wall = run.result["wall"]
        for route, figures in run.result["routes"].items():
            rps = figures["requests"] / wall
            ratio = ""
            if bare is not None and run is not bare:
                base = bare.result["routes"][route]["requests"] / bare.result["wall"]
                ratio = f"{rps / base:.2f}" if base else ""
            rows.append(
                [
                    run.server,
                    route,
                    f"{figures['requests']:,}",
                    f"{rps:,.0f}",
                    ratio,
                    str(figures["errors"]),
                    f"{figures['p50_ms']:.2f}",
                    f"{figures['p99_ms']:.2f}",
                ]
            )
    requests = format_table(
        ["server", "route", "requests", "req/s", "ratio", "errors", "p50 ms", "p99 ms"], rows
    )
    rows = []
    for run in runs:
        rss = [p.rss_mib for p in run.during] or [run.start.rss_mib]
        fd = [p.fds for p in run.during] or [run.start.fds]
        rows.append(
            [
                run.server,
                f"{run.start.rss_mib:.1f}",
                f"{min(rss):.1f}-{max(rss):.1f}",
                f"{run.end.rss_mib:.1f}",
                f"{run.end.rss_mib - run.start.rss_mib:+.1f}",
                str(run.idle.fds),
                str(run.start.fds),
                f"{min(fd)}-{max(fd)}",
                str(run.end.fds),
                str(run.settled.fds),
            ]
        )
    resources = format_table(
        [
            "server",
            "RSS start MiB",
            "during",
            "end",
            "delta",
            "fds idle",
            "start",
            "during",
            "end",
            "settled",
        ],
        rows,
    )
    return requests + "\n\n" + resources


def main(argv: Sequence[str]) -> int:
    config = parse_args(argv)
    load_before = load_average()
    runs: list[Soak] = []
    started: list[_Process] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench_soak-") as tmp:
            config_path = Path(tmp) / "tcpworkers.toml"
            config_path.write_text(RUNTIME_CONFIG)
            peer = _Process(
                _bench_http_role("peer"), ready=re.compile(r"PORTS (\d+) (\d+)"), name="peer"
            )
            started.append(peer)
            echo_port, blast_port = peer.match.group(1), peer.match.group(2)
            bare = _Process(
                _bench_http_role("bare", "--echo-port", echo_port, "--blast-port", blast_port),
                ready=_READY_PORT,
                name="bare",
            )
            started.append(bare)
            runtime = _Process(
                serve_argv(config_path, ECHO_PORT=echo_port, BLAST_PORT=blast_port),
                ready=_SERVING_RE,
                ready_on_stderr=True,
                name="runtime",
            )
            started.append(runtime)
            progress(f"servers up; {config.connections} clients each, {config.duration:g} s")
            # Both at once: whatever else the machine does then, both servers share it.
            with concurrent.futures.ThreadPoolExecutor(2) as pool:
                both = [
                    pool.submit(soak, name, server, config)
                    for name, server in (("bare", bare), ("runtime", runtime))
                ]
                runs.extend(future.result() for future in both)
    except KeyboardInterrupt:
        progress("interrupted")
        return 130
    finally:
        for process in reversed(started):
            process.stop()
    report: dict[str, Any] = {
        "benchmark": "bench_soak",
        "environment": environment("uvloop"),
        "load_average_1min": {"before": load_before, "after": load_average()},
        "config": asdict(config),
        "runs": [asdict(run) for run in runs],
    }
    path = write_json("bench_soak", report)
    print(
        f"\ntcpworkers bench_soak: {config.duration:g} s, both servers at once, "
        f"{config.connections} clients each (half /hello, half /echo?size=64; one in four "
        "reconnects per request); ratio = runtime req/s / bare req/s\n"
    )
    print(table(runs))
    for run in runs:
        if run.result["failures"]:
            print(f"\n{run.server}: failures: {run.result['failures']}")
    print(
        f"\n1-minute load average: {load_before:.2f} before, "
        f"{report['load_average_1min']['after']:.2f} after. JSON: {path}"
    )
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--role"]:
        import uvloop

        print(json.dumps(uvloop.run(_soak_main(json.loads(sys.argv[3])))), flush=True)
        sys.exit(0)
    sys.exit(main(sys.argv[1:]))
