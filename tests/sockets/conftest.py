"""Fixtures for the socket tests: a test CA and one echo peer per transport.

The conformance suite runs every rule over three transports, each a real loopback connection:
``plain`` (TCP), ``tls`` (TLS from the start, trustme CA) and ``starttls`` (a plaintext line
dialog, then ``start_tls()``). ``Peer.open()`` returns a socket that is ready to echo.
"""

from __future__ import annotations

import socket as _socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from tcpworkers import Socket, TlsOptions, connect
from tcpworkers.testing import EchoServer, StartTlsServer, TestCA


@pytest.fixture(scope="session")
def ca() -> TestCA:
    return TestCA()


@dataclass
class Peer:
    """An echo server and how to open a ready socket to it over one transport."""

    kind: str
    server: EchoServer | StartTlsServer
    ca: TestCA

    @property
    def half_closeable(self) -> bool:
        return self.kind == "plain"

    def connect(self, **kwargs: Any) -> Socket:
        """connect() with this transport's settings (not yet upgraded for starttls)."""
        if self.kind == "plain":
            return connect(self.server.address, **kwargs)
        tls = TlsOptions(ca=self.ca.ca_pem, server_hostname="localhost")
        mode = "on" if self.kind == "tls" else "starttls"
        return connect(self.server.address, secure_transport=mode, tls=tls, **kwargs)

    async def open(self, **kwargs: Any) -> Socket:
        """A socket whose next bytes are echoed (for starttls: already upgraded, not awaited)."""
        sock = self.connect(**kwargs)
        if self.kind != "starttls":
            return sock
        assert await sock.readable.readuntil() == b"READY\n"
        await sock.writable.write(b"STARTTLS\n")
        assert await sock.readable.readuntil() == b"GO\n"
        return sock.start_tls()


@pytest.fixture(params=["plain", "tls", "starttls"])
async def peer(request: pytest.FixtureRequest, ca: TestCA) -> AsyncIterator[Peer]:
    kind = request.param
    server: EchoServer | StartTlsServer
    if kind == "plain":
        server = EchoServer()
    elif kind == "tls":
        server = EchoServer(ssl=ca.server_context())
    else:
        server = StartTlsServer(ca.server_context())
    async with server:
        yield Peer(kind, server, ca)


@pytest.fixture
def blackhole() -> Iterator[tuple[str, int]]:
    """A loopback address whose connection attempts hang: a listener with a full backlog.

    Linux drops SYNs to a listener whose accept queue is full, so connect() neither succeeds
    nor fails until the client gives up: a black-holed address that never leaves the machine.
    """
    listener = _socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    filler = _socket.socket()
    filler.connect(address)  # takes the only backlog slot
    try:
        yield address
    finally:
        filler.close()
        listener.close()
