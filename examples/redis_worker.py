"""A worker that counts visits in Redis with redis-py's asyncio client, unchanged.

``GET /`` (or any path) increments a counter per path and answers with it as JSON;
``GET /?reset=1`` deletes it first. redis-py opens its connection with
``asyncio.open_connection``, so on the gated event loop the runtime serves with, the connection
passes the egress policy, counts against the request's socket limit and is closed when the
request ends.

The server is ``REDIS_URL`` (``[vars]`` or ``--var``; as a secret when it holds a password), by
default ``redis://127.0.0.1:6379/0``. Run it::

    tcpworkers dev examples/redis_worker.py
    curl http://127.0.0.1:8787/hello
"""

from __future__ import annotations

import redis.asyncio as redis

from tcpworkers import Request, Response
from tcpworkers.runtime import Env, ExecutionContext

DEFAULT_URL = "redis://127.0.0.1:6379/0"
KEY_PREFIX = "tcpworkers:example:visits:"


async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    """Count a visit to ``request.path``; ``?reset=1`` starts the count again."""
    key = KEY_PREFIX + str(env.get("KEY_PREFIX", "")) + request.path
    client = redis.from_url(str(env.get("REDIS_URL", DEFAULT_URL)), socket_timeout=10)
    try:
        if request.query.get("reset") == "1":
            await client.delete(key)
        visits = await client.incr(key)
    finally:
        await client.aclose()
    return Response.json({"path": request.path, "visits": visits})
