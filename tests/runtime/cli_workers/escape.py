"""A worker that tries to get around its request's egress policy (issue 8 item 4).

``GET /?how=HOW&port=PORT`` tries to reach 127.0.0.1:PORT from outside the request's scope and
answers ``connected`` or ``denied: <error class names along the cause chain>``.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import tcpworkers
from tcpworkers import Response, connect


async def _connect(port: int) -> None:
    async with connect(("127.0.0.1", port)) as sock:
        await sock.opened


async def _driver(port: int) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()


async def _fetch(port: int) -> None:
    await tcpworkers.fetch(f"http://127.0.0.1:{port}/", timeout=5)


PROBES = {"connect": _connect, "driver": _driver, "fetch": _fetch}


def _names(exc: BaseException | None) -> str:
    names = []
    while exc is not None:
        names.append(type(exc).__name__)
        exc = exc.__cause__ or exc.__context__
    return ",".join(names)


async def fetch(request: Any, env: Any, ctx: Any) -> Response:
    how = request.query["how"]  # "request", "fresh", "thread"
    probe = PROBES[request.query.get("probe", "connect")](int(request.query["port"]))
    loop = asyncio.get_running_loop()
    try:
        if how == "request":
            await probe
        elif how == "fresh":
            await loop.create_task(probe, context=contextvars.Context())
        elif how == "thread":
            await loop.run_in_executor(None, asyncio.run, probe)
        else:
            return Response(f"unknown how={how}", status=400)
    except Exception as exc:
        return Response(f"denied: {_names(exc)}")
    return Response("connected")
