"""The demo app: a guestbook on PostgreSQL through the pool binding, and a live page.

Routes:

- ``GET /``: the live page (one HTML file, no build step, no CDN). It polls the runtime's
  Prometheus metrics (``/__tcpworkers/metrics``) once a second and shows requests per second,
  sockets per request, the pool binding's server connections and waiting clients, and the egress
  decisions; plus the guestbook, a streamed response and an egress probe.
- ``GET /api/entries``: the latest entries, read through ``env.DB``.
- ``POST /api/entries``: sign (JSON ``{"name", "message"}`` or a form); 201 with the entry.
- ``GET /api/stream?lines=N``: a socket streamed into the response: the demo's line service
  (``TICKER``, see ``ticker.py``) sends N lines, one every 50 ms, and the response body *is* the
  socket's ``readable``.
- ``GET /api/egress?to=HOST:PORT``: try ``connect()`` and report the egress decision (the
  default probe, ``169.254.169.254:80``, is cloud metadata: denied before any packet is sent).

Every database route opens a new asyncpg connection per request, the way serverless code does:
``env.DB.connection_string`` points at the runtime's pooler, so that costs no TCP handshake,
TLS or SCRAM, and the server connection behind it is warm and shared.

``env.DB`` is ``[bindings.DB]`` in ``tcpworkers.toml``: its upstream is the ``DATABASE_URL``
environment variable (through ``[secrets]`` and ``url_secret``). Run it with ``scripts/demo``
(starts PostgreSQL and the line service for you), or by hand::

    DATABASE_URL=postgresql://user:password@127.0.0.1:5432/db tcpworkers dev examples/demo/worker.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg

from tcpworkers import Request, Response, connect
from tcpworkers.errors import ConnectError, EgressDeniedError
from tcpworkers.runtime import Env, ExecutionContext

PAGE = (Path(__file__).parent / "page.html").read_bytes()
MAX_LINES = 200
MAX_NAME = 40
MAX_MESSAGE = 280
SCHEMA = """
CREATE TABLE IF NOT EXISTS guestbook (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    message text NOT NULL,
    created timestamptz NOT NULL DEFAULT now()
)
"""
_schema_ready = False


async def open_db(env: Env) -> Any:
    """A new connection per request (cheap through the binding), with the table in place."""
    global _schema_ready
    conn = await asyncpg.connect(env.DB.connection_string, timeout=10)
    if not _schema_ready:
        async with conn.transaction():
            # One process creates the table at a time (a transaction-scoped lock: safe in
            # transaction pooling, unlike a session lock).
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('tcpworkers_demo'))")
            await conn.execute(SCHEMA)
        _schema_ready = True
    return conn


async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    """Route the demo's requests."""
    path, method = request.path, request.method
    if path == "/" and method in ("GET", "HEAD"):
        return Response(PAGE, headers={"content-type": "text/html; charset=utf-8"})
    if path == "/api/entries" and method == "GET":
        return await list_entries(env)
    if path == "/api/entries" and method == "POST":
        return await sign(request, env)
    if path == "/api/stream" and method == "GET":
        return await stream(request, env)
    if path == "/api/egress" and method == "GET":
        return await egress_probe(request)
    return Response.json({"error": f"no route {method} {path}"}, status=404)


async def list_entries(env: Env) -> Response:
    conn = await open_db(env)
    try:
        rows = await conn.fetch(
            "SELECT id, name, message, created FROM guestbook ORDER BY id DESC LIMIT 20"
        )
        total = await conn.fetchval("SELECT count(*) FROM guestbook")
    finally:
        await conn.close()
    entries = [
        {"id": r["id"], "name": r["name"], "message": r["message"], "at": r["created"].isoformat()}
        for r in rows
    ]
    return Response.json({"total": total, "entries": entries})


async def sign(request: Request, env: Env) -> Response:
    content_type = request.headers.get("content-type") or ""
    if content_type.startswith("application/json"):
        try:
            data = await request.json()
        except ValueError:
            return Response.json({"error": "the body is not valid JSON"}, status=400)
        form = data if isinstance(data, dict) else {}
    else:
        from urllib.parse import parse_qsl

        form = dict(parse_qsl(await request.text()))
    name, message = str(form.get("name", "")).strip(), str(form.get("message", "")).strip()
    if not name or not message or len(name) > MAX_NAME or len(message) > MAX_MESSAGE:
        return Response.json(
            {"error": f"name (1-{MAX_NAME} chars) and message (1-{MAX_MESSAGE}) are required"},
            status=400,
        )
    conn = await open_db(env)
    try:
        row = await conn.fetchrow(
            "INSERT INTO guestbook (name, message) VALUES ($1, $2) RETURNING id, created",
            name,
            message,
        )
    finally:
        await conn.close()
    if not content_type.startswith("application/json"):
        return Response.redirect("/", status=303)  # a plain form post, without JavaScript
    entry = {"id": row["id"], "name": name, "message": message, "at": row["created"].isoformat()}
    return Response.json(entry, status=201)


async def stream(request: Request, env: Env) -> Response:
    lines = request.query.get("lines", "20")
    if not lines.isdigit() or not 1 <= int(lines) <= MAX_LINES:
        return Response.json({"error": f"lines must be 1-{MAX_LINES}"}, status=400)
    address = str(env.get("TICKER", "127.0.0.1:7079"))
    sock = connect(address)
    try:
        await sock.opened
    except ConnectError as exc:
        hint = "scripts/demo starts it; or run: python examples/demo/ticker.py"
        return Response.json({"error": str(exc), "hint": hint}, status=502)
    await sock.writable.write(f"{lines}\n".encode())
    # The socket's readable *is* the body: bytes flow to the client as the service sends them.
    return Response(sock.readable, headers={"content-type": "text/plain; charset=utf-8"})


async def egress_probe(request: Request) -> Response:
    target = request.query.get("to", "169.254.169.254:80")
    sock = connect(target, connect_timeout=3)
    try:
        info = await sock.opened
    except EgressDeniedError as exc:
        return Response.json({"to": target, "decision": "denied", "reason": str(exc)})
    except ConnectError as exc:
        return Response.json({"to": target, "decision": "allowed", "result": str(exc)})
    finally:
        await sock.close()
    result = f"connected to {info.remote_address}"
    return Response.json({"to": target, "decision": "allowed", "result": result})
