"""Default time bounds on a request: ``wall_time`` for the response, ``wait_until_time`` after it.

Issue 8 item 9: without a default, ``ctx.wait_until(asyncio.sleep(10**6))`` kept each request
forever (2,000 requests: +34 MB never reclaimed, absent from the access log). Each test serves a
worker over real loopback HTTP and checks what the client, the log and the observers see.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from tcpworkers import Request, Response
from tcpworkers.runtime import ExecutionContext, Limits, RuntimeSettings
from tcpworkers.testing import serve_worker

from ..waiting import eventually
from .worker_helpers import Recorder


async def linger_forever() -> None:
    await asyncio.sleep(10**6)


async def fetch(request: Request, env: object, ctx: ExecutionContext) -> Response:
    if request.path == "/slow-handler":
        await asyncio.sleep(10**6)
    if request.path == "/lingering":
        ctx.wait_until(linger_forever())
        ctx.wait_until(asyncio.sleep(10**6))
    if request.path == "/quick-work":
        ctx.wait_until(asyncio.sleep(0))
    return Response("ok")


def limits(**values: float) -> RuntimeSettings:
    return RuntimeSettings(limits=Limits(**values))  # type: ignore[arg-type]


def warnings_about(caplog: pytest.LogCaptureFixture, fragment: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and fragment in r.getMessage()
    ]


@pytest.mark.unit
def test_the_defaults_bound_every_request() -> None:
    assert Limits().wall_time == 30.0
    assert Limits().wait_until_time == 30.0


async def test_a_handler_over_wall_time_gets_504_and_one_line_naming_what_ran(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    settings = limits(wall_time=0.3)
    async with serve_worker(fetch, settings, observers=[recorder]) as server:
        response = await server.client.get("/slow-handler")
        assert response.status_code == 504
        (record,) = await recorder.wait_for(1)
    assert record.status == 504
    (line,) = warnings_about(caplog, "wall_time")
    assert "GET /slow-handler" in line
    assert "0.3s" in line
    # What was still running: the handler, where it was waiting.
    assert "fetch" in line
    assert "test_time_limits.py" in line


async def test_wait_until_work_is_bounded_after_the_response(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    # The response has 5 s; the work after it 0.3 s: a separate bound, not what is left.
    settings = limits(wall_time=5, wait_until_time=0.3)
    async with serve_worker(fetch, settings, observers=[recorder]) as server:
        loop = asyncio.get_running_loop()
        response = await server.client.get("/lingering")
        sent_at = loop.time()
        assert response.text == "ok"
        (record,) = await recorder.wait_for(1, timeout=5)
        ended_after = loop.time() - sent_at
    assert record.status == 200  # in the access log, with its real status
    assert ended_after < 5  # ended by wait_until_time, not by what was left of wall_time
    (line,) = warnings_about(caplog, "wait_until_time")
    assert "GET /lingering" in line
    assert "0.3s" in line
    assert "2 ctx.wait_until tasks" in line
    assert "linger_forever" in line  # what was still running, by name
    assert "sleep" in line


async def test_wait_until_work_that_finishes_is_not_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    async with serve_worker(fetch, limits(wait_until_time=0.3), observers=[recorder]) as server:
        assert (await server.client.get("/quick-work")).text == "ok"
        await recorder.wait_for(1)
    assert warnings_about(caplog, "wait_until") == []


@pytest.mark.slow  # 200 requests, each held until its wait_until_time
async def test_many_lingering_requests_are_all_reclaimed() -> None:
    recorder = Recorder()
    settings = limits(wait_until_time=0.2)
    async with serve_worker(fetch, settings, observers=[recorder]) as server:
        before = len(asyncio.all_tasks())
        responses = await asyncio.gather(*(server.client.get("/lingering") for _ in range(200)))
        assert {r.status_code for r in responses} == {200}
        records = await recorder.wait_for(200, timeout=20)
        assert len(records) == 200
        # Every request ended: none of its tasks (handler, pump, wait_until work) is left.
        await eventually(lambda: len(asyncio.all_tasks()) <= before, what="tasks reclaimed")
