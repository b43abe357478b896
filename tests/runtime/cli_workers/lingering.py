"""A worker whose requests leave work running: for the shutdown and time-limit tests."""

from __future__ import annotations

import asyncio
from typing import Any

from tcpworkers import Response


async def report_later(what: str) -> None:
    await asyncio.sleep(10**6)
    print("never reached", what)


async def fetch(request: Any, env: Any, ctx: Any) -> Response:
    if request.path == "/linger":
        ctx.wait_until(report_later(request.url))
        return Response("lingering")
    if request.path == "/slow":
        print("slow: in the handler", flush=True)  # the test waits for this line
        await asyncio.sleep(10**6)
    return Response("ok")
