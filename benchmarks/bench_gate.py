"""What the egress gate costs per connection: ``connect()`` and drivers, in and out of a scope.

A measurement, not a test: it prints two tables and writes JSON, and exits 0 whatever the
numbers.

One *operation* is the least a request that talks to a backend does: open a TCP connection,
send 64 bytes, read the 64 bytes echoed back, close, and wait until the connection is gone. The
echo server runs in a separate process (``_common.py echo``, 127.0.0.1 only), so this process's
CPU time is the client side alone. Variants:

1. ``raw asyncio``: ``loop.create_connection`` with a minimal ``asyncio.Protocol`` (write once
   connected, a future resolved once 64 bytes arrived, ``transport.close()``, a future resolved
   in ``connection_lost``). The floor.
2. ``connect() outside scope``: ``connect()``, ``await sock.opened``, ``writable.write``,
   ``readable.readexactly(64)``, ``await sock.close()``, with no request scope: the process-wide
   default policy (``EgressPolicy.default()``, the dev preset) is still checked on the resolved
   address, but there is no slot and no accounting.
3. ``connect() in scope, per op``: the same inside ``async with request_scope(policy)``, one
   scope per operation, timed as a whole: what one request pays (scope entry, slot, policy on
   the resolved address, accounting, scope exit and its clean-up check).
4. ``connect() in scope, batch``: one scope around each block of operations; each operation is
   timed on its own, so scope entry and exit are *not* in the per-op figure. 3 minus 4 is the
   scope's set-up and teardown; 4 minus 2 is the per-connection gate cost alone.
5. ``connect() in scope, gated loop``: variant 3 on the gated event loop, the loop
   ``tcpworkers.run`` uses. It should cost what 3 costs; see "Double gating" below.
6. ``open_connection outside scope`` and 7. ``open_connection in scope, per op``:
   ``asyncio.open_connection``, ``write``, ``readexactly(64)``, ``close``, ``wait_closed`` on
   the gated loop (``tcpworkers.drivers.gated_loop_factory``): the path every existing driver
   takes. Outside a scope the loop's ``create_connection`` only delegates to the base loop;
   inside one it takes a slot, resolves once, checks the policy, dials, and wraps the driver's
   protocol in a counting proxy.

Variants 1-4 run on the plain loop (uvloop, or asyncio with ``--loop asyncio``), 5-7 on the gated
loop built on the same loop class. The two loops are two ``asyncio.Runner``s in this process,
taking turns block by block, so every variant is interleaved with every other.

Before timing, one operation of each scoped variant is checked against its scope's statistics
(one connection opened, 64 bytes received, nothing left for the scope to close), which proves
the in-scope variants went through the gate. Double gating: at the time of writing, ``connect()``
inside a scope on the gated loop takes *two* slots, because ``Socket`` takes one and then hands
its connected socket to ``loop.create_connection(sock=...)``, which the gated loop gates again
(a second slot, a second policy check, the bytes counted twice). The check reports this on
stderr, under the tables and in the JSON (``gated_loop_connect``) instead of failing, and
variant 5 measures what it costs.

Figures. Every operation is timed on its own (``perf_counter_ns``): **p50**, **p99** and
**mean** per round; **ops/s** is operations over the wall time of the blocks. **CPU µs/op** is
this process's user + system time (``getrusage(RUSAGE_SELF)``) per operation; the echo server
is another process and never counted. The echo server starts a thread per connection, which is
a large part of an operation's wall time and the same for every variant: wall-time
*differences* are what matter. Everything is a median over rounds.

Gate overhead, in µs per connection (second table): in scope minus outside scope, and outside
scope minus raw, for wall p50 and for CPU per operation. Each is the median over all pairs of
blocks that ran back to back (the difference of their block medians, or of their CPU per op);
the spread is the lowest and highest per-round median of those differences. The target from
the issue: a gate overhead **under 25 µs per connection**, judged on wall p50 (the PASS/MISS
column is informational).

Interleaving. The machine may be small and busy, so the variants run in the same process,
interleaved in blocks of 200 operations (1 2 3 4 5 6 7, then 7 6 5 4 3 2 1, ...), after a
warm-up, for several rounds; medians are reported. Processes are pinned (Linux, 2+ CPUs;
``--no-pin`` to disable): this process and the echo server on one CPU, so an operation never
pays a cross-CPU wake-up that would hide what the client code costs.

Ephemeral ports. Every operation is a new connection, and the closing side (this process)
keeps each port in TIME_WAIT for 60 s. Linux has ~28,000 ephemeral ports by default; loopback
connections may reuse a TIME_WAIT port after a second (``tcp_tw_reuse=2``), which keeps this
benchmark working, but opening connections much faster or many more of them can end in
``EADDRNOTAVAIL`` or a TIME_WAIT bucket overflow. So the defaults open ~54,000 connections per
run (7 variants x (5 rounds x 1,500 + 200 warm-up)), the run warns above 60,000, and two runs
back to back are best separated by a minute.

Run: ``.venv/bin/python benchmarks/bench_gate.py [--loop asyncio] [--quick] [--ops N]
[--rounds N] [--no-pin]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from typing import Any, Final, Literal

from _common import (
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
from tcpworkers import connect
from tcpworkers.drivers import GateMixin, gated_loop_factory
from tcpworkers.egress import EgressPolicy
from tcpworkers.scope import ScopeStats, current_scope, request_scope

HOST: Final = "127.0.0.1"
MESSAGE_SIZE: Final = 64
MESSAGE: Final = bytes(range(MESSAGE_SIZE))
BLOCK: Final = 200  # operations per variant before switching to the next variant
BUSY_LOAD: Final = 0.7  # 1-minute load average above which the run is flagged as noisy
ADVISED_MAX_CONNECTIONS: Final = 60_000  # per run; see "Ephemeral ports" above

# The target the project set (informational: PASS/MISS never changes the exit code).
TARGET_GATE_US: Final = 25.0

RAW: Final = "raw asyncio"
OUTSIDE: Final = "connect() outside scope"
SCOPE_PER_OP: Final = "connect() in scope, per op"
SCOPE_BATCH: Final = "connect() in scope, batch"
SCOPE_GATED: Final = "connect() in scope, gated loop"
DRIVER_OUTSIDE: Final = "open_connection outside scope"
DRIVER_SCOPE: Final = "open_connection in scope, per op"
VARIANTS: Final = (
    RAW,
    OUTSIDE,
    SCOPE_PER_OP,
    SCOPE_BATCH,
    SCOPE_GATED,
    DRIVER_OUTSIDE,
    DRIVER_SCOPE,
)

# Short names: the --variant choices and the overhead table's "variant - baseline" column.
SHORT: Final = {
    RAW: "raw",
    OUTSIDE: "out",
    SCOPE_PER_OP: "scope",
    SCOPE_BATCH: "batch",
    SCOPE_GATED: "gated",
    DRIVER_OUTSIDE: "drv-out",
    DRIVER_SCOPE: "drv-scope",
}
BY_SHORT: Final = {short: name for name, short in SHORT.items()}

LoopKind = Literal["plain", "gated"]


# -- operations ----------------------------------------------------------------------------

Op = Callable[[int], Awaitable[None]]


class _EchoOnceProtocol(asyncio.Protocol):
    """The minimal client: a future once 64 bytes arrived, another once the connection is lost."""

    __slots__ = ("_received", "echoed", "lost")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._received = 0
        self.echoed: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[None] = loop.create_future()

    def data_received(self, data: bytes) -> None:
        self._received += len(data)
        if self._received >= MESSAGE_SIZE and not self.echoed.done():
            self.echoed.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.echoed.done():
            self.echoed.set_exception(exc or ConnectionResetError("closed before the echo"))
        self.lost.set_result(None)


async def raw_op(port: int) -> None:
    """Variant 1: ``loop.create_connection`` and a minimal protocol."""
    loop = asyncio.get_running_loop()
    protocol = _EchoOnceProtocol(loop)
    transport, _ = await loop.create_connection(lambda: protocol, HOST, port)
    transport.write(MESSAGE)
    await protocol.echoed
    transport.close()
    await protocol.lost


async def connect_op(port: int) -> None:
    """Variants 2 and 4 (and the body of 3 and 5): ``connect()``, one echo, ``close()``."""
    sock = connect((HOST, port))
    await sock.opened
    await sock.writable.write(MESSAGE)
    if await sock.readable.readexactly(MESSAGE_SIZE) != MESSAGE:
        raise RuntimeError("the echo server sent back something else")
    await sock.close()


async def driver_op(port: int) -> None:
    """Variant 6 (and the body of 7): ``asyncio.open_connection``, one echo, close."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(MESSAGE)
    if await reader.readexactly(MESSAGE_SIZE) != MESSAGE:
        raise RuntimeError("the echo server sent back something else")
    writer.close()
    await writer.wait_closed()


