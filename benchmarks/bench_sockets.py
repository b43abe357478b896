"""tcpworkers sockets against raw asyncio protocols: bulk-read CPU cost and echo round trips.

A measurement, not a test: it prints a table and writes JSON, and exits 0 whatever the numbers.

1. Bulk read. A sender in a separate process sends N bytes per connection as fast as it can;
   this process reads them all. What matters is the receiver's **CPU time per byte** (user +
   system time of this process only, from ``getrusage(RUSAGE_SELF)``; the sender's CPU is in
   another process and never counted). Throughput is reported too, but on loopback it is often
   capped by the sender, so CPU per byte is the figure the target applies to. Variants:
   ``read()`` (64 KiB at most per call), ``read(1 MiB)``, ``async for``, and two baselines: a
   raw ``asyncio.Protocol`` counting bytes in ``data_received`` (what ``Socket`` is built on:
   the fair baseline) and a raw ``BufferedProtocol`` receiving into one preallocated buffer (no
   allocation per chunk: the floor).
2. Echo RTT. One kept connection per variant to an echo server in a separate process; a 64-byte
   write, then exactly 64 bytes read back, timed one by one. ``Socket`` (``write`` +
   ``readexactly``) against a raw ``asyncio.Protocol`` client resolving a future once 64 bytes
   have arrived. Within a round the two alternate every 1,000 round trips.

The machine may be small and noisy, so the variants run interleaved in the same run (A, B, A,
B ...; the order reverses every round to cancel drift), medians are reported, and ratios are
the median of the per-round ratios (each variant compared with the baseline run next to it;
the min-max of those per-round ratios is shown as the spread). For echo, the pairs compared are
the 1,000-round-trip blocks that ran back to back.

Run: ``.venv/bin/python benchmarks/bench_sockets.py [--loop asyncio] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final, cast

from _common import (
    BULK_HEADER,
    LoopName,
    PeerProcess,
    Usage,
    cpu_plan,
    environment,
    format_table,
    load_average,
    loop_factory,
    median,
    percentile,
    pin_to,
    positive_int,
    progress,
    write_json,
)
from tcpworkers import Socket, connect

HOST: Final = "127.0.0.1"
MIB: Final = 1 << 20
GB: Final = 1e9
MESSAGE_SIZE: Final = 64
BUFFERED_PROTOCOL_BUFFER: Final = 256 * 1024
BULK_WARMUP_BYTES: Final = 64 * MIB
BUSY_LOAD: Final = 0.7  # 1-minute load average above which the run is flagged as noisy
ECHO_BLOCK: Final = 1_000  # round trips per client before switching to the other one

# The targets the project set (informational: PASS/MISS never changes the exit code).
TARGET_BULK_CPU_RATIO: Final = 1.15  # CPU per byte, against the raw Protocol baseline
TARGET_ECHO_RTT_RATIO: Final = 1.2  # median round-trip time, against the raw Protocol client

RAW_PROTOCOL: Final = "raw Protocol"
RAW_BUFFERED: Final = "raw BufferedProtocol"
RAW_ECHO: Final = "raw Protocol client"


# -- bulk read -----------------------------------------------------------------------------

# A bulk variant connects to the sender on ``port``, asks for ``nbytes`` and reads to EOF;
# it returns (bytes received, number of chunks it was handed).
BulkVariant = Callable[[int, int], Awaitable[tuple[int, int]]]


async def bulk_tcpworkers_read(port: int, nbytes: int) -> tuple[int, int]:
    """``read()`` with its default ``max_bytes`` (64 KiB), the way most code will call it."""
    sock = connect((HOST, port))
    try:
        await sock.writable.write(BULK_HEADER.pack(nbytes))
        received = calls = 0
        while chunk := await sock.readable.read():
            received += len(chunk)
            calls += 1
    finally:
        await sock.close()
    return received, calls


async def bulk_tcpworkers_read_1mib(port: int, nbytes: int) -> tuple[int, int]:
    """``read(1 MiB)``: never splits a received chunk, so no copy in user space."""
    sock = connect((HOST, port))
    try:
        await sock.writable.write(BULK_HEADER.pack(nbytes))
        received = calls = 0
        while chunk := await sock.readable.read(MIB):
            received += len(chunk)
            calls += 1
    finally:
        await sock.close()
    return received, calls


async def bulk_tcpworkers_async_for(port: int, nbytes: int) -> tuple[int, int]:
    """``async for chunk in sock.readable``."""
    sock = connect((HOST, port))
    try:
        await sock.writable.write(BULK_HEADER.pack(nbytes))
        received = calls = 0
        async for chunk in sock.readable:
            received += len(chunk)
            calls += 1
    finally:
        await sock.close()
    return received, calls


class _CountingProtocol(asyncio.Protocol):
    """Counts bytes in ``data_received``; done when the connection is lost."""

    def __init__(self, request: bytes, done: asyncio.Future[tuple[int, int]]) -> None:
        self._request = request
        self._done = done
        self.received = 0
        self.calls = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(self._request)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        self.calls += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done.done():
            return
        if exc is None:
            self._done.set_result((self.received, self.calls))
        else:
            self._done.set_exception(exc)


class _CountingBufferedProtocol(asyncio.BufferedProtocol):
    """Receives into one preallocated buffer and counts: no allocation per chunk."""

    def __init__(self, request: bytes, done: asyncio.Future[tuple[int, int]]) -> None:
        self._request = request
        self._done = done
        self._buffer = memoryview(bytearray(BUFFERED_PROTOCOL_BUFFER))
        self.received = 0
        self.calls = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(self._request)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.received += nbytes
        self.calls += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self._done.done():
            return
        if exc is None:
            self._done.set_result((self.received, self.calls))
        else:
            self._done.set_exception(exc)


async def bulk_raw_protocol(port: int, nbytes: int) -> tuple[int, int]:
    """The fair baseline: ``Socket`` is built on ``Protocol.data_received``."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, int]] = loop.create_future()
    request = BULK_HEADER.pack(nbytes)
    transport, _ = await loop.create_connection(
        lambda: _CountingProtocol(request, done), HOST, port
    )
    try:
        return await done
    finally:
        transport.close()


