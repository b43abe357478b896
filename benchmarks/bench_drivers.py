"""What the runtime adds to a driver's new-connection query, against the same driver in a plain
asyncio program.

A measurement, not a test: it prints a table and writes JSON, and exits 0 whatever the numbers.

Per driver, one *request* is: open a new connection, run one query (or one command, or one GET),
close the connection; requests run one after another. Variants, all in this process, in the same
run, each on its own event loop. Within a round the variants take turns: each warms up, then
runs ``BLOCK`` (10) requests, then the next variant does (A B C D, then D C B A, ...), so a change
in the machine's state during a round (another process waking, CPU placement, a server's
housekeeping) reaches every variant alike instead of one variant's whole round. Within a turn
requests follow each other as in a real program (what one request leaves to the loop, such as
completing a close, runs during the next one):

1. ``plain``: the driver on a plain event loop (uvloop, or the stdlib loop with
   ``--loop asyncio``), no tcpworkers at all. The baseline.
2. ``scope``: the gated loop (``tcpworkers.drivers.gated_loop_factory``), each request inside a
   ``request_scope()``: the gate's policy check, slot and accounting and the scope's clean-up.
3. ``runtime``: the gated loop, each request an HTTP request handled by ``WorkerApp`` (the ASGI
   application ``tcpworkers dev/serve`` runs), called in-process with an ASGI ``http`` scope:
   the worker's ``fetch(request, env, ctx)`` runs the driver code; Request/Response objects,
   the request scope, the gate, the response sent back through ASGI ``send``. The HTTP front
   door (uvicorn, httptools) is not included: ``bench_http.py`` measures it, and it costs the
   same whatever the handler does.
4. ``minimal``: a reference, not a target. The least an in-process gate and a bare ASGI
   application can add (``_minimal_gate.py``): a loop subclass that decides each connection by
   one set lookup, counts its bytes through a protocol proxy and a transport view and aborts
   what is left open at request end, under the same ASGI call as ``runtime``. The gap between
   ``runtime`` and ``minimal`` is what the runtime itself does beyond that (slots, limits,
   DNS and the policy's classes, the Request/Response API, deadlines, metrics, error paths).

Drivers and servers (the machine's services, as in the tests): asyncpg (PostgreSQL,
127.0.0.1:5432, ``SELECT 1``), asyncmy and aiomysql (MariaDB, 127.0.0.1:3306, root, ``SELECT 1``),
redis.asyncio (127.0.0.1:6379, ``GET``), and aiohttp and httpx (default transport) against a
small HTTP/1.1 server in a child process (``Connection: close``, so every GET connects anew).
psycopg 3 is not measured: inside a request it is refused (see docs/drivers.md).

Figures (per variant, medians over rounds): **p50 µs** and **p99 µs** per request,
**added** the median over rounds of (variant p50 / plain p50 of the same round - 1), with the
lowest and highest round (**spread**); **CPU µs** this process's CPU time per request (the
driver's and tcpworkers' Python work; the servers are other processes) and **+CPU µs** the
median over rounds of the difference to ``plain``. On a busy machine the latencies swing with
the load, the CPU figures much less: +CPU µs is what the runtime itself costs per request.

Target (issue 11): the runtime adds less than **10 %** to a
new-connection query (PASS/MISS, informational, judged on the ``runtime`` row's added p50).

Run: ``.venv/bin/python benchmarks/bench_drivers.py [--quick] [--rounds N] [--requests N]
[--drivers asyncpg,asyncmy,...] [--loop uvloop|asyncio]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from _common import (
    LoopName,
    environment,
    format_table,
    load_average,
    loop_factory,
    median,
    percentile,
    positive_int,
    progress,
    write_json,
)
from _http_peer import HttpPeer
from _minimal_gate import minimal_app, minimal_loop_factory
from tcpworkers.drivers import gated_loop_factory
from tcpworkers.scope import request_scope

TARGET: Final = 0.10
WARMUP: Final = 20
BLOCK: Final = 10  # requests a variant runs before the next variant's turn
VARIANTS: Final = ("plain", "scope", "runtime", "minimal")
PG_DSN: Final = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL: Final = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "db": "test"}

Request = Callable[[], Awaitable[None]]


def make_requests(http_url: str) -> tuple[dict[str, Request], Callable[[], Awaitable[None]]]:
    """One new-connection request per driver (imports are lazy: a missing driver fails alone)."""

    async def asyncpg_request() -> None:
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        try:
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()

    async def mysql_select_one(conn: Any) -> None:
        # asyncmy and aiomysql share this connection/cursor API.
        try:
            async with conn.cursor() as cur:
                await cur.execute("SELECT 1")
                assert await cur.fetchone() == (1,)
        finally:
            await conn.ensure_closed()

    async def asyncmy_request() -> None:
        import asyncmy

        await mysql_select_one(await asyncmy.connect(**MYSQL))

    async def aiomysql_request() -> None:
        import aiomysql

        await mysql_select_one(await aiomysql.connect(**MYSQL))

    async def redis_request() -> None:
        import redis.asyncio as redis

        client = redis.Redis(host="127.0.0.1", port=6379)
        try:
            await client.get("tcpworkers:bench_drivers:missing")
        finally:
            await client.aclose()

    # The HTTP clients are made once per measurement, as a worker would keep one (making an
    # httpx client loads the CA bundle: ~10 ms); the server closes every connection, so each
    # GET still connects anew.
    clients: dict[str, Any] = {}

    async def aiohttp_request() -> None:
        import aiohttp

        if "aiohttp" not in clients:
            clients["aiohttp"] = aiohttp.ClientSession()
        async with clients["aiohttp"].get(http_url) as response:
            assert await response.read() == b"ok"

    async def httpx_request() -> None:
        import httpx

        if "httpx" not in clients:
            clients["httpx"] = httpx.AsyncClient()
        response = await clients["httpx"].get(http_url)
        assert response.content == b"ok"

    async def close_clients() -> None:
        for client in clients.values():
            await (client.close() if hasattr(client, "connector") else client.aclose())
        clients.clear()

    return {
        "asyncpg": asyncpg_request,
        "asyncmy": asyncmy_request,
        "aiomysql": aiomysql_request,
        "redis": redis_request,
        "aiohttp": aiohttp_request,
        "httpx": httpx_request,
    }, close_clients


def runtime_app(request: Request) -> Any:
    """The WorkerApp serving a worker whose fetch() runs ``request``."""
    from tcpworkers import Response
    from tcpworkers.runtime import RuntimeSettings, Worker, WorkerApp

    async def fetch(req: Any, env: Any, ctx: Any) -> Any:
        await request()
        return Response("ok")

    return WorkerApp(Worker.from_object(fetch, name="bench"), RuntimeSettings())


_HTTP_SCOPE: Final = {
    "type": "http",
    "asgi": {"version": "3.0", "spec_version": "2.3"},
    "http_version": "1.1",
    "method": "GET",
    "scheme": "http",
    "path": "/",
    "raw_path": b"/",
    "query_string": b"",
    "root_path": "",
    "headers": [(b"host", b"127.0.0.1")],
    "client": ("127.0.0.1", 50000),
    "server": ("127.0.0.1", 8787),
}


async def call_app(app: Any) -> None:
    """One in-process ASGI request: no body, collect the response, check it is 200 ok."""
    sent: list[dict[str, Any]] = []
    requested = False
    complete = asyncio.get_running_loop().create_future()

    async def receive() -> dict[str, Any]:
        # As uvicorn: the body once, then http.disconnect once the response is complete.
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await complete
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        body_done = message["type"] == "http.response.body" and not message.get("more_body")
        if body_done and not complete.done():
            complete.set_result(None)

    await app(dict(_HTTP_SCOPE), receive, send)
    if sent[0].get("status") != 200:
        raise RuntimeError(f"the worker answered {sent}")


class VariantRun:
    """One variant's event loop and driver clients for one round, run a block at a time, so that
    the variants of a round take turns every ``BLOCK`` requests (see the module docstring)."""

    def __init__(self, loop: LoopName, variant: str, driver: str, http_url: str) -> None:
        self._runner = asyncio.Runner(loop_factory=variant_loop_factory(loop, variant))
        # Per variant: a client session belongs to the loop it was made on.
        requests, self._cleanup = make_requests(http_url)
        self._one = self._runner.run(_one_request(variant, requests[driver]))
        self.latencies: list[float] = []
        self.cpu = 0.0  # this process's CPU time over the recorded requests (seconds)

    def block(self, count: int, *, record: bool = True) -> None:
        self._runner.run(self._block(count, record))

    async def _block(self, count: int, record: bool) -> None:
        one = self._one
        latencies = []
        cpu_started = time.process_time()
        for _ in range(count):
            started = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - started)
        if record:
            self.cpu += time.process_time() - cpu_started
            self.latencies += latencies

    def close(self) -> None:
        try:
            self._runner.run(self._cleanup())
        finally:
            self._runner.close()


async def _one_request(variant: str, request: Request) -> Request:
    """One request of ``variant`` (made on the variant's running loop)."""
    if variant == "plain":
        return request
    if variant == "scope":

        async def in_scope() -> None:
            async with request_scope():
                await request()

        return in_scope
    app = runtime_app(request) if variant == "runtime" else minimal_app(request)

    async def through_app() -> None:
        await call_app(app)

    return through_app


def variant_loop_factory(loop: LoopName, variant: str) -> Callable[[], asyncio.AbstractEventLoop]:
    if variant == "plain":
        return loop_factory(loop)
    if variant == "minimal":
        return minimal_loop_factory(prefer_uvloop=loop == "uvloop")
    return gated_loop_factory(prefer_uvloop=loop == "uvloop")


def run_round(
    loop: LoopName, driver: str, http_url: str, count: int, first: int
) -> dict[str, dict[str, float]]:
    """One round: every variant on its own fresh loop, warmed up, then ``count`` requests each
    in turns of ``BLOCK`` (the order of the variants reversed every turn, starting at
    ``first``). Returns per variant its p50, p99 and CPU per request (seconds)."""
    runs: dict[str, VariantRun] = {}
    try:
        for variant in VARIANTS:
            runs[variant] = VariantRun(loop, variant, driver, http_url)
            runs[variant].block(WARMUP, record=False)
        for turn in range(first, first + -(-count // BLOCK)):
            order = VARIANTS if turn % 2 == 0 else tuple(reversed(VARIANTS))
            for variant in order:
                runs[variant].block(min(BLOCK, count - len(runs[variant].latencies)))
    finally:
        for run in runs.values():
            run.close()
    figures = {}
    for variant, run in runs.items():
        latencies = sorted(run.latencies)
        figures[variant] = {
            "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99),
            "cpu": run.cpu / len(latencies),
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=positive_int, default=10)
    parser.add_argument("--requests", type=positive_int, default=100)
    parser.add_argument("--drivers", default="asyncpg,asyncmy,aiomysql,redis,aiohttp,httpx")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--quick", action="store_true", help="2 rounds of 60 requests")
    args = parser.parse_args()
    rounds, count = (2, 60) if args.quick else (args.rounds, args.requests)
    loop: LoopName = args.loop
    load_before = load_average()
    results: dict[str, Any] = {}
    rows = []
    with HttpPeer() as http:
        drivers = make_requests(http.url)[0]
        for name in args.drivers.split(","):
            if name not in drivers:
                raise SystemExit(f"unknown driver {name!r}; choose from {', '.join(drivers)}")
            per_round: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
            for index in range(rounds):
                progress(f"{name}: round {index + 1}/{rounds}")
                figures = run_round(loop, name, http.url, count, first=index)
                for variant in VARIANTS:
                    per_round[variant].append(figures[variant])
            summary: dict[str, Any] = {}
            for variant in VARIANTS:
                added = [
                    r["p50"] / base["p50"] - 1
                    for r, base in zip(per_round[variant], per_round["plain"], strict=True)
                ]
                added_cpu = [
                    r["cpu"] - base["cpu"]
                    for r, base in zip(per_round[variant], per_round["plain"], strict=True)
                ]
                summary[variant] = {
                    "cpu_us": median([r["cpu"] for r in per_round[variant]]) * 1e6,
                    "added_cpu_us": median(added_cpu) * 1e6,
                    "p50_us": median([r["p50"] for r in per_round[variant]]) * 1e6,
                    "p99_us": median([r["p99"] for r in per_round[variant]]) * 1e6,
                    "added_p50": median(added),
                    "added_min": min(added),
                    "added_max": max(added),
                }
                verdict = ""
                if variant == "runtime":
                    verdict = "PASS" if median(added) < TARGET else "MISS"
                rows.append(
                    [
                        f"{name} {variant}",
                        f"{summary[variant]['p50_us']:.0f}",
                        f"{summary[variant]['p99_us']:.0f}",
                        "" if variant == "plain" else f"{median(added):+.1%}",
                        "" if variant == "plain" else f"{min(added):+.1%}..{max(added):+.1%}",
                        f"{summary[variant]['cpu_us']:.0f}",
                        "" if variant == "plain" else f"{median(added_cpu) * 1e6:+.0f}",
                        verdict,
                    ]
                )
            results[name] = {"summary": summary, "rounds": per_round}
    print(
        f"bench_drivers: {loop}, {rounds} rounds x {count} requests per variant, "
        f"new connection per request; target: runtime adds < {TARGET:.0%}"
    )
    headers = ["driver / variant", "p50 µs", "p99 µs", "added", "spread", "CPU µs", "+CPU µs", ""]
    print(format_table(headers, rows))
    path = write_json(
        f"bench_drivers-{loop}",
        {
            "environment": environment(loop)
            | {"load_before": load_before, "load_after": load_average()},
            "config": {"rounds": rounds, "requests": count, "warmup": WARMUP},
            "target_added": TARGET,
            "results": results,
        },
    )
    print(f"raw figures: {path}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(130)
