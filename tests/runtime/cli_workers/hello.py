"""The worker the CLI tests serve: one route per behaviour under test."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from tcpworkers import Response, connect

log = logging.getLogger("hello_worker")

# How the streaming route paces itself: long enough to send SIGTERM in the middle.
CHUNKS = 20
CHUNK_DELAY = 0.05


async def stream() -> AsyncIterator[bytes]:
    for index in range(CHUNKS):
        yield f"chunk {index:02d}\n".encode()
        await asyncio.sleep(CHUNK_DELAY)


async def fetch(request: Any, env: Any, ctx: Any) -> Response:
    path = request.path
    if path == "/":
        return Response(f"hello {env.get('GREETING', 'world')}")
    if path == "/pid":
        return Response(str(os.getpid()))
    if path == "/stream":
        return Response(stream())
    if path == "/echo":
        # One round trip to the test's echo server: the access log counts it.
        async with connect(("127.0.0.1", int(env.ECHO_PORT))) as sock:
            await sock.writable.write(b"hello")
            reply = await sock.readable.readexactly(5)
        return Response(reply)
    if path == "/secret":
        log.warning("the api key is %s", env.API_KEY)
        return Response(f"secret has {len(env.API_KEY)} characters")
    if path == "/boom":
        raise RuntimeError(f"failed while holding {env.API_KEY}")
    return Response("not found", status=404)
