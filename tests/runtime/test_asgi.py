"""ASGI details: plain ASGI-app workers, their failures and limits, lifespan pass-through for
apps without lifespan support, WebSockets, and the public names."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import MutableMapping
from typing import Any

import httpx
import pytest

import tcpworkers
import tcpworkers.runtime
import tcpworkers.testing
from tcpworkers import Request, Response
from tcpworkers.runtime import (
    Env,
    ExecutionContext,
    Limits,
    RuntimeSettings,
    Worker,
    WorkerApp,
)
from tcpworkers.scope import current_scope
from tcpworkers.testing import serve_worker

from .worker_helpers import Recorder

Message = MutableMapping[str, Any]


async def plain_asgi(scope: Message, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        raise RuntimeError(f"no {scope['type']} here")  # no lifespan support at all
    if scope["path"] == "/boom":
        raise RuntimeError("asgi app failed")
    if scope["path"] == "/slow":
        await asyncio.sleep(30)
    body = f"scope={current_scope() is not None} env={scope['state']['env'].NAME}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


async def test_a_plain_asgi_app_runs_in_a_scope_with_env_in_state() -> None:
    settings = RuntimeSettings(vars={"NAME": "x"})
    async with serve_worker(plain_asgi, settings) as server:  # its lifespan error is tolerated
        response = await server.client.get("/")
    assert response.text == "scope=True env=x"


async def test_an_asgi_app_that_fails_before_responding_gets_a_500() -> None:
    recorder = Recorder()
    async with serve_worker(plain_asgi, observers=[recorder]) as server:
        response = await server.client.get("/boom")
    assert response.status_code == 500
    assert "asgi app failed" in response.text
    (record,) = await recorder.wait_for(1)
    assert record.status == 500
    assert isinstance(record.error, RuntimeError)


async def test_an_asgi_app_gets_the_wall_time_limit() -> None:
    recorder = Recorder()
    settings = RuntimeSettings(limits=Limits(wall_time=0.2))
    async with serve_worker(plain_asgi, settings, observers=[recorder]) as server:
        response = await server.client.get("/slow")
    assert response.status_code == 504
    (record,) = await recorder.wait_for(1)
    assert isinstance(record.error, TimeoutError)


async def deadline_asgi(scope: Message, receive: Any, send: Any) -> None:
    """Routes that meet the wall-time deadline (or a TimeoutError of their own) differently."""
    if scope["type"] != "http":
        raise RuntimeError(f"no {scope['type']} here")
    if scope["path"] == "/own-timeout":
        async with asyncio.timeout(0.01):
            await asyncio.sleep(30)
    if scope["path"] == "/swallow":
        # The app carries on after the deadline's cancellation, as under asyncio.timeout_at.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)
    if scope["path"] == "/mid-stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        await asyncio.sleep(30)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"late"})


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/own-timeout", 500, TimeoutError),  # its own timeout, not the deadline
        ("/swallow", 200, None),  # the deadline's cancellation swallowed: a normal response
    ],
)
async def test_an_asgi_apps_own_timeouts_are_not_the_deadline(
    path: str, status: int, error: type[BaseException] | None
) -> None:
    recorder = Recorder()
    settings = RuntimeSettings(limits=Limits(wall_time=0.3))
    async with serve_worker(deadline_asgi, settings, observers=[recorder]) as server:
        response = await server.client.get(path)
    assert response.status_code == status
    (record,) = await recorder.wait_for(1)
    assert record.status == status
    assert (type(record.error) if record.error else None) is error


async def test_an_asgi_app_over_its_wall_time_mid_stream_is_aborted() -> None:
    recorder = Recorder()
    settings = RuntimeSettings(limits=Limits(wall_time=0.2))
    async with serve_worker(deadline_asgi, settings, observers=[recorder]) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await server.client.get("/mid-stream")
    (record,) = await recorder.wait_for(1)
    assert isinstance(record.error, TimeoutError)


async def test_the_servers_cancellation_of_an_asgi_request_is_not_a_504() -> None:
    started = asyncio.Event()

    async def slow(scope: Message, receive: Any, send: Any) -> None:
        started.set()
        await asyncio.sleep(30)

    app = WorkerApp(Worker.from_object(slow), RuntimeSettings(limits=Limits(wall_time=5.0)))
    scope = {"type": "http", "method": "GET", "path": "/", "headers": [], "query_string": b""}
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    task = asyncio.ensure_future(app(scope, asyncio.Event().wait, send))
    await started.wait()
    task.cancel()  # the server's shutdown
    await task  # ends the request, not re-raised
    assert sent[0]["status"] == 503  # "the server is shutting down", not 504


async def test_a_handler_raising_its_own_cancelled_error_is_a_500() -> None:
    async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response:
        raise asyncio.CancelledError  # e.g. it awaited a task someone cancelled

    async with serve_worker(fetch) as server:
        response = await server.client.get("/")
    assert response.status_code == 500
    assert "CancelledError" in response.text


async def call(app: WorkerApp, scope: Message, incoming: list[Message]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        if incoming:
            return incoming.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


async def test_fetch_workers_refuse_websockets() -> None:
    async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response:
        return Response("x")  # pragma: no cover

    app = WorkerApp(Worker.from_object(fetch), RuntimeSettings())
    scope = {"type": "websocket", "path": "/ws", "headers": []}
    sent = await call(app, scope, [{"type": "websocket.connect"}])
    assert sent == [{"type": "websocket.close", "code": 1008}]


async def test_asgi_websockets_pass_through_in_a_scope() -> None:
    seen: list[object] = []

    async def ws_app(scope: Message, receive: Any, send: Any) -> None:
        assert scope["type"] == "websocket"
        seen.append(current_scope())
        seen.append(scope["state"]["env"].NAME)
        await receive()
        await send({"type": "websocket.accept"})

    app = WorkerApp(Worker.from_object(ws_app), RuntimeSettings(vars={"NAME": "n"}))
    scope = {"type": "websocket", "path": "/ws", "headers": []}
    sent = await call(app, scope, [{"type": "websocket.connect"}])
    assert sent == [{"type": "websocket.accept"}]
    assert seen[0] is not None
    assert seen[0].label == "WebSocket /ws"  # type: ignore[attr-defined]
    assert seen[1] == "n"


async def test_lifespan_startup_failure_of_the_app_is_reported() -> None:
    async def failing_lifespan(scope: Message, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    app = WorkerApp(Worker.from_object(failing_lifespan), RuntimeSettings())
    sent = await call(app, {"type": "lifespan", "state": {}}, [{"type": "lifespan.startup"}])
    assert sent == [
        {
            "type": "lifespan.startup.failed",
            "message": "the application's startup failed: no database",
        }
    ]


def test_worker_app_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="load_worker"):
        WorkerApp(plain_asgi, RuntimeSettings())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="RuntimeSettings"):
        WorkerApp(Worker.from_object(plain_asgi), {})  # type: ignore[arg-type]


def test_public_names() -> None:
    assert {"Headers", "Request", "Response", "WorkerEntrypoint"} <= set(tcpworkers.__all__)
    # The configuration/serving names are added next to these, so: a superset.
    assert set(tcpworkers.runtime.__all__) >= {
        "ACCEPTED_SHAPES",
        "Binding",
        "BodyTooLargeError",
        "BodyUsedError",
        "CLIENT_CLOSED_REQUEST",
        "ClientDisconnectedError",
        "DEFAULT_MAX_BODY_SIZE",
        "Env",
        "ExecutionContext",
        "Headers",
        "Limits",
        "Mode",
        "Request",
        "RequestObserver",
        "RequestRecord",
        "Response",
        "RuntimeSettings",
        "VarValue",
        "Worker",
        "WorkerApp",
        "WorkerEntrypoint",
        "WorkerKind",
        "WorkerLoadError",
        "install_workers_module",
        "load_worker",
        "workers_module",
    }
    for module in (tcpworkers, tcpworkers.runtime, tcpworkers.testing):
        assert all(getattr(module, name) is not None for name in module.__all__)
    assert {"serve_worker", "WorkerServer"} <= set(tcpworkers.testing.__all__)
    for error in ("BodyTooLargeError", "BodyUsedError", "ClientDisconnectedError"):
        assert issubclass(getattr(tcpworkers.runtime, error), tcpworkers.errors.TcpworkersError)
    assert issubclass(tcpworkers.runtime.WorkerLoadError, ValueError)


async def test_a_starlette_lifespan_that_fails_fails_the_start_cleanly() -> None:
    import contextlib

    from starlette.applications import Starlette

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> Any:
        raise RuntimeError("cannot reach the cache")
        yield  # pragma: no cover

    app = Starlette(lifespan=lifespan)
    with pytest.raises(RuntimeError, match="failed to start"):
        async with serve_worker(app):
            pass  # pragma: no cover
