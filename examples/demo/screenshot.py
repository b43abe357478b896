"""Save a screenshot of the demo's live page (``docs/images/demo.png``, shown in the README).

Runs the demo on a temporary embedded PostgreSQL, signs the guestbook, keeps some traffic going,
then has headless Chromium (through chromedriver, in real time) show ``/#tour`` for a few
seconds (the page runs its stream and egress panels) and takes the picture.
``scripts/demo-screenshot [PATH]``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

ROOT = Path(__file__).resolve().parents[2]
GUESTS = [
    ("ada", "pooled connections, no handshake per request"),
    ("grace", "streamed a socket straight into the response"),
    ("linus", "the gate said no to 169.254.169.254, as it should"),
]


def traffic(url: str, stop: threading.Event) -> None:
    with httpx.Client(base_url=url, timeout=10) as http:
        while not stop.is_set():
            http.get("/api/entries")


def main() -> int:
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "images" / "demo.png"
    state = Path(tempfile.mkdtemp(prefix="tcpw-demo-shot-"))
    state.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["TCPWORKERS_DEMO_DIR"] = str(state)
    try:
        with harness.run_demo(env=env) as demo:
            with httpx.Client(base_url=demo.url, timeout=10) as http:
                for name, message in GUESTS:
                    http.post("/api/entries", json={"name": name, "message": message})
            stop = threading.Event()
            workers = [threading.Thread(target=traffic, args=(demo.url, stop)) for _ in range(4)]
            for worker in workers:
                worker.start()
            try:
                with harness.browser() as browser:
                    browser.open(demo.url + "/#tour")
                    time.sleep(6)  # real seconds: the page measures requests per second
                    browser.screenshot(target)
            finally:
                stop.set()
                for worker in workers:
                    worker.join()
    finally:
        shutil.rmtree(state, ignore_errors=True)
    print(f"saved {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
