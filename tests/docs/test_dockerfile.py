"""The Dockerfile's application, checked without a Docker engine (scripts/test builds the image
when one runs): what it copies exists, and the command it runs serves the default worker.

The container listens on 0.0.0.0:8080; here the same command runs on 127.0.0.1 with port 0.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from tests.runtime.cli_harness import run, tcpworkers

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def _args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE, re.MULTILINE))


def test_what_the_image_copies_exists() -> None:
    for source in re.findall(r"^COPY (.+) \S+$", DOCKERFILE, re.MULTILINE):
        for part in source.split():
            path = ROOT / part.replace("${APP_DIR}", _args()["APP_DIR"]).rstrip("/")
            assert path.exists(), part


def test_the_command_serves_on_every_interface_as_pid_1() -> None:
    cmd = json.loads(re.search(r"^CMD (.+)$", DOCKERFILE, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert cmd[:2] == ["sh", "-c"]
    assert cmd[2] == 'exec tcpworkers serve "$APP_WORKER" --host 0.0.0.0 --port 8080'
    assert re.search(r"^ENV APP_WORKER=\$\{WORKER\}$", DOCKERFILE, re.MULTILINE)
    assert "\nUSER worker\n" in DOCKERFILE


def test_the_default_worker_passes_check_in_serve_mode() -> None:
    args = _args()
    result = run("check", args["WORKER"], "--mode", "serve", cwd=ROOT / args["APP_DIR"])
    assert result.returncode == 0, result.stderr
    assert "mode:     serve" in result.stdout


def test_the_default_worker_serves() -> None:
    args = _args()
    with tcpworkers(
        "serve", args["WORKER"], "--host", "127.0.0.1", "--port", "0", cwd=ROOT / args["APP_DIR"]
    ) as server:
        response = httpx.get(server.url + "/", timeout=10)
    assert response.status_code == 400
    assert response.text.startswith("usage: /whois?q=")
