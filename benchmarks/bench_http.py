"""What serving a worker through the runtime costs, against a bare ASGI app doing the same.

A measurement, not a test: it prints a table and writes JSON, and exits 0 whatever the numbers.

Servers (each a separate process, uvicorn with httptools on uvloop, one process, started once
and reused by every round):

1. ``bare``: a plain ASGI application (in this file) serving the three routes of
   ``examples/bench_worker.py`` with raw asyncio: ``asyncio.open_connection`` for the echo and
   the blast, the blast copied to the client with ``reader.read()`` + ``send``. The floor.
2. ``runtime``: ``tcpworkers serve examples/bench_worker.py``: what users run. The gated event
   loop, ``WorkerApp`` (a request scope per request, Request/Response objects), ``connect()``
   sockets, and the JSON access log line per request (written to /dev/null). Egress preset
   ``dev`` (loopback allowed), metrics off.
3. ``runtime, no log``: the same ``WorkerApp`` on the same uvicorn configuration, built in a
   process of this file with no request observers: the runtime's own cost without the access
   log, so the two runtime rows show what the log line costs.

Workloads (the routes of the bench worker): ``/hello`` and ``/echo?size=64`` (a new connection
to the echo server per request: connect, write 64 bytes, read them back, close) at concurrency
1 and 32, and ``/blast?mib=256`` (one request streams 256 MiB from the blast server through the
worker to the client, ``Response(sock.readable)``), one connection.

Processes. The echo and blast servers run in one more process (``--role peer``, uvloop, ports
chosen by the OS and passed to the servers). The load generator is a separate process per
measurement (``--role loadgen``): uvloop, raw sockets, keep-alive connections, httptools to
parse responses; after a warm-up it measures for ``--duration`` seconds and reports requests,
body bytes, latency percentiles and its own CPU time, so a load generator near 100 % CPU (the
bottleneck, not the server) is visible in the table. Server and peer CPU time are read from
``/proc/<pid>/stat`` around the measured window.

Pinning (Linux, 2+ CPUs; ``--no-pin`` to disable): the server under test on the last CPU, the
load generator and the peer on the others, so the server's CPU is its own and every variant gets
the same placement.

Interleaving. The machine may be small and busy, so for every workload the variants run back
to back, in alternating order from one round to the next (A B C, then C B A); figures are
medians over rounds, and each ratio is computed per round against the bare run next to it
before taking the median.

Figures: **req/s** (or **MB/s** for the blast: body bytes per second at the client, 10^6),
**p50/p99 ms** request latency at the client, **srv CPU** the server's CPU time per request (µs)
or per GB (s), **srv%**/**load%**/**peer%** CPU use over the window (100 % = one CPU), **cost**
the median over rounds of (bare throughput / variant throughput - 1): how much more time per
request the variant needs, and **spread** its lowest and highest per-round values. Target from
the issue: the runtime costs at most **15 %** over the bare app (PASS/MISS is informational and
judged on the ``runtime`` row).

Run: ``.venv/bin/python benchmarks/bench_http.py [--quick] [--rounds N] [--duration S]
[--blast-mib N] [--no-pin]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Final, Literal, cast
from urllib.parse import parse_qs

from _common import (
    CpuPlan,
    Usage,
    cpu_plan,
    environment,
    format_table,
    load_average,
    median,
    percentile,
    pin_to,
    positive_int,
    progress,
    write_json,
)

HOST: Final = "127.0.0.1"
ROOT: Final = Path(__file__).resolve().parent.parent
WORKER: Final = ROOT / "examples" / "bench_worker.py"
MIB: Final = 1024 * 1024
# The bench worker's echo piece size (examples/bench_worker.py PIECE): the bare app mirrors it.
ECHO_PIECE: Final = 64 * 1024
BLAST_BLOCK: Final = 1 << 20
BUSY_LOAD: Final = 0.7
START_TIMEOUT: Final = 30.0
TARGET_COST: Final = 0.15  # the runtime may cost at most 15 % over the bare app

BARE: Final = "bare"
RUNTIME: Final = "runtime"
RUNTIME_NO_LOG: Final = "runtime, no log"
VARIANTS: Final = (BARE, RUNTIME, RUNTIME_NO_LOG)
# tcpworkers serve's startup line, text or JSON (see tests/runtime/cli_harness.py).
_SERVING_RE: Final = re.compile(r"tcpworkers serve: serving \S+ on http://127\.0\.0\.1:(\d+) \(")
_CLK_TCK: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    path: str
    concurrency: int
    blast: bool = False


def workloads(echo_size: int, blast_mib: int) -> list[Workload]:
    return [
        Workload("/hello c=1", "/hello", 1),
        Workload("/hello c=32", "/hello", 32),
        Workload(f"/echo?size={echo_size} c=1", f"/echo?size={echo_size}", 1),
        Workload(f"/echo?size={echo_size} c=32", f"/echo?size={echo_size}", 32),
        Workload(f"/blast?mib={blast_mib}", f"/blast?mib={blast_mib}", 1, blast=True),
    ]


# -- the bare ASGI application (server process, --role bare) ---------------------------------

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


def bare_app(echo_port: int, blast_port: int) -> Callable[..., Any]:
    """The bench worker's routes as a plain ASGI app on raw asyncio (the baseline)."""

    async def text(send: Callable[[Message], Any], status: int, body: bytes) -> None:
        # The same headers the runtime sends for Response(str): content type and length.
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Scope, receive: Callable[[], Any], send: Callable[[Message], Any]) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        query = parse_qs(scope["query_string"].decode())
        if path == "/hello":
            await text(send, 200, b"hello, world")
        elif path == "/echo":
            size = int(query["size"][0])
            reader, writer = await asyncio.open_connection(HOST, echo_port)
            received = 0
            while received < size:
                piece = min(ECHO_PIECE, size - received)
                writer.write(bytes(piece))
                await writer.drain()
                received += len(await reader.readexactly(piece))
            writer.close()
            await writer.wait_closed()
            await text(send, 200, str(received).encode())
        elif path == "/blast":
            mib = int(query["mib"][0])
            reader, writer = await asyncio.open_connection(HOST, blast_port)
            try:
                writer.write(f"{mib}\n".encode())
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"content-type", b"application/octet-stream")],
                    }
                )
                while chunk := await reader.read(256 * 1024):
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b""})
            finally:
                writer.close()
        else:
            await text(send, 404, b"not found")

    return app


