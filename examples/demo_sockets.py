"""The tcpworkers socket demo: plain TCP, TLS and a STARTTLS upgrade, all on this machine.

It starts three loopback servers from ``tcpworkers.testing`` (an echo server, a TLS echo server
with a throwaway CA, and a line-based server that upgrades to TLS on ``STARTTLS``), then talks to
each through ``tcpworkers.connect()`` and prints what happened. Run it with ``scripts/demo``.
"""

from __future__ import annotations

import asyncio

import tcpworkers
from tcpworkers import TlsOptions, connect
from tcpworkers.errors import ConnectError, TLSHandshakeError
from tcpworkers.testing import EchoServer, StartTlsServer, TestCA


def say(step: str, detail: str) -> None:
    print(f"  {step:<28} {detail}")


async def plain_tcp(server: EchoServer) -> None:
    print(f"1. plain TCP to the echo server at {server.address}")
    sock = connect(server.address)
    await sock.writable.write(b"hello, tcpworkers\n")  # queued until the connection opens
    info = await sock.opened
    say("opened", f"{info.local_address} -> {info.remote_address}")
    say("echoed", repr(await sock.readable.readuntil(b"\n")))
    await sock.writable.close()  # half-close: FIN to the server, reading goes on
    say("after half-close, read", repr(await sock.readable.read()))
    await sock.closed
    say("closed", "yes")


async def tls(server: EchoServer, ca: TestCA) -> None:
    print(f"2. TLS to the TLS echo server at {server.address}")
    options = TlsOptions(ca=ca.ca_pem, server_hostname="localhost")
    async with connect(server.address, secure_transport="on", tls=options) as sock:
        info = await sock.opened
        say("handshake done", f"verified the certificate for 'localhost' via {info.remote_address}")
        await sock.writable.write(b"over TLS\n")
        say("echoed", repr(await sock.readable.readuntil(b"\n")))
    untrusted = connect(server.address, secure_transport="on")  # system CAs: must fail
    try:
        await untrusted.opened
    except TLSHandshakeError as exc:
        say("without our CA", f"refused as it should be: {exc}")


async def starttls(server: StartTlsServer, ca: TestCA) -> None:
    print(f"3. STARTTLS with the line server at {server.address}")
    sock = connect(
        server.address,
        secure_transport="starttls",
        tls=TlsOptions(ca=ca.ca_pem, server_hostname="localhost"),
    )
    say("server says", repr(await sock.readable.readuntil()))
    await sock.writable.write(b"STARTTLS\n")
    say("server says", repr(await sock.readable.readuntil()))
    secure = sock.start_tls()
    info = await secure.opened
    say(
        "upgraded in place",
        f"same TCP connection {info.local_address} -> "
        f"{info.remote_address}; old socket upgraded={sock.upgraded}",
    )
    await secure.writable.write(b"now encrypted\n")
    say("echoed", repr(await secure.readable.readuntil()))
    await secure.close()


async def refused() -> None:
    print("4. a connection that fails")
    sock = connect("127.0.0.1:1")  # connect() itself never raises for network failures
    try:
        await sock.opened
    except ConnectError as exc:
        say("opened raised", str(exc))
    await sock.close()  # and close() is safe anyway


async def main() -> None:
    loop = asyncio.get_running_loop()
    print(f"tcpworkers {tcpworkers.__version__} on {type(loop).__module__}.{type(loop).__name__}")
    ca = TestCA()
    async with (
        EchoServer() as echo,
        EchoServer(ssl=ca.server_context()) as tls_echo,
        StartTlsServer(ca.server_context()) as line_server,
    ):
        await plain_tcp(echo)
        await tls(tls_echo, ca)
        await starttls(line_server, ca)
        await refused()
    print("done: every socket closed, every server stopped.")


if __name__ == "__main__":
    tcpworkers.run(main())