def scoped(body: Op, policy: EgressPolicy) -> Op:
    """``body`` in a request scope of its own (variants 3, 5, 7): what one request pays."""

    async def op(port: int) -> None:
        async with request_scope(policy):
            await body(port)

    return op


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    loop: LoopKind
    op: Op
    # Entered around each block of operations, outside the per-op timing (variant 4's scope).
    block_context: Callable[[], AbstractAsyncContextManager[object]]


def variants(policy: EgressPolicy) -> list[Variant]:
    def nothing() -> AbstractAsyncContextManager[object]:
        return contextlib.nullcontext()

    def batch_scope() -> AbstractAsyncContextManager[object]:
        return request_scope(policy)

    chosen = [
        Variant(RAW, "plain", raw_op, nothing),
        Variant(OUTSIDE, "plain", connect_op, nothing),
        Variant(SCOPE_PER_OP, "plain", scoped(connect_op, policy), nothing),
        Variant(SCOPE_BATCH, "plain", connect_op, batch_scope),
        Variant(SCOPE_GATED, "gated", scoped(connect_op, policy), nothing),
        Variant(DRIVER_OUTSIDE, "gated", driver_op, nothing),
        Variant(DRIVER_SCOPE, "gated", scoped(driver_op, policy), nothing),
    ]
    assert tuple(v.name for v in chosen) == VARIANTS
    return chosen


