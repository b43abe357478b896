"""What the pooler's relay costs per query: asyncpg through ``serve_client`` against asyncpg
straight to PostgreSQL, same process, same loop, interleaved.

A measurement, not a test: it prints a table and writes JSON, and exits 0 whatever the numbers.

The pooler (``tcpworkers.pool``: a ``Pool`` of ``max_size`` server connections and
``serve_client`` on a loopback TCP listener) runs in this process, next to the asyncpg clients,
so **CPU µs/op** (this process's user + system time per operation) holds the driver *and* the
pooler; the direct variant holds the driver alone, so the difference is the pooler's CPU per
query. PostgreSQL's own CPU is another process and never counted. Workloads:

1. ``select 1``: ``fetchval`` of a prepared (cached) statement on kept connections, c=1 and c=16
   (16 clients on ``max_size`` = 4 server connections through the pooler; 16 direct connections).
2. ``2,000 rows``: ``fetch`` of ``generate_series`` on one kept connection: the bulk path.
3. ``connect + select 1``: a new asyncpg connection per operation (trust auth on both sides: this
   is the connection set-up cost without SCRAM, which the pool binding removes as well).

Each round runs every variant of a workload for ``--seconds`` (the order reverses every round to
cancel drift); medians over rounds are reported, ratios are pooler/direct medians. The pool's
``parse_saved`` counter shows how many client Parses were answered without a server round trip.

Needs PostgreSQL on 127.0.0.1:5432 (trust, database ``test``), as the test suite does.
Run: ``.venv/bin/python benchmarks/bench_relay.py [--loop asyncio] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import asyncpg

from _common import (
    LoopName,
    Usage,
    environment,
    format_table,
    loop_factory,
    median,
    positive_int,
    progress,
    write_json,
)
from tcpworkers.pool._dsn import parse_dsn
from tcpworkers.pool._pool import Pool, PoolSettings
from tcpworkers.pool._relay import serve_client
from tcpworkers.pool._upstream import cancel_query, open_server_connection

DIRECT: Final = "postgresql://postgres@127.0.0.1:5432/test"
USER, DATABASE, PASSWORD = "bench", "bench", "bench-secret"
ROWS_SQL: Final = "select g, 'row ' || g from generate_series(1, 2000) g"

Op = Callable[[], Awaitable[object]]


async def timed(ops: list[Op], seconds: float) -> dict[str, float]:
    """Run each op in its own task in a loop for ``seconds``: ops/s and CPU µs per op."""
    count = 0
    deadline = time.perf_counter() + seconds

    async def worker(op: Op) -> None:
        nonlocal count
        while time.perf_counter() < deadline:
            await op()
            count += 1

    before, started = Usage.now(), time.perf_counter()
    await asyncio.gather(*(worker(op) for op in ops))
    wall, cpu = time.perf_counter() - started, (Usage.now() - before).cpu
    return {"ops_per_s": count / wall, "cpu_us_per_op": cpu / max(count, 1) * 1e6}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    upstream = parse_dsn(DIRECT + "?sslmode=disable&application_name=bench_relay")
    pool = Pool(
        "BENCH",
        PoolSettings(min_size=4, max_size=4, acquire_timeout=30),
        lambda: open_server_connection(upstream),
        lambda pid, secret: cancel_query(upstream, pid, secret),
    )
    await pool.start()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_client(reader, writer, pool, user=USER, database=DATABASE, password=PASSWORD)

    server = await asyncio.start_server(on_client, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pooled = f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}?sslmode=disable"
    conns = {
        "direct": [await asyncpg.connect(DIRECT) for _ in range(16)],
        "pooler": [await asyncpg.connect(pooled) for _ in range(16)],
    }

    def select1(side: str, c: int) -> list[Op]:
        return [lambda conn=conn: conn.fetchval("select 1") for conn in conns[side][:c]]

    def rows(side: str) -> list[Op]:
        conn = conns[side][0]
        return [lambda: conn.fetch(ROWS_SQL)]

    def connect(side: str) -> list[Op]:
        dsn = DIRECT if side == "direct" else pooled

        async def op() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.fetchval("select 1")
            finally:
                await conn.close()

        return [op]

    workloads: dict[str, Callable[[str], list[Op]]] = {
        "select 1, c=1": lambda side: select1(side, 1),
        "select 1, c=16": lambda side: select1(side, 16),
        "2,000 rows": rows,
        "connect + select 1": connect,
    }
    results: dict[str, dict[str, list[dict[str, float]]]] = {
        w: {"direct": [], "pooler": []} for w in workloads
    }
    try:
        for round_no in range(args.rounds):
            order = ["direct", "pooler"] if round_no % 2 == 0 else ["pooler", "direct"]
            for name, make in workloads.items():
                for side in order:
                    results[name][side].append(await timed(make(side), args.seconds))
            progress(f"round {round_no + 1}/{args.rounds} done")
    finally:
        for group in conns.values():
            for conn in group:
                await conn.close()
        server.close()
        await server.wait_closed()
        stats = pool.stats()
        await pool.close()
    return {
        "results": results,
        "parse_saved": stats.parse_saved,
        "parse_forwarded": stats.parse_forwarded,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="2 rounds x 0.5 s")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds = 2, 0.5
    loop: LoopName = args.loop
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        data = runner.run(run(args))
    rows = []
    for name, sides in data["results"].items():
        d_ops = median([r["ops_per_s"] for r in sides["direct"]])
        p_ops = median([r["ops_per_s"] for r in sides["pooler"]])
        d_cpu = median([r["cpu_us_per_op"] for r in sides["direct"]])
        p_cpu = median([r["cpu_us_per_op"] for r in sides["pooler"]])
        rows.append(
            [
                name,
                f"{d_ops:,.0f}",
                f"{p_ops:,.0f}",
                f"{p_ops / d_ops:.2f}x",
                f"{d_cpu:,.0f}",
                f"{p_cpu:,.0f}",
                f"{p_cpu - d_cpu:+,.0f}",
            ]
        )
    headers = [
        "workload",
        "direct ops/s",
        "pooler ops/s",
        "ratio",
        "direct CPU µs",
        "pooler CPU µs",
        "pooler's share",
    ]
    print(format_table(headers, rows))
    saved, forwarded = data["parse_saved"], data["parse_forwarded"]
    print(f"client Parses answered locally: {saved:,} (forwarded: {forwarded:,})")
    path = write_json(f"bench_relay-{loop}", {"environment": environment(loop), **data})
    print(f"results: {path}")


if __name__ == "__main__":
    main()