async def bulk_raw_buffered(port: int, nbytes: int) -> tuple[int, int]:
    """The floor: what receiving costs with no per-chunk allocation at all."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[tuple[int, int]] = loop.create_future()
    request = BULK_HEADER.pack(nbytes)
    transport, _ = await loop.create_connection(
        lambda: _CountingBufferedProtocol(request, done), HOST, port
    )
    try:
        return await done
    finally:
        transport.close()


BULK_VARIANTS: Final[dict[str, BulkVariant]] = {
    "tcpworkers read()": bulk_tcpworkers_read,
    "tcpworkers read(1 MiB)": bulk_tcpworkers_read_1mib,
    "tcpworkers async for": bulk_tcpworkers_async_for,
    RAW_PROTOCOL: bulk_raw_protocol,
    RAW_BUFFERED: bulk_raw_buffered,
}


@dataclass(frozen=True, slots=True)
class BulkSample:
    """One bulk run: wall seconds, this process's CPU seconds, and what was received."""

    wall: float
    cpu_user: float
    cpu_system: float
    nbytes: int
    chunks: int
    minor_faults: int
    voluntary_switches: int

    @property
    def cpu(self) -> float:
        return self.cpu_user + self.cpu_system

    @property
    def cpu_per_gb(self) -> float:
        return self.cpu / (self.nbytes / GB)

    @property
    def bytes_per_second(self) -> float:
        return self.nbytes / self.wall


async def measure_bulk(variant: BulkVariant, port: int, nbytes: int) -> BulkSample:
    """Run one variant once, timing wall and CPU from before connecting until EOF."""
    gc.collect()
    usage0 = Usage.now()
    t0 = time.perf_counter()
    received, chunks = await variant(port, nbytes)
    wall = time.perf_counter() - t0
    used = Usage.now() - usage0
    if received != nbytes:
        raise RuntimeError(f"expected {nbytes} bytes, received {received}")
    return BulkSample(
        wall,
        used.user,
        used.system,
        nbytes,
        chunks,
        used.minor_faults,
        used.voluntary_switches,
    )


