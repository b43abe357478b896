"""A minimal HTTP/1.1 server in a child process, for the HTTP clients in bench_drivers.py.

Every response is ``200``, body ``ok``, ``Connection: close``: each request of the benchmark
opens a new connection, like the database drivers' requests. Run as a script, this module is the
child: it listens on 127.0.0.1 (port chosen by the OS), prints ``PORT <n>``, serves each
connection in a thread, and exits when its stdin reaches EOF (so it cannot outlive the
benchmark). :class:`HttpPeer` starts and stops it.
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Final

from _common import stop_child

_RESPONSE: Final = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
_START_TIMEOUT: Final = 15.0


class HttpPeer:
    """``with HttpPeer() as peer: ... peer.url ...``: the child server for the block."""

    def __init__(self) -> None:
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> HttpPeer:
        self._proc = subprocess.Popen(
            [sys.executable, "-u", str(Path(__file__).resolve())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], _START_TIMEOUT)
        line = self._proc.stdout.readline() if ready else b""
        if not line.startswith(b"PORT "):
            self.__exit__(None, None, None)
            raise RuntimeError("the HTTP peer did not report its port")
        self.url = f"http://127.0.0.1:{int(line.split()[1])}/"
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_child(proc)


def _serve_one(conn: socket.socket) -> None:
    with conn:
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                data += chunk
            conn.sendall(_RESPONSE)
            conn.shutdown(socket.SHUT_WR)
            while conn.recv(4096):
                pass
        except OSError:
            pass


def _main() -> None:
    def watch() -> None:
        try:
            while sys.stdin.buffer.read(4096):
                pass
        finally:
            os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve_one, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    _main()
