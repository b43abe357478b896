"""Prometheus metrics: what finished requests add up to, the live gauge, the ASGI endpoint."""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from tcpworkers.runtime._config import load_config
from tcpworkers.runtime._factory import build_app
from tcpworkers.runtime._metrics import CONTENT_TYPE, Metrics, MetricsEndpoint
from tcpworkers.runtime._settings import RequestRecord
from tcpworkers.scope import RequestScope, ScopeStats, use_scope

from .cli_harness import worker

HELLO = worker("hello.py")

Message = MutableMapping[str, Any]

# One sample line of the text exposition format: name, optional labels, value.
SAMPLE_RE = re.compile(r'[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? (\+Inf|[0-9.e+-]+)')


def record(
    method: str = "GET",
    status: int = 200,
    duration: float = 0.02,
    **stats: Any,
) -> RequestRecord:
    return RequestRecord(
        method=method, path="/x", status=status, duration=duration, stats=ScopeStats(**stats)
    )


def samples(text: str) -> dict[str, str]:
    result = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        assert SAMPLE_RE.fullmatch(line), f"not a valid sample line: {line!r}"
        name, value = line.rsplit(" ", 1)
        result[name] = value
    return result


def test_an_empty_registry_renders_every_family() -> None:
    text = Metrics().render()
    assert text.endswith("\n")
    for name, kind in [
        ("tcpworkers_requests_total", "counter"),
        ("tcpworkers_request_duration_seconds", "histogram"),
        ("tcpworkers_sockets_opened_total", "counter"),
        ("tcpworkers_sockets_open", "gauge"),
        ("tcpworkers_request_sockets_peak", "histogram"),
        ("tcpworkers_bytes_total", "counter"),
        ("tcpworkers_connect_seconds", "histogram"),
        ("tcpworkers_egress_denied_total", "counter"),
        ("tcpworkers_sockets_closed_at_end_total", "counter"),
    ]:
        assert f"# TYPE {name} {kind}\n" in text
        assert f"# HELP {name} " in text
    values = samples(text)
    assert values["tcpworkers_sockets_open"] == "0"
    assert values['tcpworkers_bytes_total{direction="in"}'] == "0"
    assert values["tcpworkers_request_duration_seconds_count"] == "0"
    assert values['tcpworkers_request_duration_seconds_bucket{le="+Inf"}'] == "0"


def test_requests_add_up() -> None:
    metrics = Metrics()
    metrics.request_finished(
        record(
            duration=0.003,
            sockets_opened=2,
            peak_open=2,
            bytes_in=1000,
            bytes_out=10,
            connect_seconds=0.002,
        )
    )
    metrics.request_finished(record(duration=0.2, sockets_denied=1, closed_at_end=1))
    metrics.request_finished(record("POST", 500, duration=3.0, sockets_opened=1, bytes_in=5))
    metrics.request_finished(record("BREW", 418, duration=0.01))
    values = samples(metrics.render())
    assert values['tcpworkers_requests_total{method="GET",status="200"}'] == "2"
    assert values['tcpworkers_requests_total{method="POST",status="500"}'] == "1"
    # A made-up method cannot create a new label value per client.
    assert values['tcpworkers_requests_total{method="OTHER",status="418"}'] == "1"
    assert values["tcpworkers_sockets_opened_total"] == "3"
    assert values['tcpworkers_bytes_total{direction="in"}'] == "1005"
    assert values['tcpworkers_bytes_total{direction="out"}'] == "10"
    assert values["tcpworkers_egress_denied_total"] == "1"
    assert values["tcpworkers_sockets_closed_at_end_total"] == "1"
    # Buckets are cumulative; "le" includes the bound itself.
    duration = "tcpworkers_request_duration_seconds"
    assert values[f'{duration}_bucket{{le="0.005"}}'] == "1"
    assert values[f'{duration}_bucket{{le="0.01"}}'] == "2"
    assert values[f'{duration}_bucket{{le="0.25"}}'] == "3"
    assert values[f'{duration}_bucket{{le="2.5"}}'] == "3"
    assert values[f'{duration}_bucket{{le="5"}}'] == "4"
    assert values[f'{duration}_bucket{{le="+Inf"}}'] == "4"
    assert values[f"{duration}_count"] == "4"
    assert float(values[f"{duration}_sum"]) == pytest.approx(3.213)
    # One connect observation per request that opened a connection.
    assert values["tcpworkers_connect_seconds_count"] == "2"
    assert values['tcpworkers_connect_seconds_bucket{le="0.0025"}'] == "2"
    assert float(values["tcpworkers_connect_seconds_sum"]) == pytest.approx(0.002)
    assert values['tcpworkers_request_sockets_peak_bucket{le="0"}'] == "3"
    assert values['tcpworkers_request_sockets_peak_bucket{le="2"}'] == "4"