async def scope_stats(body: Op, port: int, policy: EgressPolicy) -> ScopeStats:
    """Run ``body`` once in a scope of its own and return what the scope counted."""
    if current_scope() is not None:
        raise RuntimeError("the benchmark must start outside any request scope")
    async with request_scope(policy) as scope:
        await body(port)
    return scope.stats


def check_stats(name: str, stats: ScopeStats, *, writes_counted: bool) -> list[str]:
    """What differs from one connection's accounting (empty when all is as expected)."""
    expected = {"sockets_opened": 1, "bytes_in": MESSAGE_SIZE, "closed_at_end": 0}
    if writes_counted:
        expected["bytes_out"] = MESSAGE_SIZE  # the driver proxy does not see writes
    problems = [
        f"{key}={getattr(stats, key)} (expected {value})"
        for key, value in expected.items()
        if getattr(stats, key) != value
    ]
    if stats.sockets_denied or stats.connect_seconds <= 0:
        problems.append(f"sockets_denied={stats.sockets_denied}, connect_s={stats.connect_seconds}")
    return [f"{name}: {problem}" for problem in problems]


def check_loops(runners: dict[LoopKind, asyncio.Runner], loop: LoopName) -> dict[LoopKind, str]:
    """The class of each loop, after checking the gated one is gated and both are ``loop``."""
    classes = {kind: type(runner.get_loop()) for kind, runner in runners.items()}
    if not issubclass(classes["gated"], GateMixin) or issubclass(classes["plain"], GateMixin):
        raise TypeError(f"unexpected loop classes: {classes}")
    if loop == "uvloop":
        import uvloop

        if not all(issubclass(cls, uvloop.Loop) for cls in classes.values()):
            raise TypeError(f"expected uvloop-based loops, got {classes}")
    return {kind: f"{cls.__module__}.{cls.__qualname__}" for kind, cls in classes.items()}


