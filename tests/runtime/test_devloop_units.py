"""Pieces of the dev loop, without a server: colour decisions, the quiet server log, the reload
line and the app that answers while the worker cannot load."""

from __future__ import annotations

import io
import json
import logging
import time

import httpx
import pytest

from tcpworkers.runtime._devloop import (
    ENV_RELOAD,
    QuietServerLog,
    load_error_app,
    reload_message,
)
from tcpworkers.runtime._terminal import AccessTextFormatter, TextFormatter, wants_colour

pytestmark = pytest.mark.unit


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert wants_colour(FakeTTY())
    assert not wants_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not wants_colour(FakeTTY())
    monkeypatch.setenv("NO_COLOR", "")  # empty means unset (no-color.org)
    assert wants_colour(FakeTTY())
    monkeypatch.setenv("TERM", "dumb")
    assert not wants_colour(FakeTTY())


def _record(level: int, message: str, name: str = "tcpworkers") -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, None, None)


def test_formatters_colour_levels_and_statuses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr("sys.stderr", FakeTTY())
    monkeypatch.setattr("sys.stdout", FakeTTY())
    text = TextFormatter("%(message)s", stream="stderr")
    assert text.format(_record(logging.ERROR, "boom")) == "\x1b[1m\x1b[31merror:\x1b[0m boom"
    assert "\x1b[36m" in text.format(_record(logging.INFO, "tcpworkers dev: serving on http://x"))
    access = AccessTextFormatter("%(message)s", stream="stdout")
    line = access.format(_record(logging.ERROR, "GET /x 503 1.0ms sockets=0"))
    assert line == "GET /x \x1b[31m503\x1b[0m 1.0ms sockets=0"
    monkeypatch.setenv("NO_COLOR", "1")
    plain = TextFormatter("%(message)s", stream="stderr")
    assert plain.format(_record(logging.ERROR, "boom")) == "error: boom"


def test_quiet_server_log_drops_only_life_cycle_lines() -> None:
    quiet = QuietServerLog()
    assert not quiet.filter(_record(logging.INFO, "Started server process [12]", "uvicorn.error"))
    assert not quiet.filter(_record(logging.INFO, "Application startup complete.", "uvicorn.error"))
    assert quiet.filter(_record(logging.WARNING, "Shutting down", "uvicorn.error"))
    assert quiet.filter(_record(logging.INFO, "Shutting down", "tcpworkers"))
    assert quiet.filter(_record(logging.INFO, "something else", "uvicorn.error"))


def test_reload_message() -> None:
    environ = {ENV_RELOAD: json.dumps({"at": time.time() - 0.012, "changed": ["worker.py"]})}
    message = reload_message(environ)
    assert message is not None
    assert message.startswith("reloaded worker.py (")
    assert message.endswith(" ms)")
    assert 12 <= int(message.split("(")[1].split()[0]) < 5000
    assert reload_message({}) is None
    assert reload_message({ENV_RELOAD: "garbage"}) is None


async def test_the_load_error_app_answers_every_request() -> None:
    try:
        compile("def fetch(:\n", "worker.py", "exec")
    except SyntaxError as exc:
        error = exc
    app = load_error_app(error, what="loading worker.py")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for path in ("/", "/anything?x=1"):
            response = await client.get(path)
            assert response.status_code == 500
            assert response.headers["content-type"].startswith("text/plain")
            assert "loading worker.py failed" in response.text
            assert "SyntaxError" in response.text
            assert "Fix the file and save it" in response.text
        page = await client.get("/", headers={"accept": "text/html"})
        assert page.headers["content-type"].startswith("text/html")
        assert "SyntaxError" in page.text