class FakeConnection:
    """A ScopedResource that is open until closed."""

    bytes_in = 0
    bytes_out = 0

    def __init__(self) -> None:
        self.done = False

    def describe(self) -> str:
        return "fake connection"

    def is_done(self) -> bool:
        return self.done

    async def close(self) -> None:
        self.done = True

    def abort(self) -> None:
        self.done = True


async def test_the_open_sockets_gauge_follows_live_requests() -> None:
    metrics = Metrics()
    scope = RequestScope(max_sockets=3)
    metrics.request_started(scope)
    first, second = FakeConnection(), FakeConnection()
    await scope.acquire(first)
    await scope.acquire(second)
    assert metrics.sockets_open() == 2
    assert samples(metrics.render())["tcpworkers_sockets_open"] == "2"
    scope.release(first)
    assert metrics.sockets_open() == 1
    await scope.aclose()
    assert metrics.sockets_open() == 0


# --- the ASGI endpoint --------------------------------------------------------------------


class Recorder:
    """An inner ASGI app that records what reached it, opening a connection in a scope."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.open_during_response: int | None = None
        self.metrics: Metrics | None = None

    async def __call__(self, scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        self.seen.append(scope["type"] + " " + scope.get("path", ""))
        if scope["type"] != "http":
            return
        request = RequestScope()
        with use_scope(request):
            await request.acquire(FakeConnection())
            await send({"type": "http.response.start", "status": 204, "headers": []})
            assert self.metrics is not None
            self.open_during_response = self.metrics.sockets_open()
            await send({"type": "http.response.body", "body": b""})
        await request.aclose()


async def call(app: Any, scope: dict[str, Any]) -> list[Message]:
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


def http(method: str, path: str) -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "headers": []}


@pytest.fixture
def endpoint() -> tuple[MetricsEndpoint, Recorder]:
    inner = Recorder()
    metrics = Metrics()
    inner.metrics = metrics
    return MetricsEndpoint(inner, metrics, "/__tcpworkers/metrics"), inner


async def test_get_serves_the_exposition_format(endpoint: tuple[MetricsEndpoint, Recorder]) -> None:
    app, inner = endpoint
    app.metrics.request_finished(record())
    start, body = await call(app, http("GET", "/__tcpworkers/metrics"))
    assert start["status"] == 200
    headers = dict(start["headers"])
    assert headers[b"content-type"] == CONTENT_TYPE.encode()
    assert headers[b"content-length"] == str(len(body["body"])).encode()
    assert b'tcpworkers_requests_total{method="GET",status="200"} 1\n' in body["body"]
    assert inner.seen == []


async def test_head_has_no_body(endpoint: tuple[MetricsEndpoint, Recorder]) -> None:
    app, _ = endpoint
    start, body = await call(app, http("HEAD", "/__tcpworkers/metrics"))
    assert start["status"] == 200
    assert int(dict(start["headers"])[b"content-length"]) > 0
    assert body["body"] == b""


async def test_other_methods_are_refused(endpoint: tuple[MetricsEndpoint, Recorder]) -> None:
    app, inner = endpoint
    start, body = await call(app, http("POST", "/__tcpworkers/metrics"))
    assert start["status"] == 405
    assert dict(start["headers"])[b"allow"] == b"GET, HEAD"
    assert b"answers GET and HEAD" in body["body"]
    assert inner.seen == []


async def test_everything_else_reaches_the_app(endpoint: tuple[MetricsEndpoint, Recorder]) -> None:
    app, inner = endpoint
    sent = await call(app, http("GET", "/__tcpworkers/metricsx"))
    assert sent[0]["status"] == 204
    await call(app, {"type": "lifespan"})
    assert inner.seen == ["http /__tcpworkers/metricsx", "lifespan "]


async def test_requests_count_in_the_gauge_once_they_respond(
    endpoint: tuple[MetricsEndpoint, Recorder],
) -> None:
    app, inner = endpoint
    await call(app, http("GET", "/stream"))
    assert inner.open_during_response == 1
    assert app.metrics.sockets_open() == 0


def test_the_path_must_be_absolute() -> None:
    with pytest.raises(ValueError, match='the metrics path must start with "/"'):
        MetricsEndpoint(Recorder(), Metrics(), "metrics")


# --- the application the CLI builds (in process) ------------------------------------------


async def test_the_built_app_counts_worker_requests_and_serves_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = load_config("dev", HELLO, environ={})
    app = build_app(config)
    assert isinstance(app, MetricsEndpoint)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        assert (await client.get("/")).text == "hello world"
        assert (await client.get("/missing")).status_code == 404
        metrics = await client.get("/__tcpworkers/metrics")
    assert 'tcpworkers_requests_total{method="GET",status="200"} 1\n' in metrics.text
    assert 'tcpworkers_requests_total{method="GET",status="404"} 1\n' in metrics.text


def test_without_metrics_the_app_is_the_worker_app(tmp_path: Path) -> None:
    from tcpworkers.runtime import WorkerApp

    config = load_config("serve", HELLO, environ={})
    assert isinstance(build_app(config), WorkerApp)


async def test_a_worker_apps_sockets_count_in_the_gauge_before_it_responds() -> None:
    from tcpworkers import Request, Response, connect
    from tcpworkers.runtime import ExecutionContext, RuntimeSettings, Worker, WorkerApp
    from tcpworkers.testing import EchoServer

    metrics = Metrics()
    seen: list[int] = []

    async with EchoServer() as echo:

        async def fetch(request: Request, env: object, ctx: ExecutionContext) -> Response:
            sock = connect((echo.host, echo.port))
            await sock.opened
            seen.append(metrics.sockets_open())  # before the response starts
            await sock.close()
            seen.append(metrics.sockets_open())
            return Response("ok")

        inner = WorkerApp(
            Worker.from_object(fetch, name="w"), RuntimeSettings(), observers=[metrics]
        )
        app = MetricsEndpoint(inner, metrics, "/__tcpworkers/metrics")
        sent = await call(app, http("GET", "/"))
    assert sent[0]["status"] == 200
    assert seen == [1, 0]
    assert metrics.sockets_opened == 1


def test_a_request_record_is_immutable() -> None:
    finished = record()
    with pytest.raises(AttributeError):
        finished.status = 500  # type: ignore[misc]
    assert finished.status == 200


async def test_a_worker_app_shows_watchers_its_requests_and_tells_starters() -> None:
    from tcpworkers import Request, Response
    from tcpworkers.runtime import ExecutionContext, RuntimeSettings, Worker, WorkerApp

    class Starter:
        def __init__(self) -> None:
            self.started: list[RequestScope] = []

        def request_started(self, scope: RequestScope) -> None:
            self.started.append(scope)

        def request_finished(self, record: RequestRecord) -> None:
            pass

    metrics, starter = Metrics(), Starter()
    in_flight: list[int] = []

    async def fetch(request: Request, env: object, ctx: ExecutionContext) -> Response:
        in_flight.append(len(metrics._sources[0]()))
        return Response("ok")

    app = WorkerApp(
        Worker.from_object(fetch, name="w"), RuntimeSettings(), observers=[metrics, starter]
    )
    assert len(metrics._sources) == 1  # shown once, not told per request
    await call(app, http("GET", "/"))
    await call(app, http("GET", "/"))
    assert in_flight == [1, 1]
    assert metrics._sources[0]() == []  # both requests ended
    assert len(starter.started) == 2
    assert all(scope.closed for scope in starter.started)
