"""A worker that queries MySQL or MariaDB with asyncmy, unchanged, from inside the request handler.

``GET /`` answers with the server's version, the user it logged in as and the TLS version of the
connection (empty when plaintext); ``GET /squares?n=5`` runs a parameterised query (a recursive
CTE, which MySQL 8 and MariaDB 10.2+ both have) and returns the rows as JSON.

asyncmy opens its connection with ``loop.create_connection`` and, for TLS, re-connects the same
socket with ``create_connection(sock=..., ssl=...)``; on the gated event loop the runtime serves
with, that is one connection to the request: it passes the egress policy, counts against the
request's socket limit and is closed when the request ends, even if the handler forgot to.

Configuration (``[vars]``, ``--var``, or ``[secrets]`` when the URL holds a password):

- ``MYSQL_URL``: ``mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE``, by default
  ``mysql://root@127.0.0.1:3306/test``;
- ``MYSQL_CA_FILE``: a CA certificate (PEM) to require TLS, verifying the server's certificate
  and host name against it (verify-full). Unset: plaintext.

Run it::

    tcpworkers dev examples/mysql_worker.py
    curl 'http://127.0.0.1:8787/squares?n=5'
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncmy

from tcpworkers import Request, Response
from tcpworkers.runtime import Env, ExecutionContext

DEFAULT_URL = "mysql://root@127.0.0.1:3306/test"
MAX_ROWS = 1000


def connect_args(url: str, ca_file: str | None) -> dict[str, Any]:
    """asyncmy.connect() keyword arguments for a ``mysql://`` URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("mysql", "mariadb") or not parts.hostname:
        raise ValueError(f"MYSQL_URL must look like mysql://user:pw@host:3306/db, got {url!r}")
    args: dict[str, Any] = {
        "host": parts.hostname,
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
        "db": parts.path.lstrip("/") or None,
        "connect_timeout": 10,
    }
    if ca_file:
        args["ssl"] = ssl.create_default_context(cafile=ca_file)
    return args


async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    """Serve ``/`` (server, user, TLS version) and ``/squares?n=N``."""
    if request.path not in ("/", "/squares"):
        return Response("not found: try / or /squares?n=5", status=404)
    n_text = request.query.get("n", "10")
    if not n_text.isdigit() or not 1 <= int(n_text) <= MAX_ROWS:
        return Response(f"n must be a number from 1 to {MAX_ROWS}", status=400)
    ca_file = env.get("MYSQL_CA_FILE")
    args = connect_args(str(env.get("MYSQL_URL", DEFAULT_URL)), str(ca_file) if ca_file else None)
    conn = await asyncmy.connect(**args)
    try:
        async with conn.cursor() as cur:
            if request.path == "/":
                await cur.execute(
                    "SELECT VERSION(), CURRENT_USER(), "
                    "(SELECT VARIABLE_VALUE FROM information_schema.SESSION_STATUS "
                    "WHERE VARIABLE_NAME = 'Ssl_version')"
                )
                version, user, tls = await cur.fetchone()
                return Response.json({"version": version, "user": user, "tls": tls or ""})
            await cur.execute(
                "WITH RECURSIVE s (n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %s) "
                "SELECT n, n * n FROM s",
                (int(n_text),),
            )
            rows = await cur.fetchall()
        return Response.json([{"n": n, "square": square} for n, square in rows])
    finally:
        await conn.ensure_closed()