def _serve_role(role: str, echo_port: int, blast_port: int) -> None:
    """Serve ``bare`` or ``runtime-core`` with uvicorn on an OS-chosen port; print it."""
    import uvicorn

    if role == "bare":
        app: Any = bare_app(echo_port, blast_port)
        loop = "uvloop"
        lifespan: Literal["on", "off"] = "off"
    else:
        from tcpworkers.egress import EgressPolicy
        from tcpworkers.runtime import RuntimeSettings, WorkerApp, load_worker

        settings = RuntimeSettings(
            mode="serve",
            policy=EgressPolicy.dev(),
            vars={"ECHO_PORT": echo_port, "BLAST_PORT": blast_port},
            metrics_path=None,
        )
        app = WorkerApp(load_worker(str(WORKER)), settings)
        loop = "tcpworkers.drivers:new_gated_loop"
        lifespan = "on"  # as tcpworkers serve runs it
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(2048)
    config = uvicorn.Config(
        app,
        loop=loop,
        http="httptools",
        lifespan=lifespan,
        access_log=False,
        log_level="warning",
        interface="asgi3",
    )
    server = uvicorn.Server(config)
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    server.run(sockets=[sock])


# -- the echo and blast servers (peer process, --role peer) ----------------------------------


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving from it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close


