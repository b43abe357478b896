"""The demo as a user runs it: examples/demo/launch.py in a child process (embedded PostgreSQL,
the line service, ``tcpworkers dev``), its routes over real HTTP, and its live page in headless
Chromium."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ..pgserver import PgServer

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo"
sys.path.insert(0, str(DEMO))

import harness  # noqa: E402

# The demo runs as a child process (launch.py, PostgreSQL, tcpworkers dev).
pytestmark = pytest.mark.slow


def demo_env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(TCPWORKERS_DEMO_DIR=str(state), **extra)
    return env


@pytest.fixture(scope="module")
def state_dir() -> Iterator[Path]:
    # Reachable by the account PostgreSQL runs as when we are root (pytest's tmp is private).
    path = Path(tempfile.mkdtemp(prefix="tcpw-demo-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def demo(state_dir: Path) -> Iterator[harness.RunningDemo]:
    with harness.run_demo(env=demo_env(state_dir)) as running:
        yield running
    assert running.process.returncode == 0, running.text()


def test_the_guestbook_reads_and_writes_through_the_database(demo: harness.RunningDemo) -> None:
    with httpx.Client(base_url=demo.url, timeout=20) as http:
        signed = http.post("/api/entries", json={"name": "ada", "message": "hello from a test"})
        assert signed.status_code == 201, signed.text
        form = http.post("/api/entries", data={"name": "bob", "message": "a plain form post"})
        assert form.status_code == 303
        assert form.headers["location"] == "/"
        bad = http.post("/api/entries", json={"name": "", "message": "x"})
        assert bad.status_code == 400
        listed = http.get("/api/entries").json()
    assert listed["total"] >= 2
    assert [e["name"] for e in listed["entries"][:2]] == ["bob", "ada"]
    assert "(embedded) in " in demo.text() or "(system) in " in demo.text()


def test_a_socket_is_streamed_into_the_response(demo: harness.RunningDemo) -> None:
    arrivals: list[float] = []
    body = b""
    with (
        httpx.Client(base_url=demo.url, timeout=20) as http,
        http.stream("GET", "/api/stream?lines=12") as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_raw():
            arrivals.append(time.monotonic())
            body += chunk
    lines = body.decode().splitlines()
    assert len(lines) == 12
    assert lines[0].startswith('   1 !"#$%')
    # The service sends a line every 50 ms: the body arrived in pieces over time, not at once.
    assert len(arrivals) > 3
    assert arrivals[-1] - arrivals[0] > 0.3


def test_egress_decisions_are_reported(demo: harness.RunningDemo) -> None:
    ticker = re.search(r"line service: (127\.0\.0\.1:\d+)", demo.text())
    assert ticker is not None
    with httpx.Client(base_url=demo.url, timeout=20) as http:
        denied = http.get("/api/egress").json()
        allowed = http.get("/api/egress", params={"to": ticker.group(1)}).json()
        metrics = http.get("/__tcpworkers/metrics").text
    assert denied["decision"] == "denied"
    assert "link-local" in denied["reason"]
    assert allowed["decision"] == "allowed"
    assert allowed["result"].startswith("connected to 127.0.0.1:")
    assert re.search(r"^tcpworkers_egress_denied_total [1-9]", metrics, re.M), metrics


def test_the_live_page_renders_live_values_in_chromium(demo: harness.RunningDemo) -> None:
    with httpx.Client(base_url=demo.url, timeout=20) as http:
        http.post("/api/entries", json={"name": "chromium", "message": "rendered by a browser"})
        for _ in range(5):
            http.get("/api/entries")
        http.get("/api/egress")
    dom = harness.dump_dom(demo.url + "/")
    polls = re.search(r'id="live" data-polls="(\d+)" class="on"', dom)
    assert polls is not None, dom[:3000]
    assert int(polls.group(1)) >= 2  # it kept polling the runtime's metrics
    total = re.search(r'id="requests-total">(\d+)<', dom)
    assert total is not None
    assert int(total.group(1)) >= 7
    assert re.search(r'id="sockets-per-request">\d+\.\d\d<', dom)
    assert re.search(r'id="egress-denied" class="denied">[1-9]', dom)
    assert "<b>chromium</b><span>rendered by a browser</span>" in dom


def test_a_second_start_reuses_the_database_in_under_3_seconds(
    state_dir: Path, demo: harness.RunningDemo
) -> None:
    other = state_dir / "second"
    other.mkdir()
    other.chmod(0o755)
    for attempt in ("first", "second"):
        # The second run starts as `scripts/demo &` does: SIGINT ignored (its children too).
        background = attempt == "second"
        with (
            harness.run_demo(
                ["--port", "0"],  # with the reloader, as scripts/demo runs by default
                env=demo_env(other),
                as_background_job=background,
            ) as running,
            httpx.Client(base_url=running.url, timeout=20) as http,
        ):
            assert http.get("/api/entries").status_code == 200
        ready = re.search(r"database: ready on .* in ([\d.]+) s", running.text())
        assert ready is not None, running.text()
        if attempt == "second":
            assert "starting PostgreSQL" in running.text()
            assert float(ready.group(1)) < 3.0, running.text()
    assert (other / "pg18" / "PG_VERSION").exists() or any(other.glob("pg*/PG_VERSION"))
    assert not any(other.glob("pg*/postmaster.pid"))  # stopped with the demo
    assert running.process.returncode == 0, running.text()
    assert running.text().rstrip().endswith("demo: stopped")


def test_database_url_replaces_the_embedded_database_under_serve(
    scram_postgres: PgServer, state_dir: Path
) -> None:
    elsewhere = state_dir / "unused"
    env = demo_env(elsewhere, DATABASE_URL=scram_postgres.dsn())
    with (
        harness.run_demo(["--serve", "--port", "0"], env=env, stop_signal=signal.SIGTERM) as demo,
        httpx.Client(base_url=demo.url, timeout=20) as http,
    ):
        assert http.get("/api/entries").status_code == 200
        assert http.get("/api/stream?lines=2").text.count("\n") == 2  # serve allows the ticker
    assert "database: DATABASE_URL (127.0.0.1/tcpworkers)" in demo.text()
    assert "tcpworkers serve: serving" in demo.text()
    assert demo.process.returncode == 0, demo.text()  # `kill PID` stops it cleanly
    assert demo.text().rstrip().endswith("demo: stopped")
    assert not elsewhere.exists()


def test_the_live_page_in_a_real_time_browser_session(demo: harness.RunningDemo) -> None:
    stop = threading.Event()

    def traffic() -> None:
        with httpx.Client(base_url=demo.url, timeout=20) as http:
            while not stop.is_set():
                http.get("/api/entries")

    def until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 20
        while not condition():
            assert time.monotonic() < deadline, f"the page never showed {what}"
            time.sleep(0.2)

    with harness.browser() as page:
        page.open(demo.url + "/")
        load = threading.Thread(target=traffic)
        load.start()
        try:
            # Requests per second is measured over real seconds while requests arrive.
            until(lambda: float(page.text("rps")) > 1.0, "a request rate")
        finally:
            stop.set()
            load.join()
        # The guestbook form posts through the page's script and the list refreshes.
        page.run(
            "const f = document.getElementById('sign');"
            "f.name.value = 'webdriver'; f.message.value = 'typed in a real browser';"
            "f.requestSubmit();"
        )
        until(lambda: "typed in a real browser" in page.text("entries"), "the new entry")
        # The stream panel reads the streamed response as it arrives.
        page.run("document.getElementById('stream').click()")
        until(lambda: page.text("stream-out").count("\n") >= 40, "40 streamed lines")