# -- measurement ---------------------------------------------------------------------------


@dataclass(slots=True)
class Tally:
    """One variant's raw figures within one round."""

    times_us: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    usage: Usage = field(default_factory=lambda: Usage(0.0, 0.0))
    block_p50_us: list[float] = field(default_factory=list)
    block_cpu_us_per_op: list[float] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RoundSample:
    """One variant's figures in one round."""

    ops: int
    p50_us: float
    p99_us: float
    mean_us: float
    ops_per_s: float
    cpu_us_per_op: float
    user_us_per_op: float
    sys_us_per_op: float
    block_p50_us: list[float]
    block_cpu_us_per_op: list[float]


async def run_block(variant: Variant, port: int, n: int, tally: Tally | None) -> None:
    clock = time.perf_counter_ns
    times: list[float] = []
    usage0 = Usage.now()
    start = clock()
    async with variant.block_context():
        for _ in range(n):
            t0 = clock()
            await variant.op(port)
            times.append((clock() - t0) / 1000)
    wall_ns = clock() - start
    used = Usage.now() - usage0
    if tally is None:
        return
    tally.times_us += times
    tally.wall_s += wall_ns / 1e9
    tally.usage = Usage(tally.usage.user + used.user, tally.usage.system + used.system)
    tally.block_p50_us.append(median(times))
    tally.block_cpu_us_per_op.append(used.cpu / n * 1e6)


def sample(tally: Tally) -> RoundSample:
    ordered = sorted(tally.times_us)
    n = len(ordered)
    return RoundSample(
        ops=n,
        p50_us=percentile(ordered, 50),
        p99_us=percentile(ordered, 99),
        mean_us=sum(ordered) / n,
        ops_per_s=n / tally.wall_s,
        cpu_us_per_op=tally.usage.cpu / n * 1e6,
        user_us_per_op=tally.usage.user / n * 1e6,
        sys_us_per_op=tally.usage.system / n * 1e6,
        block_p50_us=tally.block_p50_us,
        block_cpu_us_per_op=tally.block_cpu_us_per_op,
    )


@dataclass(frozen=True, slots=True)
class Results:
    samples: dict[str, list[RoundSample]]
    loop_classes: dict[LoopKind, str]
    # What one connect() in a scope on the gated loop counted, and what differs from one
    # connection's accounting (see "Double gating" in the docstring).
    gated_loop_connect_stats: dict[str, Any]
    gated_loop_connect_problems: list[str]


