"""One timer per application (``Watch`` in ``runtime/_exchange.py``): wall-time deadlines and the
receive pump start only for requests that run past the pump delay, and every request still gets
its own deadline, counted from its own start."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from tcpworkers import Request, Response
from tcpworkers.runtime import ExecutionContext, Limits, RuntimeSettings, Worker, WorkerApp
from tcpworkers.runtime._exchange import _PUMP_DELAY, Exchange
from tcpworkers.testing import serve_worker

from .worker_helpers import Recorder


async def fetch(request: Request, env: object, ctx: ExecutionContext) -> Response:
    if request.path == "/slow":
        await asyncio.sleep(30)
    return Response("ok")


async def test_a_wall_time_shorter_than_the_pump_delay_still_applies() -> None:
    wall_time = _PUMP_DELAY / 5
    recorder = Recorder()
    settings = RuntimeSettings(limits=Limits(wall_time=wall_time))
    async with serve_worker(fetch, settings, observers=[recorder]) as server:
        response = await server.client.get("/slow")
    assert response.status_code == 504
    (record,) = await recorder.wait_for(1)
    assert isinstance(record.error, TimeoutError)
    assert record.duration < 1  # (loop timers have a resolution of a millisecond: no lower bound)


async def test_each_request_gets_its_own_deadline_among_many() -> None:
    wall_time = 0.4
    recorder = Recorder()
    settings = RuntimeSettings(limits=Limits(wall_time=wall_time))
    async with serve_worker(fetch, settings, observers=[recorder]) as server:
        loop = asyncio.get_running_loop()

        async def timed(path: str) -> tuple[int, float, float]:
            started = loop.time()
            response = await server.client.get(path)
            return response.status_code, started, loop.time()

        first = asyncio.ensure_future(timed("/slow"))
        quick = [await timed("/") for _ in range(10)]
        await asyncio.sleep(0.15)
        second = asyncio.ensure_future(timed("/slow"))
        quick += [await timed("/") for _ in range(10)]
        results = [await first, await second]
    assert {status for status, _, _ in quick} == {200}
    for status, started, ended in results:
        assert status == 504
        assert wall_time <= ended - started < wall_time + 1
    # The second request's deadline counts from its own start, not the first one's.
    assert results[1][2] - results[0][2] >= 0.1


def test_one_app_served_on_one_loop_after_another() -> None:
    app = WorkerApp(
        Worker.from_object(fetch, name="slow"), RuntimeSettings(limits=Limits(wall_time=0.1))
    )

    async def one_request(wait: bool = True) -> int:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(30)  # no body, and the client never leaves
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": "/slow", "headers": []}
        if not wait:  # the loop ends (and cancels the request) before the app's timer fires
            pending.append(asyncio.ensure_future(app(scope, receive, send)))
            await asyncio.sleep(0)
            return 0
        await asyncio.wait_for(app(scope, receive, send), timeout=5)
        return int(sent[0]["status"])

    pending: list[asyncio.Future[None]] = []
    with asyncio.Runner() as runner:
        runner.run(one_request(wait=False))
    for _ in range(2):  # a new loop gets timers of its own
        with asyncio.Runner() as runner:
            assert runner.run(one_request()) == 504


async def _send_nothing(message: Any) -> None:
    pass


def _exchange(task: asyncio.Task[Any]) -> Exchange:
    scope = {"method": "GET", "path": "/", "headers": []}
    settings = RuntimeSettings()
    return Exchange(scope, _send_nothing, None, settings.policy, settings.limits, task, 0.0)


async def _cancelled_by(deadline: bool, server: bool) -> Exchange:
    task = asyncio.ensure_future(asyncio.sleep(30))
    exchange = _exchange(task)
    await asyncio.sleep(0)  # the task is waiting
    if deadline:
        exchange._time_up()  # what the deadline's timer calls
    if server:
        task.cancel()  # before the task runs again: both cancellations are pending
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return exchange


async def test_the_deadline_timer_cancels_the_task() -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(asyncio.sleep(30))
    exchange = _exchange(task)
    exchange.arm(loop, loop.time() + 0.01)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=5)
    assert task.cancelled()
    assert exchange.take_timeout_cancel(0)


async def test_a_deadline_cancellation_is_taken_as_the_deadlines() -> None:
    exchange = await _cancelled_by(deadline=True, server=False)
    assert exchange.take_timeout_cancel(0)
    assert not exchange.take_timeout_cancel(0)  # once


async def test_the_servers_cancellation_is_not_mistaken_for_the_deadline() -> None:
    exchange = await _cancelled_by(deadline=True, server=True)
    assert not exchange.take_timeout_cancel(0)  # the server's cancellation still stands
    assert (await _cancelled_by(deadline=False, server=True)).take_timeout_cancel(0) is False


async def test_a_deadline_after_the_response_is_done_does_nothing() -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(asyncio.sleep(0.05))
    exchange = _exchange(task)
    exchange.arm(loop, loop.time() + 0.01)
    exchange.disarm()  # the response finished first
    await task  # not cancelled
    assert not exchange._expiring
