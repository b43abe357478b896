"""The pool binding against the ways serverless code reaches PostgreSQL without one.

A measurement, not a test: it prints a table and writes JSON, and exits 0 whatever the numbers.

Every variant serves ``GET /pg``: one ``SELECT 1`` per HTTP request, against one PostgreSQL
cluster started for the run (``tcpworkers.localpg``, SCRAM-SHA-256 passwords, like a managed
database; no TLS, which would only widen the gaps).

- (a) ``direct``: ``tcpworkers serve examples/bench_worker.py``, route ``/pg?via=direct``: a new
  asyncpg connection per request straight to PostgreSQL (TCP, SCRAM, a new backend process).
- (b) ``binding``: the same server, ``/pg``: a new asyncpg connection per request to ``env.DB``
  (the pool binding: a local unix socket, cleartext secret, warm server connections).
- (c) ``pgbouncer``: the same server, ``/pg?via=pgbouncer``: a new asyncpg connection per request
  to a real PgBouncer (transaction mode, SCRAM to PgBouncer, ``statement_cache_size=0`` as
  PgBouncer 1.18 needs).
- (d) ``uvicorn+pool``: a plain uvicorn + asyncpg pool ASGI app (in this file), the same query;
  what a long-lived server would do. The floor.

Sizes: the binding's ``max_size``, PgBouncer's ``default_pool_size`` and the asyncpg pool's
``max_size`` are the same (``--pool-size``, default 10). Each variant runs at concurrency 1 and 32
(keep-alive HTTP connections, the load generator of bench_http.py in its own process), rounds
interleaved (A B C D, then D C B A), medians reported.

Figures: req/s, p50/p99 ms, **srv µs/req** (the HTTP server process's CPU per request: the
worker, asyncpg and, for (b), the pooler, which runs inside that process), **pg µs/req**
(PostgreSQL's CPU, all its processes), **pgb µs/req** (PgBouncer's), ratios against (a) and (d).
The pooler's own CPU per query is estimated as srv(b) - srv(d) (what (b) adds over a server that
keeps its connections), and its added latency as p50(b) - p50(d). Parse round trips saved is
read from the binding's metrics after the run.

Targets from the issue: (b) >= 20x (a); (b) faster than (c); (b) >= 0.8x (d).

The ceiling: a request of (b) does everything a request of (d) does plus a new asyncpg connection,
so even with a pooler and a runtime that cost nothing, (b)/(d) stays below what asyncpg's own CPU
for a new connection allows. ``_asyncpg_floor.py`` measures that CPU against a canned in-process
server after the runs, and the report prints the ceiling it gives for each target (at c=1 from
(d)'s time per request, at c=32, where the server is CPU-bound, from (d)'s CPU per request).

Run: ``.venv/bin/python benchmarks/bench_pool.py [--quick] [--rounds N] [--duration S]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import socket
import sys
import tempfile
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

from _asyncpg_floor import measure as asyncpg_floor
from _common import (
    CpuPlan,
    cpu_plan,
    environment,
    format_table,
    load_average,
    median,
    pin_to,
    positive_int,
    progress,
    write_json,
)
from bench_http import (
    _SERVING_RE,
    HOST,
    _cpu_seconds,
    _Process,
    run_loadgen,
    serve_argv,
)

HERE: Final = Path(__file__).resolve().parent
VARIANTS: Final = ("direct", "binding", "pgbouncer", "uvicorn+pool")
PATHS: Final = {
    "direct": "/pg?via=direct",
    "binding": "/pg",
    "pgbouncer": "/pg?via=pgbouncer",
    "uvicorn+pool": "/pg",
}
CONCURRENCY: Final = (1, 32)
METRICS_PATH: Final = "/__tcpworkers/metrics"


# -- (d): uvicorn + an asyncpg pool (server process, --role bare-pool) ---------------------


def _bare_pool_main(dsn: str, pool_size: int) -> None:
    import asyncpg
    import uvicorn

    state: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    state["pool"] = await asyncpg.create_pool(
                        dsn, min_size=pool_size, max_size=pool_size
                    )
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await state["pool"].close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        async with state["pool"].acquire() as conn:
            body = str(await conn.fetchval("SELECT 1")).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(2048)
    config = uvicorn.Config(
        app, loop="uvloop", http="httptools", lifespan="on", access_log=False, log_level="warning"
    )
    print(f"PORT {sock.getsockname()[1]}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


# -- measuring -------------------------------------------------------------------------------


@dataclass
class Sample:
    requests: int
    wall: float
    errors: int
    p50_ms: float
    p99_ms: float
    server_cpu: float
    pg_cpu: float
    pgbouncer_cpu: float

    @property
    def rps(self) -> float:
        return self.requests / self.wall


def _pg_pids(postmaster: int) -> list[int]:
    """The postmaster and its children (backends come and go; sampled at each mark)."""
    pids = [postmaster]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == postmaster:
                pids.append(int(entry))
    return pids


def _tree_cpu(postmaster: int) -> float:
    # Children that exited are in the postmaster's cutime/cstime; live ones in their own stat.
    total = 0.0
    for pid in _pg_pids(postmaster):
        with contextlib.suppress(OSError):
            total += _cpu_seconds(pid)
    with open(f"/proc/{postmaster}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    total += (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
    return total


def measure(
    port: int,
    path: str,
    concurrency: int,
    server_pid: int,
    pg_pid: int,
    pgb_pid: int,
    cpus: CpuPlan,
    duration: float,
    warmup: float,
) -> Sample:
    spec = {
        "port": port,
        "path": path,
        "concurrency": concurrency,
        "duration": duration,
        "warmup": warmup,
    }
    result, marks = run_loadgen(
        spec,
        cpus,
        lambda: {
            "srv": _cpu_seconds(server_pid),
            "pg": _tree_cpu(pg_pid),
            "pgb": _cpu_seconds(pgb_pid),
        },
        timeout=120,
    )
    return Sample(
        requests=result["requests"],
        wall=result["wall"],
        errors=result["errors"],
        p50_ms=result["p50_ms"],
        p99_ms=result["p99_ms"],
        server_cpu=marks["srv_STOP"] - marks["srv_START"],
        pg_cpu=marks["pg_STOP"] - marks["pg_START"],
        pgbouncer_cpu=marks["pgb_STOP"] - marks["pgb_START"],
    )


@dataclass
class Config:
    rounds: int = 3
    duration: float = 3.0
    warmup: float = 0.5
    pool_size: int = 10
    pin: bool = True


@dataclass
class Results:
    samples: dict[str, dict[str, list[Sample]]] = field(default_factory=dict)
    metrics: str = ""


RUNTIME_CONFIG: Final = """\
# bench_pool.py: serve mode; (a) and (c) reach PostgreSQL and PgBouncer on loopback, which the
# serve preset refuses, so loopback is allowed. The binding needs no egress rule.
[egress]
allow = ["loopback"]
[server]
metrics = true
[vars]
PG_DIRECT_URL = "{direct}"
PGBOUNCER_URL = "{pgbouncer}"
[bindings.DB]
type = "postgres"
url = "{direct}"
min_size = {size}
max_size = {size}
"""


@contextlib.contextmanager
def servers(config: Config, cpus: CpuPlan, tmp: Path) -> Iterator[dict[str, Any]]:
    from tcpworkers.localpg import LocalPostgres
    from tcpworkers.testing import PgBouncer

    with LocalPostgres(auth="scram-sha-256", settings={"max_connections": "300"}) as pg:
        assert pg.password is not None
        bouncer = PgBouncer(
            pg.host,
            pg.port,
            users={pg.user: pg.password},
            auth_type="scram-sha-256",
            pool_size=config.pool_size,
        )
        asyncio.run(bouncer.start())
        started: list[_Process] = []
        try:
            direct, via_bouncer = pg.dsn(), bouncer.dsn(pg.user, pg.database)
            config_path = tmp / "tcpworkers.toml"
            config_path.write_text(
                RUNTIME_CONFIG.format(direct=direct, pgbouncer=via_bouncer, size=config.pool_size)
            )
            runtime = _Process(
                serve_argv(config_path),
                ready=_SERVING_RE,
                ready_on_stderr=True,
                cpus=cpus.measured,
                name="runtime",
            )
            started.append(runtime)
            bare = _Process(
                [
                    sys.executable,
                    "-u",
                    str(Path(__file__).resolve()),
                    "--role",
                    "bare-pool",
                    direct,
                    str(config.pool_size),
                ],
                ready=re.compile(r"PORT (\d+)"),
                cpus=cpus.measured,
                name="uvicorn+pool",
            )
            started.append(bare)
            pgb_pid = int((Path(bouncer._dir or "") / "pgbouncer.pid").read_text().strip())
            yield {
                "runtime": runtime,
                "bare": bare,
                "pg_pid": int((pg.data_dir / "postmaster.pid").read_text().split()[0]),
                "pgb_pid": pgb_pid,
            }
        finally:
            for process in reversed(started):
                process.stop()
            asyncio.run(bouncer.stop())


def run_all(config: Config, procs: Mapping[str, Any], cpus: CpuPlan) -> Results:
    results = Results()
    ports = {
        v: int(procs["bare" if v == "uvicorn+pool" else "runtime"].match.group(1)) for v in VARIANTS
    }
    pids = {v: procs["bare" if v == "uvicorn+pool" else "runtime"].pid for v in VARIANTS}

    def run(variant: str, c: int, duration: float, warmup: float) -> Sample:
        return measure(
            ports[variant],
            PATHS[variant],
            c,
            pids[variant],
            procs["pg_pid"],
            procs["pgb_pid"],
            cpus,
            duration,
            warmup,
        )

    for variant in VARIANTS:
        run(variant, 4, 0.3, 0.2)  # warm up: imports, pools filled
    for index in range(config.rounds):
        order = VARIANTS if index % 2 == 0 else tuple(reversed(VARIANTS))
        for c in CONCURRENCY:
            for variant in order:
                sample = run(variant, c, config.duration, config.warmup)
                results.samples.setdefault(f"c={c}", {}).setdefault(variant, []).append(sample)
                progress(f"round {index + 1} c={c} {variant}: {sample.rps:.0f} req/s")
    url = f"http://{HOST}:{ports['binding']}{METRICS_PATH}"
    with urllib.request.urlopen(url, timeout=10) as response:
        results.metrics = response.read().decode()
    return results


def _metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def summarize(results: Results) -> dict[str, dict[str, dict[str, float]]]:
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for workload, variants in results.samples.items():
        rows: dict[str, dict[str, float]] = {}
        for variant, samples in variants.items():
            rows[variant] = {
                "rps": median([s.rps for s in samples]),
                "p50_ms": median([s.p50_ms for s in samples]),
                "p99_ms": median([s.p99_ms for s in samples]),
                "srv_us": median([s.server_cpu / s.requests * 1e6 for s in samples]),
                "pg_us": median([s.pg_cpu / s.requests * 1e6 for s in samples]),
                "pgb_us": median([s.pgbouncer_cpu / s.requests * 1e6 for s in samples]),
                "errors": float(sum(s.errors for s in samples)),
            }
        for row in rows.values():
            row["x_direct"] = row["rps"] / rows["direct"]["rps"]
            row["x_pool"] = row["rps"] / rows["uvicorn+pool"]["rps"]
        summary[workload] = rows
    return summary


def table(summary: Mapping[str, Mapping[str, Mapping[str, float]]]) -> str:
    headers = [
        "variant",
        "req/s",
        "p50 ms",
        "p99 ms",
        "srv µs/req",
        "pg µs/req",
        "pgb µs/req",
        "x (a)",
        "x (d)",
    ]
    rows = []
    for workload, variants in summary.items():
        for variant in VARIANTS:
            r = variants[variant]
            rows.append(
                [
                    f"{workload} {variant}",
                    f"{r['rps']:.0f}",
                    f"{r['p50_ms']:.2f}",
                    f"{r['p99_ms']:.2f}",
                    f"{r['srv_us']:.0f}",
                    f"{r['pg_us']:.0f}",
                    f"{r['pgb_us']:.0f}",
                    f"{r['x_direct']:.1f}",
                    f"{r['x_pool']:.2f}",
                ]
            )
    return format_table(headers, rows)


def ceilings(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]], floor_us: float
) -> dict[str, float]:
    """The most (b)/(d) could be if the pooler and the runtime cost nothing: a request of (b)
    does what one of (d) does plus a new asyncpg connection, whose own CPU is ``floor_us``. At
    c=1 requests run one after another, so each takes at least that much longer than (d)'s
    (1 / req/s); at c=32 the server is CPU-bound, so its CPU per request grows by that much."""
    out = {}
    for workload, rows in summary.items():
        d = rows["uvicorn+pool"]
        base = 1e6 / d["rps"] if workload == "c=1" else d["srv_us"]
        out[workload] = base / (base + floor_us)
    return out


def verdicts(
    summary: Mapping[str, Mapping[str, Mapping[str, float]]], ceiling: Mapping[str, float]
) -> list[str]:
    lines = []
    for workload, rows in summary.items():
        b, a, c, d = (rows[v] for v in ("binding", "direct", "pgbouncer", "uvicorn+pool"))
        checks = [
            ("(b) >= 20x (a)", b["rps"] >= 20 * a["rps"], f"{b['rps'] / a['rps']:.1f}x"),
            ("(b) faster than (c)", b["rps"] > c["rps"], f"{b['rps'] / c['rps']:.2f}x"),
            ("(b) >= 0.8x (d)", b["rps"] >= 0.8 * d["rps"], f"{b['rps'] / d['rps']:.2f}x"),
        ]
        for name, ok, value in checks:
            lines.append(f"{workload}: {name}: {value} {'PASS' if ok else 'MISS'}")
        lines.append(
            f"{workload}: pooler + runtime CPU over (d): {b['srv_us'] - d['srv_us']:.0f} µs/req; "
            f"added p50 latency over (d): {b['p50_ms'] - d['p50_ms']:.2f} ms"
        )
        if workload in ceiling:
            top = ceiling[workload]
            lines.append(
                f"{workload}: ceiling with a free pooler and runtime (asyncpg's own connection "
                f"CPU only): (b) <= {top:.2f}x (d) = {top * d['rps'] / a['rps']:.1f}x (a); "
                f"(b) reaches {b['rps'] / (top * d['rps']):.0%} of it"
            )
    return lines


def parse_args(argv: Sequence[str]) -> Config:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=positive_int, default=3)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--pool-size", type=positive_int, default=10)
    parser.add_argument("--quick", action="store_true", help="1 round of 1.5 s")
    parser.add_argument("--no-pin", action="store_true")
    args = parser.parse_args(argv)
    config = Config(
        rounds=args.rounds, duration=args.duration, pool_size=args.pool_size, pin=not args.no_pin
    )
    if args.quick:
        config.rounds, config.duration = 1, 1.5
    return config


def main(argv: Sequence[str]) -> int:
    config = parse_args(argv)
    load_before = load_average()
    cpus = cpu_plan(config.pin)
    pin_to(cpus.peers)
    progress(
        f"rounds={config.rounds} duration={config.duration}s; starting PostgreSQL, "
        "PgBouncer and the servers"
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench_pool-") as tmp,
        servers(config, cpus, Path(tmp)) as procs,
    ):
        results = run_all(config, procs, cpus)
    summary = summarize(results)
    progress("measuring asyncpg's own CPU per new connection (canned in-process server)")
    floor_us = asyncpg_floor(1000 if config.rounds == 1 else 3000)
    ceiling = ceilings(summary, floor_us)
    saved = _metric(results.metrics, "tcpworkers_pool_parse_saved_total")
    forwarded = _metric(results.metrics, "tcpworkers_pool_parse_forwarded_total")
    report = {
        "benchmark": "bench_pool",
        "environment": environment("uvloop"),
        "load_average_1min": {"before": load_before, "after": load_average()},
        "config": asdict(config),
        "summary": summary,
        "parse": {"saved": saved, "forwarded": forwarded},
        "asyncpg_floor_us": floor_us,
        "ceiling_x_pool": ceiling,
        "rounds": {
            w: {v: [asdict(s) for s in samples] for v, samples in variants.items()}
            for w, variants in results.samples.items()
        },
    }
    path = write_json("bench_pool", report)
    print(
        f"\ntcpworkers bench_pool: SELECT 1 per HTTP request, pool size {config.pool_size}, "
        f"medians of {config.rounds} rounds x {config.duration:g} s\n"
    )
    print(table(summary))
    print()
    print(
        f"asyncpg's own CPU per new connection + SELECT 1 + close, against a canned in-process "
        f"server (benchmarks/_asyncpg_floor.py): {floor_us:.0f} µs"
    )
    for line in verdicts(summary, ceiling):
        print(line)
    print(
        f"Parse messages answered by the pool (round trips saved): {saved:.0f}; "
        f"forwarded: {forwarded:.0f}"
    )
    print(
        f"1-minute load average {load_before:.2f} before, {load_average():.2f} after. JSON: {path}"
    )
    return 0


if __name__ == "__main__":
    if "--role" in sys.argv[1:]:
        args = sys.argv[1:]
        role = args[args.index("--role") + 1]
        if role == "bare-pool":
            _bare_pool_main(args[args.index("--role") + 2], int(args[args.index("--role") + 3]))
            sys.exit(0)
        # the load generator lives in bench_http.py
        os.execv(sys.executable, [sys.executable, "-u", str(HERE / "bench_http.py"), *args])
    sys.exit(main(sys.argv[1:]))
