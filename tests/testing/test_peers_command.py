"""``python -m tcpworkers.testing peers`` runs the servers the benchmark worker needs: the README's
instructions for examples/bench_worker.py, run for real (subprocesses on loopback)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.runtime.cli_harness import tcpworkers

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]


@contextlib.contextmanager
def peers() -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tcpworkers.testing",
            "peers",
            "--echo-port",
            "0",
            "--blast-port",
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().rstrip("\n") for _ in range(4)]
        yield process, lines
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def test_the_benchmark_worker_runs_against_the_peers() -> None:
    with peers() as (_, lines):
        echo = re.fullmatch(
            r"echo server on 127\.0\.0\.1:(\d+) \(sends back every byte\)", lines[0]
        )
        blast = re.fullmatch(r"blast server on 127\.0\.0\.1:(\d+) .*", lines[1])
        assert echo, lines
        assert blast, lines
        command = lines[2].split(": ", 1)[1].split()
        assert command[:3] == ["tcpworkers", "dev", "examples/bench_worker.py"]
        assert lines[3] == "Ctrl-C stops them"
        with tcpworkers(*command[1:], "--port", "0", "--no-reload", cwd=ROOT) as server:
            assert httpx.get(server.url + "/echo?size=100000", timeout=10).text == "100000"
            body = httpx.get(server.url + "/blast?mib=3", timeout=10).content
            assert body == bytes(3 << 20)


def test_sigterm_stops_the_peers() -> None:
    with peers() as (process, lines):
        assert lines[3] == "Ctrl-C stops them"
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0


def test_a_bad_request_to_the_blast_server_gets_the_usage() -> None:
    import socket

    with peers() as (_, lines):
        port = int(lines[1].split(":")[1].split()[0])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"lots\n")
            reply = sock.makefile("rb").read()
        assert reply == b"send the number of MiB to receive and a newline, e.g. 16\n"


def test_the_init_template_talks_to_the_echo_peer(tmp_path: Path) -> None:
    from tests.runtime.cli_harness import run

    assert run("init", str(tmp_path)).returncode == 0
    with peers() as (_, lines):
        port = int(lines[0].split(":")[1].split()[0])
        with tcpworkers(
            "dev", "--port", "0", "--no-reload", "--var", f"ECHO=127.0.0.1:{port}", cwd=tmp_path
        ) as server:
            assert httpx.get(server.url + "/tcp", timeout=10).text == "ping\n"
