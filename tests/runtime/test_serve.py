"""``tcpworkers dev`` and ``serve`` as real processes, over real HTTP on 127.0.0.1.

Startup lines, access logs (text and JSON), secrets kept out of the log, metrics, ``--workers``,
graceful SIGTERM during a streaming response, and reload on edit.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .cli_harness import tcpworkers, worker

# Test tier: every test runs the CLI as a subprocess; see tests/_tiers.py.
pytestmark = pytest.mark.slow

HELLO = worker("hello.py")
SECRET = "correct-horse-battery-staple"


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture(scope="module")
def echo_port() -> Iterator[int]:
    """A threaded TCP echo server on 127.0.0.1 for workers to connect to."""
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def secret_config(tmp_path: Path) -> Path:
    path = tmp_path / "tcpworkers.toml"
    path.write_text('[secrets]\nAPI_KEY = "HELLO_API_KEY"\n')
    return path


def get(url: str, timeout: float = 10.0) -> httpx.Response:
    # A fresh connection per request: a reload or another process may have closed the last.
    return httpx.get(url, timeout=timeout, headers={"connection": "close"})


def json_lines(output: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_dev_serves_a_worker_and_logs_each_request(echo_port: int) -> None:
    with tcpworkers(
        "dev", HELLO, "--port", "0", "--no-reload", "--var", "GREETING=tests",
        "--var", f"ECHO_PORT={echo_port}",
    ) as server:  # fmt: skip
        response = get(server.url + "/")
        assert response.status_code == 200
        assert response.text == "hello tests"
        assert get(server.url + "/echo").text == "hello"
        assert get(server.url + "/missing").status_code == 404
        server.wait_for(r"^GET /missing 404 ")
    lines = server.output.splitlines()
    startup = (
        rf"tcpworkers dev: serving {re.escape(HELLO)} on {re.escape(server.url)} "
        r"\(egress: dev, metrics: /__tcpworkers/metrics\)"
    )
    assert any(re.fullmatch(startup, line) for line in lines), server.output
    assert any(re.fullmatch(r"GET / 200 \d+\.\dms sockets=0 out=0B in=0B", line) for line in lines)
    assert any(
        re.fullmatch(r"GET /echo 200 \d+\.\d+m?s sockets=1 out=5B in=5B", line) for line in lines
    ), server.output


def test_dev_shows_tracebacks_but_the_log_keeps_secrets_out(secret_config: Path) -> None:
    with tcpworkers(
        "dev", HELLO, "--port", "0", "--no-reload", "--config", str(secret_config),
        env={"HELLO_API_KEY": SECRET},
    ) as server:  # fmt: skip
        response = get(server.url + "/secret")
        assert response.text == f"secret has {len(SECRET)} characters"
        boom = get(server.url + "/boom")
        assert boom.status_code == 500
        # dev puts the traceback in the response, secrets redacted as in the log (issue 8
        # item 14), for a browser too...
        assert "RuntimeError: failed while holding [redacted]" in boom.text
        assert SECRET not in boom.text
        page = httpx.get(server.url + "/boom", headers={"accept": "text/html"}, timeout=10)
        assert page.headers["content-type"].startswith("text/html")
        assert "failed while holding [redacted]" in page.text
        assert SECRET not in page.text
        server.wait_for(r"^GET /boom 500 .* error=RuntimeError$")
    # ...but the log shows no secret: not the worker's own log line, not the traceback the
    # runtime logs.
    assert "the api key is [redacted]" in server.output
    assert "RuntimeError: failed while holding [redacted]" in server.output
    assert SECRET not in server.output


def test_serve_logs_json(echo_port: int, tmp_path: Path) -> None:
    with tcpworkers("serve", HELLO, "--port", "0", "--var", f"ECHO_PORT={echo_port}") as server:
        assert get(server.url + "/").text == "hello world"
        # The serve preset allows public addresses only: the loopback echo server is refused.
        denied = get(server.url + "/echo")
        assert denied.status_code == 500
        assert denied.text == "Internal Server Error"  # no traceback outside dev
        server.wait_for(r'"path": "/echo"')
    entries = json_lines(server.output)
    assert entries, server.output
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    startup = next(e for e in entries if e["logger"] == "tcpworkers" and "url" in e)
    assert startup["url"] == server.url
    assert startup["message"] == (
        f"tcpworkers serve: serving {HELLO} on {server.url} (egress: serve, metrics: off)"
    )
    access = [e for e in entries if e["logger"] == "tcpworkers.access"]
    ok = next(e for e in access if e["path"] == "/")
    assert ok["level"] == "info"
    assert ok["method"] == "GET"
    assert ok["status"] == 200
    assert ok["sockets"] == 0
    assert ok["error"] is None
    assert isinstance(ok["duration_ms"], float)
    failed = next(e for e in access if e["path"] == "/echo")
    assert failed["level"] == "error"
    assert failed["status"] == 500
    assert failed["egress_denied"] == 1
    assert failed["error"] == "tcpworkers.errors.EgressDeniedError"
    # uvicorn's own messages are JSON too.
    assert any(e["logger"] == "uvicorn.error" for e in entries)


def test_metrics(echo_port: int) -> None:
    with tcpworkers(
        "dev", HELLO, "--port", "0", "--no-reload", "--var", f"ECHO_PORT={echo_port}"
    ) as server:
        for _ in range(3):
            assert get(server.url + "/").status_code == 200
        assert get(server.url + "/echo").status_code == 200
        assert get(server.url + "/missing").status_code == 404
        response = get(server.url + "/__tcpworkers/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    text = response.text
    assert 'tcpworkers_requests_total{method="GET",status="200"} 4\n' in text
    assert 'tcpworkers_requests_total{method="GET",status="404"} 1\n' in text
    assert "tcpworkers_request_duration_seconds_count 5\n" in text
    assert "tcpworkers_sockets_opened_total 1\n" in text
    assert "tcpworkers_sockets_open 0\n" in text
    assert 'tcpworkers_bytes_total{direction="in"} 5\n' in text
    assert 'tcpworkers_bytes_total{direction="out"} 5\n' in text
    assert "tcpworkers_connect_seconds_count 1\n" in text
    assert "tcpworkers_egress_denied_total 0\n" in text
    # The scrape itself is neither a worker request nor in the access log.
    assert "/__tcpworkers/metrics" not in "\n".join(
        line for line in server.output.splitlines() if line.startswith("GET ")
    )


def test_serve_has_no_metrics_unless_asked() -> None:
    with tcpworkers("serve", HELLO, "--port", "0") as server:
        assert get(server.url + "/__tcpworkers/metrics").status_code == 404  # the worker's
    with tcpworkers("serve", HELLO, "--port", "0", "--metrics", "/metrics") as server:
        response = get(server.url + "/metrics")
        assert response.status_code == 200
        assert "# TYPE tcpworkers_requests_total counter" in response.text
        assert "metrics: /metrics)" in server.output


def test_serve_with_two_workers_uses_two_processes() -> None:
    with tcpworkers("serve", HELLO, "--port", "0", "--workers", "2") as server:
        assert "workers: 2)" in server.output
        pids: set[str] = set()
        deadline = time.monotonic() + 20
        while len(pids) < 2 and time.monotonic() < deadline:
            pids.add(get(server.url + "/pid").text)
        assert len(pids) == 2, f"only {pids} answered; output:\n{server.output}"
        assert str(server.process.pid) not in pids  # the parent only supervises
        server.process.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_sigterm_lets_a_streaming_response_finish() -> None:
    with tcpworkers("serve", HELLO, "--port", "0", "--log-format", "text") as server:
        with httpx.stream("GET", server.url + "/stream", timeout=10) as response:
            chunks = response.iter_text()
            received = next(chunks)  # the response is under way
            server.process.send_signal(signal.SIGTERM)
            server.wait_for("Waiting for connections to close")
            # New connections are refused while the in-flight response finishes.
            with pytest.raises(httpx.ConnectError):
                get(server.url + "/")
            received += "".join(chunks)
        assert received == "".join(f"chunk {index:02d}\n" for index in range(20))
        assert server.wait() == 0
    assert re.search(r"^GET /stream 200 \d", server.output, re.MULTILINE)


def _edit_until(url: str, edit: Callable[[], object], done: Callable[[str], bool]) -> str:
    """Make ``edit`` until the response to ``url`` is ``done`` (or 10 s passed): the text.

    uvicorn's reloader starts watching a moment after the server process starts, so an edit
    made in that moment goes unseen; repeating it makes the test independent of that timing.
    """
    text = ""
    deadline = time.monotonic() + 10
    while not done(text) and time.monotonic() < deadline:
        edit()
        retry = time.monotonic() + 2
        while not done(text) and time.monotonic() < retry:
            time.sleep(0.1)
            with contextlib.suppress(httpx.HTTPError):  # between the old and new process
                text = get(url, timeout=2).text
    return text


def test_dev_reloads_when_the_worker_or_its_config_changes(tmp_path: Path) -> None:
    source = (
        "from tcpworkers import Response\n\n\n"
        "async def fetch(request, env, ctx):\n"
        "    return Response({text!r} + ' ' + env.get('GREETING', 'no greeting'))\n"
    )
    path = tmp_path / "reloading.py"
    path.write_text(source.format(text="first"))
    config = tmp_path / "tcpworkers.toml"
    with tcpworkers("dev", str(path), "--port", "0") as server:
        assert get(server.url).text == "first no greeting"
        text = _edit_until(
            server.url,
            lambda: path.write_text(source.format(text=f"second {time.monotonic()}")),
            lambda text: text.startswith("second"),
        )
        assert text.endswith(" no greeting"), server.output
        # tcpworkers.toml next to the worker is watched too, and read again on reload.
        text = _edit_until(
            server.url,
            lambda: config.write_text(f'[vars]\nGREETING = "hi {time.monotonic()}"\n'),
            lambda text: " hi " in text,
        )
        assert text.startswith("second"), server.output