def run_all(config: Config, port: int, runners: dict[LoopKind, asyncio.Runner]) -> Results:
    loop_classes = check_loops(runners, config.loop)
    policy = EgressPolicy.default()
    chosen = [v for v in variants(policy) if v.name in config.variants]
    plain, gated = runners["plain"], runners["gated"]
    problems = check_stats(
        SCOPE_PER_OP, plain.run(scope_stats(connect_op, port, policy)), writes_counted=True
    )
    problems += check_stats(
        DRIVER_SCOPE, gated.run(scope_stats(driver_op, port, policy)), writes_counted=False
    )
    if problems:
        raise RuntimeError("the gate did not account as expected: " + "; ".join(problems))
    gated_connect = gated.run(scope_stats(connect_op, port, policy))
    double = check_stats(SCOPE_GATED, gated_connect, writes_counted=True)
    if double:
        progress(
            "note: connect() in a scope on the gated loop is not accounted as one connection "
            f"(gated twice?): {'; '.join(double)}"
        )
    for body in (connect_op, driver_op):
        gated.run(body(port))  # outside any scope: the default policy must allow 127.0.0.1

    for variant in chosen:  # warm-up: imports, caches, the allocator
        runners[variant.loop].run(run_block(variant, port, config.warmup, None))
    samples: dict[str, list[RoundSample]] = {v.name: [] for v in chosen}
    blocks = 0
    for rnd in range(config.rounds):
        gc.collect()
        tallies = {v.name: Tally() for v in chosen}
        done = 0
        while done < config.ops:
            n = min(BLOCK, config.ops - done)
            for variant in chosen if blocks % 2 == 0 else chosen[::-1]:
                runners[variant.loop].run(run_block(variant, port, n, tallies[variant.name]))
            done += n
            blocks += 1
        for name, tally in tallies.items():
            samples[name].append(sample(tally))
        progress(
            f"round {rnd + 1}/{config.rounds} p50 µs: "
            + ", ".join(f"{name} {samples[name][-1].p50_us:.0f}" for name in samples)
        )
    return Results(samples, loop_classes, asdict(gated_connect), double)


# -- summaries -----------------------------------------------------------------------------

# (label, variant, minus variant, what the difference contains, whether the target applies)
OVERHEADS: Final = (
    ("gate, scope per op", SCOPE_PER_OP, OUTSIDE, "what a request pays per connection", True),
    ("gate, batch scope", SCOPE_BATCH, OUTSIDE, "slot + accounting (policy: both)", True),
    ("scope set-up + exit", SCOPE_PER_OP, SCOPE_BATCH, "request_scope() enter/exit", False),
    ("connect() vs raw", OUTSIDE, RAW, "Socket, dialer, default policy", True),
    ("connect() in scope vs raw", SCOPE_PER_OP, RAW, "all of tcpworkers, per request", False),
    ("gate on the gated loop", SCOPE_GATED, OUTSIDE, "what tcpworkers.run pays", True),
    ("driver gate, per op", DRIVER_SCOPE, DRIVER_OUTSIDE, "gated create_connection + scope", True),
)


def summarize(samples: dict[str, list[RoundSample]]) -> dict[str, dict[str, Any]]:
    raw_p50 = [s.p50_us for s in samples[RAW]] if RAW in samples else None
    return {
        name: {
            "p50_us": median([s.p50_us for s in runs]),
            "p99_us": median([s.p99_us for s in runs]),
            "mean_us": median([s.mean_us for s in runs]),
            "ops_per_s": median([s.ops_per_s for s in runs]),
            "cpu_us_per_op": median([s.cpu_us_per_op for s in runs]),
            "user_us_per_op": median([s.user_us_per_op for s in runs]),
            "sys_us_per_op": median([s.sys_us_per_op for s in runs]),
            "p50_ratio_vs_raw": None
            if raw_p50 is None
            else median([s.p50_us / r for s, r in zip(runs, raw_p50, strict=True)]),
        }
        for name, runs in samples.items()
    }


def block_differences(
    runs: Sequence[RoundSample], base: Sequence[RoundSample], attribute: str
) -> tuple[float, list[float]]:
    """Median over all back-to-back block pairs of (run - base), and the per-round spread."""
    per_round = [
        [a - b for a, b in zip(getattr(r, attribute), getattr(s, attribute), strict=True)]
        for r, s in zip(runs, base, strict=True)
    ]
    overall = median([d for diffs in per_round for d in diffs])
    round_medians = [median(diffs) for diffs in per_round]
    return overall, [min(round_medians), max(round_medians)]


