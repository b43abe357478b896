"""WorkerApp over real HTTP on loopback (uvicorn + httpx): handler shapes, errors, limits,
env and bindings, wait_until, and the request scope closing what the request left open."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from tcpworkers import Request, Response, connect
from tcpworkers.errors import CrossRequestError
from tcpworkers.runtime import (
    Env,
    ExecutionContext,
    Limits,
    RuntimeSettings,
    Worker,
    WorkerApp,
    load_worker,
)
from tcpworkers.scope import current_scope
from tcpworkers.testing import EchoServer, serve_worker

from .worker_helpers import FakeBinding, Recorder, worker_file

GREETING = RuntimeSettings(vars={"GREETING": "hi"})


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    async with EchoServer() as server:
        yield server


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- handler shapes --------------------------------------------------------------------------


async def test_fetch_shape() -> None:
    async with serve_worker(worker_file("fetch_worker.py")) as server:
        response = await server.client.post("/orders", content=b"")
    assert response.status_code == 200
    assert response.json() == {"shape": "fetch", "method": "POST", "path": "/orders"}


async def test_on_fetch_shapes() -> None:
    async with serve_worker(worker_file("on_fetch2_worker.py"), GREETING) as server:
        assert (await server.client.get("/")).text == "on_fetch/2 hi"
    async with serve_worker(worker_file("on_fetch3_worker.py")) as server:
        assert (await server.client.get("/")).text == "on_fetch/3 ExecutionContext"


async def test_default_entrypoint_gets_a_fresh_instance_per_request() -> None:
    async with serve_worker(worker_file("default_entrypoint_worker.py"), GREETING) as server:
        first = (await server.client.get("/")).json()
        second = (await server.client.get("/")).json()
    assert first["shape"] == "Default"
    assert first["var"] == "hi"
    assert first["instance"] != second["instance"]


async def test_single_entrypoint_with_wait_until() -> None:
    recorder = Recorder()
    async with serve_worker(worker_file("single_entrypoint_worker.py"), observers=[recorder]) as s:
        assert (await s.client.put("/", content=b"")).text == "orders PUT"
    (record,) = await recorder.wait_for(1)
    assert record.status == 200
    assert record.error is None


async def test_fastapi_app_runs_unchanged_in_a_scope(
    echo: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    worker = load_worker(worker_file("fastapi_worker.py"))
    assert worker.module is not None
    events = worker.module.EVENTS
    async with serve_worker(worker, GREETING, observers=[recorder]) as server:
        assert events == ["startup"]  # the app's lifespan was passed through
        response = await server.client.get("/hello/ada")
        assert response.json() == {"hello": "ada", "greeting": "hi"}
        opened = await server.client.get("/leave-open", params={"addr": echo.address})
        assert opened.json() == {"opened": True}
        (conn,) = await echo.wait_for_connections(1)
        await asyncio.wait_for(conn.closed.wait(), 5)  # the request's scope closed it
        failed = await server.client.get("/boom")
        assert failed.status_code == 500
    assert events == ["startup", "shutdown"]
    records = await recorder.wait_for(3)
    assert [r.status for r in records] == [200, 200, 500]
    assert records[1].stats.sockets_opened == 1
    assert records[1].stats.closed_at_end == 1
    assert isinstance(records[2].error, RuntimeError)
    assert any("fastapi handler failed" in str(r.exc_info) for r in errors_logged(caplog))


async def test_starlette_app_found_under_another_name() -> None:
    async with serve_worker(worker_file("starlette_worker.py"), GREETING) as server:
        assert (await server.client.get("/")).text == "starlette hi"


async def test_cloudflare_python_worker_runs_unchanged() -> None:
    worker = load_worker(worker_file("cloudflare_worker.py"))
    assert worker.module is not None
    async with serve_worker(worker, GREETING) as server:
        hello = await server.client.get("/")
        created = await server.client.post("/", json={"n": 1})
        moved = await server.client.get("/old")
    assert (hello.text, hello.headers["x-worker"]) == ("Hello World!", "cloudflare")
    assert created.status_code == 201
    assert created.json() == {"echo": {"n": 1}, "name": "hi"}
    assert (moved.status_code, moved.headers["location"]) == (301, "https://example.com/new")
    audited = worker.module.AUDITED  # ctx.waitUntil ran for each request
    assert audited == [f"{server.url}/", f"{server.url}/", f"{server.url}/old"]


# -- requests and responses over HTTP --------------------------------------------------------


async def handler(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    if request.path == "/echo":
        return Response(request, headers={"content-type": "application/octet-stream"})
    if request.path == "/info":
        return Response.json(
            {
                "url": request.url,
                "method": request.method,
                "query": request.query,
                "ua": request.headers.get("user-agent"),
                "text": await request.text(),
            }
        )
    if request.path == "/limited":
        return Response(await request.bytes(max_size=1000))
    if request.path == "/stream":

        async def body() -> AsyncIterator[bytes]:
            for i in range(3):
                yield f"part{i};".encode()

        return Response(body())
    if request.path == "/redirect":
        return Response.redirect("/elsewhere", 307)
    return Response("hello", headers={"x-multi": "a"})


async def test_request_fields_and_body_over_http() -> None:
    async with serve_worker(handler) as server:
        response = await server.client.post(
            "/info?a=1&b=two%20words", content="héllo".encode(), headers={"user-agent": "t/1"}
        )
    assert response.json() == {
        "url": f"{server.url}/info?a=1&b=two%20words",
        "method": "POST",
        "query": {"a": "1", "b": "two words"},
        "ua": "t/1",
        "text": "héllo",
    }


async def test_request_body_streams_back_with_backpressure() -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB

    async def upload() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 100_000):
            yield payload[i : i + 100_000]

    async with serve_worker(handler) as server:
        response = await server.client.post("/echo", content=upload())
    assert response.content == payload


async def test_streamed_and_redirect_responses() -> None:
    async with serve_worker(handler) as server:
        streamed = await server.client.get("/stream")
        redirect = await server.client.get("/redirect")
    assert streamed.text == "part0;part1;part2;"
    assert streamed.headers["transfer-encoding"] == "chunked"
    assert (redirect.status_code, redirect.headers["location"]) == (307, "/elsewhere")


async def test_body_over_the_limit_is_413() -> None:
    async def chunked() -> AsyncIterator[bytes]:
        yield b"x" * 700
        yield b"x" * 700

    async with serve_worker(handler) as server:
        announced = await server.client.post("/limited", content=b"x" * 2000)
        streamed = await server.client.post("/limited", content=chunked())
        fine = await server.client.post("/limited", content=b"x" * 1000)
    assert announced.status_code == 413
    assert "max_size=1000" in announced.text
    assert streamed.status_code == 413
    assert fine.status_code == 200
    assert len(fine.content) == 1000


async def test_head_sends_headers_only_and_does_not_read_a_stream() -> None:
    iterated: list[bool] = []

    async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response:
        if request.path == "/stream":

            async def body() -> AsyncIterator[bytes]:
                iterated.append(True)
                yield b"never"

            return Response(body())
        return Response("hello")

    async with serve_worker(fetch) as server:
        head = await server.client.head("/")
        stream = await server.client.head("/stream")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == "5"
    assert stream.status_code == 200
    assert stream.content == b""
    assert not iterated


# -- errors ----------------------------------------------------------------------------------


async def failing(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    if request.path == "/none":
        return 42  # type: ignore[return-value]
    return Response(str(1 / 0))


async def test_handler_exception_is_500_with_traceback_in_dev(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    async with serve_worker(failing, observers=[recorder]) as server:
        response = await server.client.get("/x")
    assert response.status_code == 500
    assert "Traceback" in response.text
    assert "ZeroDivisionError" in response.text
    assert "in failing" in response.text
    assert "GET /x" in response.text
    (record,) = await recorder.wait_for(1)
    assert record.status == 500
    assert isinstance(record.error, ZeroDivisionError)
    (logged,) = errors_logged(caplog)
    assert logged.name == "tcpworkers.runtime"
    assert logged.exc_info is not None


async def test_handler_exception_is_a_plain_500_in_serve(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with serve_worker(failing, RuntimeSettings(mode="serve")) as server:
        response = await server.client.get("/x")
    assert (response.status_code, response.text) == (500, "Internal Server Error")
    (logged,) = errors_logged(caplog)  # still in the log, with the traceback
    assert logged.exc_info is not None
    assert logged.exc_info[0] is ZeroDivisionError


async def test_returning_something_else_than_a_response_is_500_saying_so() -> None:
    async with serve_worker(failing) as server:
        response = await server.client.get("/none")
    assert response.status_code == 500
    assert "returned int (42)" in response.text
    assert "must return a tcpworkers.Response" in response.text


async def test_wall_time_limit_is_504_when_nothing_was_sent() -> None:
    async def slow(request: Request, env: Env, ctx: ExecutionContext) -> Response:
        await asyncio.sleep(30)
        return Response("late")

    recorder = Recorder()
    settings = RuntimeSettings(limits=Limits(wall_time=0.2))
    async with serve_worker(slow, settings, observers=[recorder]) as server:
        response = await server.client.get("/")
    assert response.status_code == 504
    assert "0.2s" in response.text
    (record,) = await recorder.wait_for(1)
    assert record.status == 504
    assert isinstance(record.error, TimeoutError)
    assert record.duration < 5


async def test_wall_time_limit_aborts_a_response_in_progress() -> None:
    async def dribble(request: Request, env: Env, ctx: ExecutionContext) -> Response:
        async def body() -> AsyncIterator[bytes]:
            yield b"first"
            await asyncio.sleep(30)
            yield b"never"

        return Response(body())

    recorder = Recorder()
    settings = RuntimeSettings(limits=Limits(wall_time=0.3))
    async with serve_worker(dribble, settings, observers=[recorder]) as server:
        with pytest.raises(httpx.RemoteProtocolError):  # the chunked body never ended
            await server.client.get("/")
    (record,) = await recorder.wait_for(1)
    assert isinstance(record.error, TimeoutError)


async def test_wait_until_time_cancels_wait_until_work(caplog: pytest.LogCaptureFixture) -> None:
    cancelled = asyncio.Event()

    async def lingering(request: Request, env: Env, ctx: ExecutionContext) -> Response:
        async def forever() -> None:
            try:
                await asyncio.sleep(30)
            finally:
                cancelled.set()

        ctx.wait_until(forever())
        return Response("sent")

    recorder = Recorder()
    settings = RuntimeSettings(limits=Limits(wait_until_time=0.2))
    async with serve_worker(lingering, settings, observers=[recorder]) as server:
        assert (await server.client.get("/")).text == "sent"
        await recorder.wait_for(1)
    assert cancelled.is_set()
    assert any("past wait_until_time of 0.2s" in r.getMessage() for r in caplog.records)


async def test_an_observer_that_raises_is_logged_not_fatal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken:
        def request_finished(self, record: object) -> None:
            raise RuntimeError("observer bug")

    recorder = Recorder()
    async with serve_worker(handler, observers=[Broken(), recorder]) as server:
        assert (await server.client.get("/")).status_code == 200
        await recorder.wait_for(1)  # the next observer still heard about it
    assert any("observer" in r.getMessage() for r in errors_logged(caplog))


# -- env and bindings ------------------------------------------------------------------------


async def show_env(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    return Response.json(
        {"name": env.NAME, "key": env["API_KEY"], "db_started": env.DB.started, "n": len(env)}
    )


async def test_env_vars_secrets_and_bindings_started_and_stopped() -> None:
    db = FakeBinding()
    settings = RuntimeSettings(vars={"NAME": "shop"}, secrets={"API_KEY": "k"})
    async with serve_worker(show_env, settings, bindings={"DB": db}) as server:
        assert db.events == ["start"]  # at lifespan startup, before any request
        response = await server.client.get("/")
    assert response.json() == {"name": "shop", "key": "k", "db_started": True, "n": 3}
    assert db.events == ["start", "stop"]


async def test_a_binding_that_fails_to_start_fails_the_server_start() -> None:
    good, bad = FakeBinding(), FakeBinding(fail=True)
    with pytest.raises(RuntimeError, match="failed to start"):
        async with serve_worker(show_env, bindings={"A": good, "B": bad}):
            pass  # pragma: no cover
    assert good.events == ["start", "stop"]  # rolled back


async def test_bindings_start_on_the_first_request_without_lifespan() -> None:
    db = FakeBinding()
    settings = RuntimeSettings(vars={"NAME": "shop"}, secrets={"API_KEY": "k"})
    app = WorkerApp(Worker.from_object(show_env), settings, bindings={"DB": db})
    # httpx's ASGI transport sends no lifespan events, like a server with lifespan off.
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses = await asyncio.gather(client.get("/"), client.get("/"))
    assert [r.json()["db_started"] for r in responses] == [True, True]
    assert db.events == ["start"]  # once, although two requests raced for it
    assert db.scopes == [None]  # not inside the request that triggered it
    await app.shutdown()
    assert db.events == ["start", "stop"]


def test_bindings_must_follow_the_protocol() -> None:
    with pytest.raises(TypeError, match="Binding protocol"):
        WorkerApp(Worker.from_object(show_env), RuntimeSettings(), bindings={"X": object()})  # type: ignore[dict-item]


# -- the request scope -----------------------------------------------------------------------


async def test_sockets_left_open_are_closed_when_the_request_ends(echo: EchoServer) -> None:
    async def leave_open(request: Request, env: Env, ctx: ExecutionContext) -> Response:
        sock = connect(echo.address)
        await sock.writable.write(b"ping")
        reply = await sock.readable.readexactly(4)
        return Response(reply)  # sock is never closed by the handler

    recorder = Recorder()
    async with serve_worker(leave_open, observers=[recorder]) as server:
        assert (await server.client.get("/")).content == b"ping"
        (conn,) = await echo.wait_for_connections(1)
        await asyncio.wait_for(conn.closed.wait(), 5)
    (record,) = await recorder.wait_for(1)
    assert record.stats.sockets_opened == 1
    assert record.stats.closed_at_end == 1
    assert record.stats.bytes_out == 4
    assert record.stats.bytes_in == 4


async def test_scope_ends_after_wait_until_and_before_the_record(echo: EchoServer) -> None:
    release = asyncio.Event()
    opened = asyncio.Event()
    log: list[str] = []

    async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response:
        async def later() -> None:
            sock = connect(echo.address)  # belongs to the request, left open
            await sock.opened
            opened.set()
            await release.wait()
            log.append(f"wait_until done, scope {current_scope() is not None}")

        ctx.wait_until(later())
        return Response("sent")

    class Observer:
        def request_finished(self, record: object) -> None:
            log.append("record")

    recorder = Recorder()
    async with serve_worker(fetch, observers=[Observer(), recorder]) as server:
        assert (await server.client.get("/")).text == "sent"  # not held back by wait_until
        await asyncio.wait_for(opened.wait(), 5)
        (conn,) = await echo.wait_for_connections(1)
        await asyncio.sleep(0.05)
        assert not conn.closed.is_set()  # the request is not over: its socket stays open
        assert log == []
        release.set()
        await asyncio.wait_for(conn.closed.wait(), 5)  # closed once wait_until finished
        (record,) = await recorder.wait_for(1)
    assert log == ["wait_until done, scope True", "record"]
    assert record.status == 200
    assert record.stats.closed_at_end == 1


async def test_a_socket_from_another_request_raises_cross_request_error(
    echo: EchoServer,
) -> None:
    recorder = Recorder()
    async with serve_worker(worker_file("cross_request_worker.py"), observers=[recorder]) as s:
        assert (await s.client.get("/open", params={"addr": echo.address})).text == "opened"
        response = await s.client.get("/use")
    assert response.status_code == 500
    assert "CrossRequestError" in response.text
    assert "pool binding" in response.text
    records = {record.path: record for record in await recorder.wait_for(2)}
    assert records["/open"].error is None
    assert isinstance(records["/use"].error, CrossRequestError)


async def test_client_leaving_during_the_handler_cancels_it(
    echo: EchoServer, caplog: pytest.LogCaptureFixture
) -> None:
    cancelled = asyncio.Event()

    async def stuck(request: Request, env: Env, ctx: ExecutionContext) -> Response:
        sock = connect(echo.address)
        await sock.opened
        try:
            await asyncio.sleep(30)
        finally:
            cancelled.set()
        return Response("late")  # pragma: no cover

    recorder = Recorder()
    async with serve_worker(stuck, observers=[recorder]) as server:
        with pytest.raises(httpx.ReadTimeout):
            await server.client.get("/", timeout=0.3)
        await asyncio.wait_for(cancelled.wait(), 5)
        (conn,) = await echo.wait_for_connections(1)
        await asyncio.wait_for(conn.closed.wait(), 5)
        (record,) = await recorder.wait_for(1)
    assert record.status == 499
    assert record.error is None
    assert errors_logged(caplog) == []


async def test_expect_continue_is_answered_only_when_the_body_is_read() -> None:
    async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response:
        if request.path == "/refuse":
            await asyncio.sleep(0.05)  # checking credentials, say
            return Response("no", status=401)  # without touching the upload
        return Response(await request.bytes())

    async def send_headers(
        port: int, path: str
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        return reader, writer

    async with serve_worker(fetch) as server:
        reader, writer = await send_headers(server.port, "/refuse")
        status_line = await asyncio.wait_for(reader.readline(), 5)
        assert status_line == b"HTTP/1.1 401 Unauthorized\r\n"  # no "100 Continue" first
        writer.close()
        await writer.wait_closed()

        reader, writer = await send_headers(server.port, "/read")
        assert await asyncio.wait_for(reader.readline(), 5) == b"HTTP/1.1 100 Continue\r\n"
        assert await reader.readline() == b"\r\n"
        writer.write(b"hello")
        assert await reader.readline() == b"HTTP/1.1 200 OK\r\n"
        head = await reader.readuntil(b"\r\n\r\n")
        assert b"content-length: 5" in head
        assert await reader.readexactly(5) == b"hello"
        writer.close()
        await writer.wait_closed()


async def test_serve_worker_leaves_nothing_behind() -> None:
    started = asyncio.Event()

    async def slow(request: Request, env: Env, ctx: ExecutionContext) -> Response:
        started.set()
        await asyncio.sleep(0.2)
        return Response("finished")

    before = asyncio.all_tasks()
    app = WorkerApp(Worker.from_object(slow), RuntimeSettings())
    async with httpx.AsyncClient(trust_env=False) as own_client:
        async with serve_worker(app) as server:
            assert server.app is app
            assert server.url == f"http://127.0.0.1:{server.port}"
            in_flight = asyncio.create_task(own_client.get(server.url))
            await asyncio.wait_for(started.wait(), 5)
        # Leaving let the request in flight finish instead of cutting it off.
        assert (await in_flight).text == "finished"
    assert asyncio.all_tasks() - before == {asyncio.current_task()} - before
    with pytest.raises(ConnectionRefusedError):  # nobody listens on the port any more
        await asyncio.open_connection("127.0.0.1", server.port)
    with pytest.raises(ValueError, match="to the WorkerApp"):
        async with serve_worker(app, RuntimeSettings()):
            pass  # pragma: no cover
