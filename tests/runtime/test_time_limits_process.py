"""Shutdown with work still running: ``tcpworkers serve`` as a process, stopped by SIGTERM.

Issue 8 item 9: cancelled ``ctx.wait_until`` work gives one log line each, a request cut off by
the shutdown gives one line, never "Exception in ASGI application" tracebacks, and nothing is
logged after uvicorn's "Finished server process".
"""

from __future__ import annotations

import re
import signal
import threading

import httpx
import pytest

from .cli_harness import tcpworkers, worker

pytestmark = pytest.mark.slow  # subprocesses

LINGERING = worker("lingering.py")


def test_sigterm_cancels_lingering_work_with_one_line_each_and_nothing_after() -> None:
    with tcpworkers(
        "serve", LINGERING, "--port", "0", "--log-format", "text", "--shutdown-timeout", "1"
    ) as server:
        for _ in range(2):
            assert httpx.get(server.url + "/linger", trust_env=False).text == "lingering"
        # A third request is still in its handler when the server is told to stop.
        answers: list[int | BaseException] = []

        def slow() -> None:
            try:
                answers.append(httpx.get(server.url + "/slow", trust_env=False).status_code)
            except httpx.HTTPError as exc:
                answers.append(exc)

        client = threading.Thread(target=slow)
        client.start()
        server.wait_for("slow: in the handler")
        server.process.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0
        client.join(10)
    assert answers == [503]  # an answer, not a dropped connection
    output = server.output
    lines = output.splitlines()
    assert "Exception in ASGI application" not in output
    assert "Traceback" not in output
    lines.remove("slow: in the handler")
    # One line per cancelled wait_until task, naming it, and one for the request cut off.
    cancelled = [line for line in lines if re.search(r"wait_until.*cancelled", line)]
    assert len(cancelled) == 2, output
    assert all("report_later" in line for line in cancelled), output
    assert len([line for line in lines if "GET /slow" in line and "shutdown" in line]) == 1, output
    # Nothing after the server's last word.
    finished = [i for i, line in enumerate(lines) if "Finished server process" in line]
    assert finished == [len(lines) - 1], output
