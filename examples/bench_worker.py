"""The benchmark worker: a greeting, an echo round trip and a socket streamed to the client.

Routes:

- ``GET /hello``: ``hello, world``;
- ``GET /echo?size=N``: ``connect()`` to the echo server, write N bytes, read the N bytes it sends
  back, close, and answer with the count;
- ``GET /blast?mib=N``: ``connect()`` to the blast server, send ``N\\n``, and answer with
  ``Response(sock.readable)``: the N MiB the server sends are streamed straight to the client;
- ``GET /pg``: a new asyncpg connection to the ``env.DB`` pool binding, ``SELECT 1``, close (the
  serverless pattern the binding makes cheap); ``/pg?via=direct`` does the same straight to
  the URL in ``PG_DIRECT_URL``, ``/pg?via=pgbouncer`` to ``PGBOUNCER_URL`` (with asyncpg's
  statement cache off, as PgBouncer 1.18 needs).

The servers are expected on 127.0.0.1, the echo server on port 9001 and the blast server on port
9002; ``ECHO_PORT`` and ``BLAST_PORT`` (``[vars]`` or ``--var``) choose other ports. Run it::

    tcpworkers dev examples/bench_worker.py --var ECHO_PORT=9001 --var BLAST_PORT=9002
    curl 'http://127.0.0.1:8787/echo?size=64'

``benchmarks/bench_http.py`` runs it with its own echo and blast servers, next to a bare ASGI
application doing the same with raw asyncio.
"""

from __future__ import annotations

from tcpworkers import Request, Response, connect
from tcpworkers.runtime import Env, ExecutionContext

HOST = "127.0.0.1"
DEFAULT_ECHO_PORT = 9001
DEFAULT_BLAST_PORT = 9002
# The echo is written and read back in pieces of this size, so a large N never has both sides
# waiting for the other to read (each side's buffers hold well over one piece).
PIECE = 64 * 1024


def _port(env: Env, name: str, default: int) -> int:
    return int(env.get(name, default))


def _size(request: Request, name: str) -> int | None:
    text = request.query.get(name, "")
    return int(text) if text.isdigit() else None


async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    """Serve ``/hello``, ``/echo?size=N`` and ``/blast?mib=N``."""
    if request.path == "/hello":
        return Response("hello, world")
    if request.path == "/echo":
        size = _size(request, "size")
        if size is None:
            return Response("echo needs ?size=N (bytes)", status=400)
        return Response(str(await echo(_port(env, "ECHO_PORT", DEFAULT_ECHO_PORT), size)))
    if request.path == "/blast":
        mib = _size(request, "mib")
        if mib is None:
            return Response("blast needs ?mib=N (MiB)", status=400)
        sock = connect((HOST, _port(env, "BLAST_PORT", DEFAULT_BLAST_PORT)))
        await sock.writable.write(f"{mib}\n".encode())
        return Response(sock.readable, headers={"content-type": "application/octet-stream"})
    if request.path == "/pg":
        return Response(str(await select_one(env, request.query.get("via", "binding"))))
    return Response("not found: try /hello, /echo?size=64, /blast?mib=1 or /pg", status=404)


async def select_one(env: Env, via: str) -> int:
    """A new asyncpg connection per request, ``SELECT 1``, close: through the binding
    (``via=binding``), straight to PostgreSQL (``direct``) or through PgBouncer (``pgbouncer``)."""
    import asyncpg  # only the /pg route needs it

    options: dict[str, int] = {}
    if via == "binding":
        dsn = env.DB.connection_string
    elif via == "direct":
        dsn = env.PG_DIRECT_URL
    elif via == "pgbouncer":
        dsn, options = env.PGBOUNCER_URL, {"statement_cache_size": 0}
    else:
        raise ValueError(f"via must be binding, direct or pgbouncer, not {via!r}")
    conn = await asyncpg.connect(dsn, **options)
    try:
        value: int = await conn.fetchval("SELECT 1")
        return value
    finally:
        await conn.close()


async def echo(port: int, size: int) -> int:
    """Send ``size`` bytes to the echo server on ``port`` and read them back."""
    received = 0
    async with connect((HOST, port)) as sock:
        while received < size:
            piece = min(PIECE, size - received)
            await sock.writable.write(bytes(piece))
            received += len(await sock.readable.readexactly(piece))
    return received
