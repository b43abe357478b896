"""A worker that queries PostgreSQL with asyncpg, unchanged, from inside the request handler.

``GET /`` answers with the server's version and time; ``GET /squares?n=5`` runs a parameterised
query (``generate_series``) and returns the rows as JSON. asyncpg opens its connection with
``loop.create_connection`` (and ``loop.start_tls`` when the server offers TLS); on the gated
event loop the runtime serves with, that connection passes the egress policy, counts against
the request's socket limit and is closed when the request ends, even if the handler forgot to.

One connection per request is the simple way and the slow one (a TCP handshake and the
PostgreSQL start-up for every request); the pool binding (``[bindings.DB] type = "postgres"``,
then ``asyncpg.connect(env.DB.connection_string)``; see docs/pool.md and examples/demo/) is the
fix.

The database is ``DATABASE_URL`` (``[vars]`` or ``--var``; as a secret when it holds a
password), by default ``postgresql://postgres@127.0.0.1:5432/test``. Run it::

    tcpworkers dev examples/postgres_worker.py
    curl 'http://127.0.0.1:8787/squares?n=5'
"""

from __future__ import annotations

import asyncpg

from tcpworkers import Request, Response
from tcpworkers.runtime import Env, ExecutionContext

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MAX_ROWS = 1000


async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    """Serve ``/`` (server version and time) and ``/squares?n=N``."""
    if request.path not in ("/", "/squares"):
        return Response("not found: try / or /squares?n=5", status=404)
    n_text = request.query.get("n", "10")
    if not n_text.isdigit() or not 0 <= int(n_text) <= MAX_ROWS:
        return Response(f"n must be a number from 0 to {MAX_ROWS}", status=400)
    conn = await asyncpg.connect(str(env.get("DATABASE_URL", DEFAULT_DSN)), timeout=10)
    try:
        if request.path == "/":
            row = await conn.fetchrow("SELECT version() AS version, now()::text AS now")
            return Response.json({"version": row["version"], "now": row["now"]})
        rows = await conn.fetch(
            "SELECT g AS n, g * g AS square FROM generate_series(1, $1::int) AS g", int(n_text)
        )
        return Response.json([{"n": r["n"], "square": r["square"]} for r in rows])
    finally:
        await conn.close()