async def _blast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Read ``N\\n``, send N MiB as fast as the client takes them, then close."""
    block = memoryview(bytes(BLAST_BLOCK))
    try:
        remaining = int(await reader.readline()) * MIB
        while remaining > 0:
            writer.write(block[: min(remaining, BLAST_BLOCK)])
            remaining -= BLAST_BLOCK
            await writer.drain()
    except (ConnectionError, ValueError):
        pass
    finally:
        writer.close()


async def _peer_main() -> None:
    loop = asyncio.get_running_loop()
    echo = await loop.create_server(_Echo, HOST, 0, backlog=1024)
    blast = await asyncio.start_server(_blast, HOST, 0, backlog=1024)
    echo_port = echo.sockets[0].getsockname()[1]
    blast_port = blast.sockets[0].getsockname()[1]
    print(f"PORTS {echo_port} {blast_port}", flush=True)
    # Exit when the benchmark closes our stdin (or dies).
    await loop.run_in_executor(None, sys.stdin.buffer.read)


# -- the load generator (--role loadgen) -----------------------------------------------------


class _Client(asyncio.Protocol):
    """One keep-alive connection; httptools parses the responses."""

    def __init__(self) -> None:
        import httptools

        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.done: asyncio.Future[int] | None = None
        self.body_bytes = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # see _Echo

    def data_received(self, data: bytes) -> None:
        self.parser.feed_data(data)

    def on_body(self, body: bytes) -> None:
        self.body_bytes += len(body)

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(self.parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_exception(exc or ConnectionResetError("the server closed"))


async def _loadgen_main(spec: Mapping[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    port, path = int(spec["port"]), str(spec["path"])
    concurrency, duration, warmup = int(spec["concurrency"]), spec["duration"], spec["warmup"]
    request = f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode()
    clients: list[_Client] = []
    for _ in range(concurrency):
        _, client = await loop.create_connection(_Client, HOST, port)
        clients.append(client)
    recording = False
    stop = False
    latencies: list[int] = []
    errors = 0

    async def drive(client: _Client) -> None:
        nonlocal errors
        assert client.transport is not None
        while not stop:
            client.done = loop.create_future()
            started = time.perf_counter_ns()
            client.transport.write(request)
            status = await client.done
            if recording:
                latencies.append(time.perf_counter_ns() - started)
                if status != 200:
                    errors += 1

    tasks = [asyncio.ensure_future(drive(c)) for c in clients]
    await asyncio.sleep(warmup)
    print("START", flush=True)  # the parent reads the servers' CPU time now
    body_before = sum(c.body_bytes for c in clients)
    usage_before = Usage.now()
    started = time.perf_counter()
    recording = True
    await asyncio.sleep(duration)
    recording = False
    wall = time.perf_counter() - started
    usage = Usage.now() - usage_before
    body = sum(c.body_bytes for c in clients) - body_before
    requests = len(latencies)
    print("STOP", flush=True)
    stop = True
    done, pending = await asyncio.wait(tasks, timeout=30)
    for task in done:
        task.result()  # a failed connection fails the measurement
    if pending:
        raise RuntimeError(f"{len(pending)} requests did not finish within 30 s")
    for client in clients:
        if client.transport is not None:
            client.transport.close()
    latencies.sort()
    return {
        "requests": requests,
        "wall": wall,
        "body_bytes": body,
        "errors": errors,
        "cpu": usage.cpu,
        "p50_ms": percentile(latencies, 50) / 1e6 if latencies else 0.0,
        "p99_ms": percentile(latencies, 99) / 1e6 if latencies else 0.0,
    }


# -- processes (parent side) -----------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads), from /proc."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


class _Process:
    """A child process that reports a ready line on stdout (or stderr); ended on exit."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        ready: re.Pattern[str],
        ready_on_stderr: bool = False,
        cpus: frozenset[int] = frozenset(),
        name: str,
    ) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL if ready_on_stderr else subprocess.PIPE,
            stderr=subprocess.PIPE if ready_on_stderr else None,
            start_new_session=True,
            cwd=ROOT,
        )
        if cpus and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(self.proc.pid, cpus)
        stream = self.proc.stderr if ready_on_stderr else self.proc.stdout
        assert stream is not None
        self.match = self._wait_ready(stream, ready)
        # Keep draining the stream so a chatty child never blocks on a full pipe.
        threading.Thread(target=_drain, args=(stream,), daemon=True).start()

    def _wait_ready(self, stream: IO[bytes], ready: re.Pattern[str]) -> re.Match[str]:
        deadline = time.monotonic() + START_TIMEOUT
        seen: list[str] = []
        while time.monotonic() < deadline:
            line = stream.readline().decode(errors="replace")
            if not line:
                break
            seen.append(line)
            found = ready.search(line)
            if found:
                return found
        self.stop()
        raise RuntimeError(
            f"{self.name} did not start (exit code {self.proc.poll()}):\n" + "".join(seen[-20:])
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        proc = self.proc
        if proc.poll() is not None:
            return
        with contextlib.suppress(OSError):
            if proc.stdin is not None:
                proc.stdin.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _drain(stream: IO[bytes]) -> None:
    with contextlib.suppress(OSError, ValueError):
        while stream.read(65536):
            pass


def _this(role: str, *args: str) -> list[str]:
    return [sys.executable, "-u", str(Path(__file__).resolve()), "--role", role, *args]


def serve_argv(config_path: Path, **variables: str) -> list[str]:
    """``tcpworkers serve`` of WORKER on HOST, port 0, with ``--var NAME=value`` per keyword."""
    argv = [sys.executable, "-m", "tcpworkers.cli", "serve", str(WORKER)]
    argv += ["--config", str(config_path), "--host", HOST, "--port", "0"]
    for name, value in variables.items():
        argv += ["--var", f"{name}={value}"]
    return argv


def run_loadgen(
    spec: Mapping[str, Any],
    cpus: CpuPlan,
    mark: Callable[[], Mapping[str, float]],
    *,
    timeout: float,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run the ``loadgen`` role on ``spec`` (pinned to ``cpus.peers``) and return its result.

    At its ``START`` and ``STOP`` lines, every ``key: value`` of ``mark()`` is recorded as
    ``key_START`` / ``key_STOP`` in the returned marks.
    """
    proc = subprocess.Popen(
        _this("loadgen", json.dumps(spec)), stdout=subprocess.PIPE, start_new_session=True
    )
    marks: dict[str, float] = {}
    result: dict[str, Any] = {}
    try:
        if cpus.peers and hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(proc.pid, cpus.peers)
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode().strip()
            if line in ("START", "STOP"):
                for key, value in mark().items():
                    marks[f"{key}_{line}"] = value
            elif line.startswith("{"):
                result = json.loads(line)
        if proc.wait(timeout=timeout) != 0 or not result or not result["requests"]:
            raise RuntimeError(f"the load generator failed on {spec['path']}: {result}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return result, marks


@contextlib.contextmanager
def servers(cpus: CpuPlan, config_path: Path) -> Iterator[dict[str, _Process | int]]:
    """The peer process and the three servers, started once, stopped on exit."""
    started: list[_Process] = []
    try:
        peer = _Process(
            _this("peer"), ready=re.compile(r"PORTS (\d+) (\d+)"), cpus=cpus.peers, name="peer"
        )
        started.append(peer)
        echo_port, blast_port = peer.match.group(1), peer.match.group(2)
        ports = ["--echo-port", echo_port, "--blast-port", blast_port]
        bare = _Process(
            _this("bare", *ports), ready=re.compile(r"PORT (\d+)"), cpus=cpus.measured, name=BARE
        )
        started.append(bare)
        core = _Process(
            _this("runtime-core", *ports),
            ready=re.compile(r"PORT (\d+)"),
            cpus=cpus.measured,
            name=RUNTIME_NO_LOG,
        )
        started.append(core)
        cli = _Process(
            serve_argv(config_path, ECHO_PORT=echo_port, BLAST_PORT=blast_port),
            ready=_SERVING_RE,
            ready_on_stderr=True,
            cpus=cpus.measured,
            name=RUNTIME,
        )
        started.append(cli)
        yield {"peer": peer, BARE: bare, RUNTIME: cli, RUNTIME_NO_LOG: core}
    finally:
        for process in reversed(started):
            process.stop()


def port_of(process: _Process) -> int:
    return int(process.match.group(1))


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Sample:
    """One variant on one workload in one round."""

    requests: int
    wall: float
    body_bytes: int
    errors: int
    p50_ms: float
    p99_ms: float
    loadgen_cpu: float
    server_cpu: float
    peer_cpu: float

    @property
    def rps(self) -> float:
        return self.requests / self.wall

    @property
    def mbps(self) -> float:
        return self.body_bytes / self.wall / 1e6


def measure(
    workload: Workload,
    server: _Process,
    peer: _Process,
    cpus: CpuPlan,
    duration: float,
    warmup: float,
) -> Sample:
    spec = {
        "port": port_of(server),
        "path": workload.path,
        "concurrency": workload.concurrency,
        "duration": duration,
        "warmup": warmup,
    }
    result, lines = run_loadgen(
        spec,
        cpus,
        lambda: {"server": _cpu_seconds(server.pid), "peer": _cpu_seconds(peer.pid)},
        timeout=60,
    )
    return Sample(
        requests=result["requests"],
        wall=result["wall"],
        body_bytes=result["body_bytes"],
        errors=result["errors"],
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        loadgen_cpu=result["cpu"],
        server_cpu=lines["server_STOP"] - lines["server_START"],
        peer_cpu=lines["peer_STOP"] - lines["peer_START"],
    )


@dataclass
class Results:
    samples: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)


def run_all(config: Config, procs: Mapping[str, Any], cpus: CpuPlan) -> Results:
    results = Results()
    chosen = workloads(config.echo_size, config.blast_mib)
    peer = procs["peer"]
    for workload in chosen:  # warm every server up on every route (imports, caches)
        for variant in VARIANTS:
            measure(workload, procs[variant], peer, cpus, duration=0.3, warmup=0.2)
    for round_index in range(config.rounds):
        order = VARIANTS if round_index % 2 == 0 else tuple(reversed(VARIANTS))
        for workload in chosen:
            for variant in order:
                sample = measure(
                    workload, procs[variant], peer, cpus, config.duration, config.warmup
                )
                results.samples.setdefault(workload.name, {}).setdefault(variant, []).append(sample)
                progress(
                    f"round {round_index + 1}/{config.rounds} {workload.name:<22} "
                    f"{variant:<16} "
                    + (f"{sample.mbps:9.1f} MB/s" if workload.blast else f"{sample.rps:9.0f} req/s")
                )
    return results


# -- summary ---------------------------------------------------------------------------------


def summarize(results: Results, blast_names: set[str]) -> dict[str, dict[str, dict[str, Any]]]:
    summary: dict[str, dict[str, dict[str, Any]]] = {}
    for workload, by_variant in results.samples.items():
        blast = workload in blast_names
        base = by_variant[BARE]
        summary[workload] = {}
        for variant, samples in by_variant.items():
            throughput = [s.mbps if blast else s.rps for s in samples]
            base_throughput = [s.mbps if blast else s.rps for s in base]
            costs = [b / t - 1 for b, t in zip(base_throughput, throughput, strict=True)]
            per_unit = [
                s.server_cpu / (s.body_bytes / 1e9) if blast else s.server_cpu / s.requests * 1e6
                for s in samples
            ]
            base_unit = [
                s.server_cpu / (s.body_bytes / 1e9) if blast else s.server_cpu / s.requests * 1e6
                for s in base
            ]
            summary[workload][variant] = {
                "throughput": median(throughput),
                "unit": "MB/s" if blast else "req/s",
                "p50_ms": median([s.p50_ms for s in samples]),
                "p99_ms": median([s.p99_ms for s in samples]),
                "server_cpu_per_unit": median(per_unit),
                "server_cpu_unit": "s/GB" if blast else "us/req",
                "server_cpu_vs_bare": median(
                    [u / b for u, b in zip(per_unit, base_unit, strict=True)]
                ),
                "server_cpu_pct": median([100 * s.server_cpu / s.wall for s in samples]),
                "loadgen_cpu_pct": median([100 * s.loadgen_cpu / s.wall for s in samples]),
                "peer_cpu_pct": median([100 * s.peer_cpu / s.wall for s in samples]),
                "cost": median(costs),
                "cost_spread": [min(costs), max(costs)],
                "errors": sum(s.errors for s in samples),
            }
    return summary


def table(summary: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    headers = [
        "workload",
        "variant",
        "req/s | MB/s",
        "p50 ms",
        "p99 ms",
        "srv CPU",
        "vs bare",
        "srv%",
        "load%",
        "peer%",
        "cost",
        "spread",
        "target",
    ]
    rows: list[list[str]] = []
    for workload, by_variant in summary.items():
        for variant in VARIANTS:
            s = by_variant.get(variant)
            if s is None:
                continue
            blast = s["unit"] == "MB/s"
            base = variant == BARE
            cost = s["cost"]
            target = ""
            if variant == RUNTIME:
                target = "PASS" if cost <= TARGET_COST else "MISS"
            low, high = s["cost_spread"]
            rows.append(
                [
                    workload if base else "",
                    variant,
                    f"{s['throughput']:,.1f}" if blast else f"{s['throughput']:,.0f}",
                    "" if blast else f"{s['p50_ms']:.3f}",
                    "" if blast else f"{s['p99_ms']:.3f}",
                    f"{s['server_cpu_per_unit']:.2f} s/GB"
                    if blast
                    else f"{s['server_cpu_per_unit']:.0f} us",
                    "" if base else f"{s['server_cpu_vs_bare']:.2f}x",
                    f"{s['server_cpu_pct']:.0f}",
                    f"{s['loadgen_cpu_pct']:.0f}",
                    f"{s['peer_cpu_pct']:.0f}",
                    "" if base else f"{cost:+.1%}",
                    "" if base else f"{low:+.0%}..{high:+.0%}",
                    target,
                ]
            )
    return format_table(headers, rows)


# -- command line ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    rounds: int
    duration: float
    warmup: float
    echo_size: int
    blast_mib: int
    pin: bool
    quick: bool


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(
        description="The runtime (tcpworkers serve + examples/bench_worker.py) against a bare "
        "ASGI app on uvicorn: req/s for /hello and /echo at c=1 and c=32, blast MB/s.",
    )
    parser.add_argument("--rounds", type=positive_int, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--duration", type=float, help="measured seconds per variant per workload (default 3)"
    )
    parser.add_argument(
        "--blast-mib", type=positive_int, help="MiB per blast request (default 256)"
    )
    parser.add_argument("--echo-size", type=positive_int, help="bytes per echo (default 64)")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: 2 rounds of 1 s, 64 MiB blasts"
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the server on its own CPU, load generator and peer on the others (default: on)",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    return Config(
        rounds=args.rounds or (2 if quick else 3),
        duration=args.duration or (1.0 if quick else 3.0),
        warmup=0.3 if quick else 0.5,
        echo_size=args.echo_size or 64,
        blast_mib=args.blast_mib or (64 if quick else 256),
        pin=bool(args.pin),
        quick=quick,
    )


RUNTIME_CONFIG: Final = """\
# bench_http.py: serve mode with the dev egress preset (the echo and blast servers are on
# loopback, which the serve preset refuses) and no metrics endpoint.
[egress]
preset = "dev"

[server]
metrics = false
"""


def main(argv: Sequence[str]) -> int:
    config = parse_args(argv)
    load_before = load_average()
    if load_before > BUSY_LOAD:
        progress(
            f"note: the machine is busy (1-minute load average {load_before:.2f}); "
            "expect noisier figures, compare ratios rather than absolute numbers"
        )
    cpus = cpu_plan(config.pin)
    pin_to(cpus.peers)  # this process only waits; keep it off the server's CPU
    blast_names = {w.name for w in workloads(config.echo_size, config.blast_mib) if w.blast}
    progress(
        f"rounds={config.rounds} duration={config.duration}s per run, "
        f"blast {config.blast_mib} MiB; starting the servers"
    )
    try:
        with tempfile.TemporaryDirectory(prefix="bench_http-") as tmp:
            config_path = Path(tmp) / "tcpworkers.toml"
            config_path.write_text(RUNTIME_CONFIG)
            with servers(cpus, config_path) as procs:
                results = run_all(config, procs, cpus)
    except KeyboardInterrupt:
        progress("interrupted; the servers stopped")
        return 130
    summary = summarize(results, blast_names)
    report: dict[str, Any] = {
        "benchmark": "bench_http",
        "environment": environment("uvloop"),
        "load_average_1min": {"before": load_before, "after": load_average()},
        "cpus": {"server": sorted(cpus.measured), "loadgen_and_peer": sorted(cpus.peers)},
        "config": asdict(config),
        "target_cost": TARGET_COST,
        "summary": summary,
        "rounds": {
            workload: {variant: [asdict(s) for s in samples] for variant, samples in v.items()}
            for workload, v in results.samples.items()
        },
    }
    path = write_json("bench_http", report)
    env = report["environment"]
    pinned = (
        f"server on CPU {','.join(map(str, cpus.measured))}, load generator and peer on "
        f"{','.join(map(str, cpus.peers))}"
        if cpus.measured
        else "not pinned"
    )
    print(
        f"\ntcpworkers bench_http: uvicorn + httptools on uvloop {env['loop_version']}, Python "
        f"{env['python']}, {env['cpu_count']} CPUs; {pinned}"
    )
    print(
        f"medians of {config.rounds} interleaved rounds x {config.duration:g} s per variant "
        "per workload; srv CPU per request (µs) or per GB (s); cost = bare throughput / "
        "variant throughput - 1\n"
    )
    print(table(summary))
    errors = sum(v["errors"] for w in summary.values() for v in w.values())
    if errors:
        print(f"\nwarning: {errors} responses were not 200 OK")
    print(
        f"\ntarget: the runtime costs at most {TARGET_COST:.0%} over the bare app (judged on "
        "the runtime row, which includes the access log). 1-minute load average: "
        f"{load_before:.2f} before, {report['load_average_1min']['after']:.2f} after"
    )
    print(f"PASS/MISS is informational. JSON: {path}")
    return 0


def _role_main(argv: Sequence[str]) -> int:
    """Entry point of the child processes (``--role ...``)."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--role", required=True)
    parser.add_argument("--echo-port", type=int, default=0)
    parser.add_argument("--blast-port", type=int, default=0)
    parser.add_argument("spec", nargs="?")
    args = parser.parse_args(argv)
    if args.role == "peer":
        import uvloop

        with contextlib.suppress(KeyboardInterrupt):
            uvloop.run(_peer_main())
        return 0
    if args.role in ("bare", "runtime-core"):
        _serve_role(args.role, args.echo_port, args.blast_port)
        return 0
    if args.role == "loadgen":
        import uvloop

        result = uvloop.run(_loadgen_main(json.loads(args.spec)))
        print(json.dumps(result), flush=True)
        return 0
    raise SystemExit(f"unknown role {args.role!r}")


if __name__ == "__main__":
    if "--role" in sys.argv[1:]:
        sys.exit(_role_main(sys.argv[1:]))
    sys.exit(main(sys.argv[1:]))