async def run_bulk(port: int, nbytes: int, rounds: int) -> dict[str, list[BulkSample]]:
    """Warm every variant up once, then run them all ``rounds`` times, interleaved."""
    names = list(BULK_VARIANTS)
    for name in names:
        await measure_bulk(BULK_VARIANTS[name], port, min(nbytes, BULK_WARMUP_BYTES))
    samples: dict[str, list[BulkSample]] = {name: [] for name in names}
    for r in range(rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            sample = await measure_bulk(BULK_VARIANTS[name], port, nbytes)
            samples[name].append(sample)
            progress(
                f"bulk round {r + 1}/{rounds} {name:<24} {sample.bytes_per_second / GB:6.2f} GB/s"
                f"  {sample.cpu_per_gb:6.3f} CPU s/GB"
            )
    return samples


def paired_ratios(values: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """value/baseline per round: each round compared with its own baseline run."""
    return [v / b for v, b in zip(values, baseline, strict=True)]


def paired_ratio(values: Sequence[float], baseline: Sequence[float]) -> float:
    """Median over rounds of value/baseline, each round compared with its own baseline run."""
    return median(paired_ratios(values, baseline))


def spread(values: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """[min, max] of the per-round ratios: how much the rounds disagreed."""
    ratios = paired_ratios(values, baseline)
    return [min(ratios), max(ratios)]


def summarize_bulk(samples: dict[str, list[BulkSample]]) -> dict[str, dict[str, Any]]:
    raw_cpu = [s.cpu_per_gb for s in samples[RAW_PROTOCOL]]
    floor_cpu = [s.cpu_per_gb for s in samples[RAW_BUFFERED]]
    summary: dict[str, dict[str, Any]] = {}
    for name, runs in samples.items():
        cpu_per_gb = [s.cpu_per_gb for s in runs]
        vs_raw = paired_ratio(cpu_per_gb, raw_cpu)
        is_baseline = name in (RAW_PROTOCOL, RAW_BUFFERED)
        summary[name] = {
            "throughput_mb_s": median([s.bytes_per_second / 1e6 for s in runs]),
            "throughput_gb_s": median([s.bytes_per_second / GB for s in runs]),
            "wall_s": median([s.wall for s in runs]),
            "cpu_s_per_gb": median(cpu_per_gb),
            "cpu_user_s_per_gb": median([s.cpu_user / (s.nbytes / GB) for s in runs]),
            "cpu_system_s_per_gb": median([s.cpu_system / (s.nbytes / GB) for s in runs]),
            "cpu_utilization": median([s.cpu / s.wall for s in runs]),
            "mean_chunk_bytes": median([s.nbytes / s.chunks for s in runs]),
            "minor_faults_per_gb": median([s.minor_faults / (s.nbytes / GB) for s in runs]),
            "cpu_ratio_vs_raw_protocol": vs_raw,
            "cpu_ratio_vs_raw_protocol_spread": spread(cpu_per_gb, raw_cpu),
            "cpu_ratio_vs_raw_buffered": paired_ratio(cpu_per_gb, floor_cpu),
            "target": None if is_baseline else TARGET_BULK_CPU_RATIO,
            "pass": None if is_baseline else vs_raw <= TARGET_BULK_CPU_RATIO,
        }
    return summary


def bulk_table(summary: dict[str, dict[str, Any]]) -> str:
    headers = [
        "bulk read",
        "MB/s",
        "GB/s",
        "CPU s/GB",
        "user",
        "sys",
        "CPU%",
        "chunk KiB",
        "faults/GB",
        "vs Protocol",
        "spread",
        "vs Buffered",
        f"target ≤{TARGET_BULK_CPU_RATIO}x",
    ]
    rows = [
        [
            name,
            f"{s['throughput_mb_s']:.0f}",
            f"{s['throughput_gb_s']:.2f}",
            f"{s['cpu_s_per_gb']:.3f}",
            f"{s['cpu_user_s_per_gb']:.3f}",
            f"{s['cpu_system_s_per_gb']:.3f}",
            f"{s['cpu_utilization'] * 100:.0f}",
            f"{s['mean_chunk_bytes'] / 1024:.0f}",
            f"{s['minor_faults_per_gb']:.0f}",
            f"{s['cpu_ratio_vs_raw_protocol']:.2f}x",
            _range(s["cpu_ratio_vs_raw_protocol_spread"]),
            f"{s['cpu_ratio_vs_raw_buffered']:.2f}x",
            _verdict(s["pass"]),
        ]
        for name, s in summary.items()
    ]
    return format_table(headers, rows)


# -- echo round trips ----------------------------------------------------------------------


class EchoClient:
    """One kept connection that does timed 64-byte round trips."""

    async def open(self, port: int) -> None:
        raise NotImplementedError

    async def roundtrip(self, message: bytes) -> bytes:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class TcpworkersEchoClient(EchoClient):
    """``Socket``: ``write`` then ``readexactly(64)``."""

    def __init__(self) -> None:
        self._sock: Socket | None = None

    async def open(self, port: int) -> None:
        self._sock = connect((HOST, port))
        await self._sock.opened

    async def roundtrip(self, message: bytes) -> bytes:
        sock = self._sock
        assert sock is not None
        await sock.writable.write(message)
        return await sock.readable.readexactly(len(message))

    async def close(self) -> None:
        if self._sock is not None:
            await self._sock.close()


class _EchoClientProtocol(asyncio.Protocol):
    """Accumulates received bytes; resolves the waiting future once enough have arrived."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._want = 0
        self._waiter: asyncio.Future[bytes] | None = None
        self._lost: BaseException | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiter = self._waiter
        if waiter is not None and len(self._buffer) >= self._want:
            reply = bytes(self._buffer[: self._want])
            del self._buffer[: self._want]
            self._waiter = None
            waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionResetError("the echo server closed the connection")
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(self._lost)

    def roundtrip(self, message: bytes) -> asyncio.Future[bytes]:
        assert self.transport is not None
        if self._lost is not None:
            raise self._lost
        self._want = len(message)
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(message)
        return self._waiter


class RawEchoClient(EchoClient):
    """The baseline: a raw ``asyncio.Protocol`` client."""

    def __init__(self) -> None:
        self._protocol: _EchoClientProtocol | None = None

    async def open(self, port: int) -> None:
        loop = asyncio.get_running_loop()
        _, self._protocol = await loop.create_connection(_EchoClientProtocol, HOST, port)

    async def roundtrip(self, message: bytes) -> bytes:
        assert self._protocol is not None
        return await self._protocol.roundtrip(message)

    async def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()


ECHO_VARIANTS: Final[dict[str, Callable[[], EchoClient]]] = {
    "tcpworkers Socket": TcpworkersEchoClient,
    RAW_ECHO: RawEchoClient,
}


@dataclass(frozen=True, slots=True)
class EchoSample:
    """One echo round: RTT percentiles (µs), rate, and this process's CPU per round trip.

    ``block_p50_us`` holds the median RTT of each block of ``ECHO_BLOCK`` round trips, in time
    order, so that block ``i`` of two variants ran back to back.
    """

    count: int
    p50_us: float
    p99_us: float
    mean_us: float
    roundtrips_per_s: float
    cpu_us_per_roundtrip: float
    block_p50_us: list[float]


@dataclass(slots=True)
class _EchoTally:
    """What one client accumulated over the blocks of one round."""

    rtts: list[int] = field(default_factory=list)
    block_p50_us: list[float] = field(default_factory=list)
    elapsed_ns: int = 0
    cpu_s: float = 0.0

    def sample(self) -> EchoSample:
        rtts = sorted(self.rtts)
        count = len(rtts)
        return EchoSample(
            count=count,
            p50_us=percentile(rtts, 50) / 1e3,
            p99_us=percentile(rtts, 99) / 1e3,
            mean_us=sum(rtts) / count / 1e3,
            roundtrips_per_s=count / (self.elapsed_ns / 1e9),
            cpu_us_per_roundtrip=self.cpu_s / count * 1e6,
            block_p50_us=self.block_p50_us,
        )


async def echo_block(client: EchoClient, count: int, tally: _EchoTally) -> None:
    """``count`` round trips, each timed on its own, added to ``tally``."""
    message = bytes(range(MESSAGE_SIZE))
    roundtrip = client.roundtrip
    clock = time.perf_counter_ns
    rtts = tally.rtts
    usage0 = Usage.now()
    start = clock()
    for _ in range(count):
        t0 = clock()
        reply = await roundtrip(message)
        rtts.append(clock() - t0)
        if reply != message:
            raise RuntimeError("the echo server sent back different bytes")
    tally.elapsed_ns += clock() - start
    tally.cpu_s += (Usage.now() - usage0).cpu
    tally.block_p50_us.append(percentile(sorted(rtts[-count:]), 50) / 1e3)


async def echo_round(
    clients: dict[str, EchoClient], count: int, reverse: bool
) -> dict[str, EchoSample]:
    """``count`` round trips per client, in blocks of ``ECHO_BLOCK`` that alternate between the
    clients (A, B, B, A, ...), so that a burst of load elsewhere on the machine hits both."""
    names = list(clients)[::-1] if reverse else list(clients)
    tallies = {name: _EchoTally() for name in names}
    gc.collect()
    done = 0
    while done < count:
        n = min(ECHO_BLOCK, count - done)
        for name in names:
            await echo_block(clients[name], n, tallies[name])
        names.reverse()
        done += n
    return {name: tally.sample() for name, tally in tallies.items()}


async def run_echo(port: int, count: int, warmup: int, rounds: int) -> dict[str, list[EchoSample]]:
    """Open one kept connection per variant, warm each up, then run interleaved rounds."""
    clients = {name: factory() for name, factory in ECHO_VARIANTS.items()}
    try:
        for client in clients.values():
            await client.open(port)
            await echo_block(client, warmup, _EchoTally())
        samples: dict[str, list[EchoSample]] = {name: [] for name in clients}
        for r in range(rounds):
            results = await echo_round(clients, count, reverse=r % 2 == 1)
            for name, sample in results.items():
                samples[name].append(sample)
                progress(
                    f"echo round {r + 1}/{rounds} {name:<24} p50 {sample.p50_us:7.1f} µs"
                    f"  p99 {sample.p99_us:7.1f} µs  {sample.roundtrips_per_s:8.0f} RT/s"
                )
        return samples
    finally:
        for client in clients.values():
            await client.close()


def block_ratios(runs: Sequence[EchoSample], base: Sequence[EchoSample]) -> list[list[float]]:
    """Per round, the p50 ratio of each block to the baseline block run next to it."""
    return [
        paired_ratios(run.block_p50_us, ref.block_p50_us)
        for run, ref in zip(runs, base, strict=True)
    ]


def summarize_echo(samples: dict[str, list[EchoSample]]) -> dict[str, dict[str, Any]]:
    """Medians per variant. The p50 ratio compares blocks that ran back to back (median over
    all block pairs), so a burst of load that hits one block does not decide the ratio."""
    base = samples[RAW_ECHO]
    summary: dict[str, dict[str, Any]] = {}
    for name, runs in samples.items():
        per_round = block_ratios(runs, base)
        ratio = median([r for ratios in per_round for r in ratios])
        round_medians = [median(ratios) for ratios in per_round]
        is_baseline = name == RAW_ECHO
        summary[name] = {
            "p50_us": median([s.p50_us for s in runs]),
            "p99_us": median([s.p99_us for s in runs]),
            "mean_us": median([s.mean_us for s in runs]),
            "roundtrips_per_s": median([s.roundtrips_per_s for s in runs]),
            "cpu_us_per_roundtrip": median([s.cpu_us_per_roundtrip for s in runs]),
            "p50_ratio_vs_raw": ratio,
            "p50_ratio_vs_raw_spread": [min(round_medians), max(round_medians)],
            "p99_ratio_vs_raw": paired_ratio([s.p99_us for s in runs], [s.p99_us for s in base]),
            "cpu_ratio_vs_raw": paired_ratio(
                [s.cpu_us_per_roundtrip for s in runs], [s.cpu_us_per_roundtrip for s in base]
            ),
            "target": None if is_baseline else TARGET_ECHO_RTT_RATIO,
            "pass": None if is_baseline else ratio <= TARGET_ECHO_RTT_RATIO,
        }
    return summary


def echo_table(summary: dict[str, dict[str, Any]]) -> str:
    headers = [
        "echo 64 B",
        "p50 µs",
        "p99 µs",
        "RT/s",
        "CPU µs/RT",
        "p50 vs raw",
        "spread",
        "p99 vs raw",
        "CPU vs raw",
        f"target ≤{TARGET_ECHO_RTT_RATIO}x",
    ]
    rows = [
        [
            name,
            f"{s['p50_us']:.1f}",
            f"{s['p99_us']:.1f}",
            f"{s['roundtrips_per_s']:.0f}",
            f"{s['cpu_us_per_roundtrip']:.1f}",
            f"{s['p50_ratio_vs_raw']:.2f}x",
            _range(s["p50_ratio_vs_raw_spread"]),
            f"{s['p99_ratio_vs_raw']:.2f}x",
            f"{s['cpu_ratio_vs_raw']:.2f}x",
            _verdict(s["pass"]),
        ]
        for name, s in summary.items()
    ]
    return format_table(headers, rows)


# -- driver --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    loop: LoopName
    bulk_mib: int
    rounds: int
    echo_count: int
    echo_warmup: int
    quick: bool
    pin: bool


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(
        description="tcpworkers sockets vs raw asyncio protocols: bulk-read CPU and echo RTT.",
    )
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--bulk-mib", type=positive_int, help="MiB per bulk read (default 1024)")
    parser.add_argument("--rounds", type=positive_int, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--echo-count", type=positive_int, help="timed round trips per echo round (default 20000)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of a few seconds: 64 MiB, 3 rounds, 2000 round trips",
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run this process and the echo server on one CPU, the bulk sender on the "
        "others (default: on, when there are at least 2 CPUs)",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    echo_count = args.echo_count or (2_000 if quick else 20_000)
    return Config(
        loop=args.loop,
        bulk_mib=args.bulk_mib or (64 if quick else 1024),
        rounds=args.rounds or (3 if quick else 5),
        echo_count=echo_count,
        echo_warmup=min(1_000, max(echo_count // 10, 100)),
        quick=quick,
        pin=bool(args.pin),
    )


async def run_all(config: Config, bulk_port: int, echo_port: int) -> dict[str, Any]:
    bulk = await run_bulk(bulk_port, config.bulk_mib * MIB, config.rounds)
    echo = await run_echo(echo_port, config.echo_count, config.echo_warmup, config.rounds)
    return {
        "bulk": {
            "summary": summarize_bulk(bulk),
            "rounds": {name: [asdict(s) for s in runs] for name, runs in bulk.items()},
        },
        "echo": {
            "summary": summarize_echo(echo),
            "rounds": {name: [asdict(s) for s in runs] for name, runs in echo.items()},
        },
    }


def main(argv: Sequence[str]) -> int:
    config = parse_args(argv)
    factory = loop_factory(config.loop)
    load_before = load_average()
    if load_before > BUSY_LOAD:
        progress(
            f"note: the machine is busy (1-minute load average {load_before:.2f}); "
            "expect noisier figures, compare ratios rather than absolute numbers"
        )
    progress(
        f"loop={config.loop} bulk={config.bulk_mib} MiB rounds={config.rounds} "
        f"echo={config.echo_count} (+{config.echo_warmup} warm-up)"
    )
    cpus = cpu_plan(config.pin)
    pin_to(cpus.measured)
    try:
        with (
            PeerProcess("bulk-sender", cpus=cpus.peers) as sender,
            # Same CPU as this process: a ping-pong runs one side at a time, and a wake-up
            # across CPUs (tens of µs on a VM) would hide what the client code costs.
            PeerProcess("echo", cpus=cpus.measured) as echo_server,
            asyncio.Runner(loop_factory=factory) as runner,
        ):
            results = runner.run(run_all(config, sender.port, echo_server.port))
    except KeyboardInterrupt:
        progress("interrupted; peer processes stopped")
        return 130
    report: dict[str, Any] = {
        "benchmark": "bench_sockets",
        "environment": environment(config.loop),
        "load_average_1min": {"before": load_before, "after": load_average()},
        "cpus": {"measured": sorted(cpus.measured), "peers": sorted(cpus.peers)},
        "config": asdict(config),
        "targets": {
            "bulk_cpu_per_byte_vs_raw_protocol": TARGET_BULK_CPU_RATIO,
            "echo_p50_rtt_vs_raw_protocol": TARGET_ECHO_RTT_RATIO,
        },
        **results,
    }
    path = write_json(f"bench_sockets-{config.loop}", report)
    env = report["environment"]
    print(
        f"\ntcpworkers bench_sockets on {config.loop} {env['loop_version']}, Python "
        f"{env['python']}, {env['cpu_count']} CPUs; medians of {config.rounds} interleaved rounds"
    )
    pinned = (
        f"pinned: this process and the echo server on CPU {_cpus(cpus.measured)}, "
        f"the bulk sender on CPU {_cpus(cpus.peers)}"
        if cpus.measured
        else "not pinned to CPUs"
    )
    print(f"bulk: {config.bulk_mib} MiB per read; CPU = this process only (user + sys); {pinned}\n")
    print(bulk_table(results["bulk"]["summary"]))
    print(f"\necho: {MESSAGE_SIZE}-byte messages, {config.echo_count} round trips per round\n")
    print(echo_table(results["echo"]["summary"]))
    print(
        f"\n1-minute load average: {load_before:.2f} before, "
        f"{report['load_average_1min']['after']:.2f} after (includes this benchmark)"
    )
    print(f"PASS/MISS is informational. JSON: {path}")
    return 0


def _verdict(passed: bool | None) -> str:
    if passed is None:
        return "(baseline)"
    return "PASS" if passed else "MISS"


def _cpus(cpus: frozenset[int]) -> str:
    return ",".join(map(str, sorted(cpus)))


def _range(bounds: Sequence[float]) -> str:
    return f"{bounds[0]:.2f}-{bounds[1]:.2f}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
