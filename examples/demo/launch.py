"""What ``scripts/demo`` runs: a database, the line service, then ``tcpworkers dev`` on the demo.

1. The database: ``DATABASE_URL`` when it is set; otherwise an embedded PostgreSQL
   (:class:`tcpworkers.localpg.LocalPostgres`) whose data directory lives in your state directory
   (``$XDG_STATE_HOME/tcpworkers/demo`` or ``~/.local/state/tcpworkers/demo``; as root
   ``/var/lib/tcpworkers/demo``; ``TCPWORKERS_DEMO_DIR`` overrides it) and is reused next time.
2. The line service ``/api/stream`` streams from (``ticker.py``), on a free loopback port.
3. ``tcpworkers dev examples/demo/worker.py`` (or ``serve`` with ``--serve``), with the database
   URL in its environment (``DATABASE_URL``) and the line service as ``--var TICKER=...``.

It prints where to open the demo and how to stop it; Ctrl-C (or SIGTERM) stops the server, the
line service and the database, in that order. Extra arguments go to ``tcpworkers``
(``scripts/demo --port 0``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from tcpworkers.errors import LocalPostgresError
from tcpworkers.localpg import LocalPostgres, find_binaries

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from ticker import start_ticker  # noqa: E402

_SERVING = re.compile(r"serving .* on (http://\S+)")


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


def state_dir() -> Path:
    """Where the demo keeps its database between runs."""
    if override := os.environ.get("TCPWORKERS_DEMO_DIR"):
        return Path(override)
    if os.geteuid() == 0:
        # PostgreSQL runs as an unprivileged user then, which cannot enter /root.
        return Path("/var/lib/tcpworkers/demo")
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "tcpworkers" / "demo"
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "tcpworkers" / "demo"


def start_database() -> tuple[str, LocalPostgres | None]:
    if url := os.environ.get("DATABASE_URL"):
        parts = urlsplit(url)
        say(f"database: DATABASE_URL ({parts.hostname or 'unix socket'}{parts.path})")
        return url, None
    binaries = find_binaries("auto", ssl=False)
    data = state_dir() / f"pg{binaries.major}"
    fresh = not (data / "PG_VERSION").exists()
    data.parent.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        data.parent.chmod(0o755)
    action = "creating (first run, a few seconds)" if fresh else "starting"
    say(f"database: {action} PostgreSQL {binaries.version} ({binaries.source}) in {data}")
    pg = LocalPostgres(data, user="demo", database="demo", auth="scram-sha-256")
    started = time.monotonic()
    pg.start()
    say(
        f"database: ready on 127.0.0.1:{pg.port} in {time.monotonic() - started:.1f} s "
        f"(SCRAM password role 'demo'; the data directory is kept for next time)"
    )
    return pg.dsn(), pg


def start_line_service() -> tuple[int, threading.Thread, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    ready: list[int] = []
    started = threading.Event()

    def run() -> None:
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(start_ticker())
        ready.append(server.sockets[0].getsockname()[1])
        started.set()
        loop.run_forever()
        server.close()
        loop.run_until_complete(server.wait_closed())
        loop.close()

    thread = threading.Thread(target=run, name="demo-ticker", daemon=True)
    thread.start()
    started.wait(10)
    say(f"line service: 127.0.0.1:{ready[0]} (what /api/stream streams from)")
    return ready[0], thread, loop


def tcpworkers_command(mode: str, extra: Sequence[str], ticker_port: int) -> list[str]:
    argv = [sys.executable, "-m", "tcpworkers.cli", mode, str(HERE / "worker.py")]
    return [*argv, "--var", f"TICKER=127.0.0.1:{ticker_port}", *extra]


def run_server(argv: list[str], database_url: str) -> int:
    env = dict(os.environ, DATABASE_URL=database_url, PYTHONUNBUFFERED="1")
    say("server: " + " ".join(["tcpworkers", *argv[3:]]))
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )

    def forward(signum: int, _frame: object) -> None:
        # SIGTERM whatever we got: a child started from a background job inherits an ignored
        # SIGINT, and the server shuts down gracefully on SIGTERM either way.
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    assert proc.stdout is not None
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").rstrip()
        print(line, flush=True)
        if match := _SERVING.search(line):
            url = match.group(1).rstrip(").,")
            print(
                f"\n  open {url}/   (the live page)\n"
                f"  try  curl {url}/api/entries\n"
                f"  stop Ctrl-C here, or: kill {os.getpid()}\n",
                flush=True,
            )
    return proc.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run the tcpworkers demo on an embedded PostgreSQL (or DATABASE_URL).",
        epilog="Other arguments go to tcpworkers dev/serve, e.g. --port 0.",
    )
    parser.add_argument("--serve", action="store_true", help="use `tcpworkers serve`, not dev")
    args, extra = parser.parse_known_args(argv)
    try:
        url, pg = start_database()
    except LocalPostgresError as exc:
        say(f"error: {exc}")
        return 1
    try:
        port, thread, loop = start_line_service()
        try:
            mode = "serve" if args.serve else "dev"
            status = run_server(tcpworkers_command(mode, extra, port), url)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
    finally:
        if pg is not None:
            say("database: stopping (data kept)")
            pg.stop()
    say("stopped")
    return 0 if status in (0, -signal.SIGINT, -signal.SIGTERM) else status


if __name__ == "__main__":
    sys.exit(main())