def overheads(samples: dict[str, list[RoundSample]]) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    for label, name, minus, what, targeted in OVERHEADS:
        if name not in samples or minus not in samples:
            continue  # --variant left one of the two out
        wall, wall_spread = block_differences(samples[name], samples[minus], "block_p50_us")
        cpu, cpu_spread = block_differences(samples[name], samples[minus], "block_cpu_us_per_op")
        result[label] = {
            "variant": name,
            "minus": minus,
            "contains": what,
            "p50_us": wall,
            "p50_us_spread": wall_spread,
            "cpu_us_per_op": cpu,
            "cpu_us_per_op_spread": cpu_spread,
            "target_us": TARGET_GATE_US if targeted else None,
            "pass": (wall < TARGET_GATE_US) if targeted else None,
        }
    return result


def variant_table(summary: dict[str, dict[str, Any]], loops: dict[str, str]) -> str:
    headers = [
        "connect + 64 B echo + close",
        "loop",
        "p50 µs",
        "p99 µs",
        "mean µs",
        "ops/s",
        "CPU µs/op",
        "user",
        "sys",
        "p50 vs raw",
    ]
    rows = [
        [
            name,
            loops[name],
            f"{s['p50_us']:.1f}",
            f"{s['p99_us']:.1f}",
            f"{s['mean_us']:.1f}",
            f"{s['ops_per_s']:.0f}",
            f"{s['cpu_us_per_op']:.1f}",
            f"{s['user_us_per_op']:.1f}",
            f"{s['sys_us_per_op']:.1f}",
            "-" if s["p50_ratio_vs_raw"] is None else f"{s['p50_ratio_vs_raw']:.2f}x",
        ]
        for name, s in summary.items()
    ]
    return format_table(headers, rows)


def overhead_table(result: dict[str, dict[str, Any]]) -> str:
    headers = [
        "overhead per connection",
        "= variant - baseline",
        "p50 Δ µs",
        "spread",
        "CPU Δ µs",
        "spread",
        f"target <{TARGET_GATE_US:g} µs",
    ]
    rows = [
        [
            label,
            f"{SHORT[o['variant']]} - {SHORT[o['minus']]}",
            f"{o['p50_us']:+.1f}",
            _range(o["p50_us_spread"]),
            f"{o['cpu_us_per_op']:+.1f}",
            _range(o["cpu_us_per_op_spread"]),
            "-" if o["pass"] is None else ("PASS" if o["pass"] else "MISS"),
        ]
        for label, o in result.items()
    ]
    return format_table(headers, rows)


def _range(bounds: Sequence[float]) -> str:
    return f"{bounds[0]:+.1f}..{bounds[1]:+.1f}"


# -- driver --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    loop: LoopName
    ops: int
    rounds: int
    warmup: int
    quick: bool
    pin: bool
    variants: tuple[str, ...] = VARIANTS

    @property
    def connections(self) -> int:
        """How many connections the run opens (see "Ephemeral ports" in the docstring)."""
        checks = 5  # run_all's accounting checks
        return len(self.variants) * (self.ops * self.rounds + self.warmup) + checks


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(
        description="The egress gate's cost per connection: connect() and drivers, "
        "in and out of a request scope, against raw asyncio.",
    )
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument(
        "--ops", type=positive_int, help="timed operations per variant per round (default 1500)"
    )
    parser.add_argument("--rounds", type=positive_int, help="interleaved rounds (default 5)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run of a few seconds: 300 operations, 3 rounds",
    )
    parser.add_argument(
        "--variant",
        action="append",
        choices=list(BY_SHORT),
        help="measure only this variant (repeatable; default: all). raw, out (connect() "
        "outside a scope), scope (one scope per op), batch (one scope per block), gated "
        "(scope per op on the gated loop), drv-out, drv-scope (open_connection). For profiling",
    )
    parser.add_argument(
        "--pin",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run this process and the echo server on one CPU (default: on, with 2+ CPUs)",
    )
    args = parser.parse_args(argv)
    quick = bool(args.quick)
    ops = args.ops or (300 if quick else 1_500)
    return Config(
        loop=args.loop,
        ops=ops,
        rounds=args.rounds or (3 if quick else 5),
        warmup=50 if quick else 200,
        quick=quick,
        pin=bool(args.pin),
        variants=tuple(
            name for name in VARIANTS if not args.variant or SHORT[name] in args.variant
        ),
    )


def main(argv: Sequence[str]) -> int:
    config = parse_args(argv)
    plain_factory = loop_factory(config.loop)  # fails with the fix if uvloop is missing
    gated_factory = gated_loop_factory(prefer_uvloop=config.loop == "uvloop")
    load_before = load_average()
    if load_before > BUSY_LOAD:
        progress(
            f"note: the machine is busy (1-minute load average {load_before:.2f}); "
            "expect noisier figures, compare differences rather than absolute numbers"
        )
    if config.connections > ADVISED_MAX_CONNECTIONS:
        progress(
            f"warning: {config.connections} connections in one run; above "
            f"{ADVISED_MAX_CONNECTIONS} the ephemeral ports in TIME_WAIT may run out"
        )
    progress(
        f"loop={config.loop} ops={config.ops} rounds={config.rounds} "
        f"(+{config.warmup} warm-up) per variant: {config.connections} connections"
    )
    cpus = cpu_plan(config.pin)
    pin_to(cpus.measured)
    try:
        with (
            PeerProcess("echo", cpus=cpus.measured) as echo_server,
            asyncio.Runner(loop_factory=plain_factory) as plain,
            asyncio.Runner(loop_factory=gated_factory) as gated,
        ):
            results = run_all(config, echo_server.port, {"plain": plain, "gated": gated})
    except KeyboardInterrupt:
        progress("interrupted; the echo server stopped")
        return 130
    summary = summarize(results.samples)
    gate = overheads(results.samples)
    loop_names = {"plain": config.loop, "gated": f"gated {config.loop}"}
    report: dict[str, Any] = {
        "benchmark": "bench_gate",
        "environment": {**environment(config.loop), "loop_classes": results.loop_classes},
        "load_average_1min": {"before": load_before, "after": load_average()},
        "cpus": {"measured": sorted(cpus.measured)},
        "config": {**asdict(config), "block": BLOCK, "connections": config.connections},
        "policy": EgressPolicy.default().name,
        "target_gate_overhead_us": TARGET_GATE_US,
        "variant_loops": {
            v.name: v.loop for v in variants(EgressPolicy.default()) if v.name in results.samples
        },
        "gated_loop_connect": {
            "stats": results.gated_loop_connect_stats,
            "problems": results.gated_loop_connect_problems,
        },
        "summary": summary,
        "overheads": gate,
        "rounds": {name: [asdict(s) for s in runs] for name, runs in results.samples.items()},
    }
    path = write_json(f"bench_gate-{config.loop}", report)
    env = report["environment"]
    pinned = (
        f"this process and the echo server pinned to CPU {','.join(map(str, cpus.measured))}"
        if cpus.measured
        else "not pinned to CPUs"
    )
    print(
        f"\ntcpworkers bench_gate on {config.loop} {env['loop_version']}, Python "
        f"{env['python']}, {env['cpu_count']} CPUs; {pinned}"
    )
    print(
        f"medians of {config.rounds} interleaved rounds x {config.ops} operations per variant "
        f"(blocks of {BLOCK}); CPU = this process only (user + sys)\n"
    )
    print(
        variant_table(
            summary, {name: loop_names[kind] for name, kind in report["variant_loops"].items()}
        )
    )
    print()
    print(overhead_table(gate))
    if results.gated_loop_connect_problems:
        print(
            "\nnote: one connect() in a scope on the gated loop was accounted as: "
            + "; ".join(results.gated_loop_connect_problems)
            + " (gated twice: Socket's slot, then the gated loop's create_connection(sock=))"
        )
    print(
        f"\n1-minute load average: {load_before:.2f} before, "
        f"{report['load_average_1min']['after']:.2f} after (includes this benchmark)"
    )
    print(f"PASS/MISS is informational. JSON: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
