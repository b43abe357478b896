"""TLS and STARTTLS: verification failures, custom CA, mTLS, ALPN, and start_tls() misuse."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tcpworkers import Socket, TlsOptions, connect
from tcpworkers.errors import (
    ConnectError,
    SocketBusyError,
    SocketClosedError,
    StartTlsError,
    TLSHandshakeError,
)
from tcpworkers.testing import EchoServer, StartTlsServer, TestCA, untrusted_ca

from ..waiting import started


@pytest.fixture
async def tls_server(ca: TestCA) -> AsyncIterator[EchoServer]:
    async with EchoServer(ssl=ca.server_context()) as server:
        yield server


@pytest.fixture
async def starttls_server(ca: TestCA) -> AsyncIterator[StartTlsServer]:
    async with StartTlsServer(ca.server_context()) as server:
        yield server


async def negotiate(sock: Socket) -> None:
    """The plaintext part of the StartTlsServer dialog, up to the go-ahead."""
    assert await sock.readable.readuntil() == b"READY\n"
    await sock.writable.write(b"STARTTLS\n")
    assert await sock.readable.readuntil() == b"GO\n"


async def test_unknown_ca_fails_opened_and_closed(tls_server: EchoServer) -> None:
    sock = connect(
        tls_server.address, secure_transport="on", tls=TlsOptions(ca=untrusted_ca().ca_pem)
    )
    with pytest.raises(TLSHandshakeError, match="TlsOptions\\(ca=") as info:
        await sock.opened
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError)
    with pytest.raises(TLSHandshakeError):
        await sock.closed
    await sock.close()  # never raises for a failed connection


async def test_system_trust_store_rejects_a_private_ca(tls_server: EchoServer) -> None:
    sock = connect(tls_server.address, secure_transport="on")
    with pytest.raises(TLSHandshakeError, match="not signed by a trusted CA"):
        await sock.opened


async def test_wrong_hostname_fails(ca: TestCA) -> None:
    async with EchoServer(ssl=ca.server_context(("db.example",))) as server:
        sock = connect(server.address, secure_transport="on", tls=TlsOptions(ca=ca.ca_pem))
        with pytest.raises(TLSHandshakeError, match="server_hostname"):
            await sock.opened
        # The same server passes when we expect the name its certificate carries.
        good = connect(
            server.address,
            secure_transport="on",
            tls=TlsOptions(ca=ca.ca_pem, server_hostname="db.example"),
        )
        await good.opened
        await good.close()


async def test_expired_certificate_fails(ca: TestCA) -> None:
    async with EchoServer(ssl=ca.server_context(expired=True)) as server:
        sock = connect(server.address, secure_transport="on", tls=TlsOptions(ca=ca.ca_pem))
        with pytest.raises(TLSHandshakeError, match="expired"):
            await sock.opened


async def test_verify_false_accepts_what_verification_rejects(ca: TestCA) -> None:
    async with EchoServer(ssl=ca.server_context(expired=True)) as server:
        sock = connect(server.address, secure_transport="on", tls=TlsOptions(verify=False))
        await sock.opened
        await sock.writable.write(b"ok")
        assert await sock.readable.readexactly(2) == b"ok"
        await sock.close()


async def test_custom_ca_from_a_file_and_an_ssl_context(
    ca: TestCA, tls_server: EchoServer, tmp_path: Path
) -> None:
    ca_file = ca.write_ca(tmp_path / "ca.pem")
    for tls in (TlsOptions(ca=str(ca_file)), TlsOptions(ca=ca_file), ca.client_context()):
        async with connect(tls_server.address, secure_transport="on", tls=tls) as sock:
            await sock.writable.write(b"ca")
            assert await sock.readable.readexactly(2) == b"ca"


async def test_mutual_tls(ca: TestCA, tmp_path: Path) -> None:
    client = ca.issue_client_cert("worker")
    cert_path, key_path = client.write(tmp_path)
    async with EchoServer(ssl=ca.server_context(require_client_cert=True)) as server:
        for options in (
            TlsOptions(ca=ca.ca_pem, cert=client.cert_pem, key=client.key_pem),
            TlsOptions(ca=ca.ca_pem, cert=str(cert_path), key=str(key_path)),
        ):
            async with connect(server.address, secure_transport="on", tls=options) as sock:
                await sock.writable.write(b"mtls")
                assert await sock.readable.readexactly(4) == b"mtls"
        # Without a certificate the server ends the session. Under TLS 1.3 the client finishes
        # its handshake first, so `opened` resolves and the first read sees the end of the
        # stream (asyncio reports the server's alert as a plain EOF); no data gets through.
        sock = connect(server.address, secure_transport="on", tls=TlsOptions(ca=ca.ca_pem))
        await sock.opened
        await sock.writable.write(b"x")
        assert await asyncio.wait_for(sock.readable.read(), 5) == b""
        rejected = server.connections[-1]
        await asyncio.wait_for(rejected.closed.wait(), 5)
        assert rejected.tls_error is not None
        await sock.close()


async def test_alpn_is_reported_in_socket_info(ca: TestCA) -> None:
    server_context = ca.server_context()
    server_context.set_alpn_protocols(["h2", "http/1.1"])
    async with EchoServer(ssl=server_context) as server:
        tls = TlsOptions(ca=ca.ca_pem, alpn=("http/1.1",))
        async with connect(server.address, secure_transport="on", tls=tls) as sock:
            assert (await sock.opened).alpn == "http/1.1"


async def test_tls_eof_ends_the_socket(tls_server: EchoServer) -> None:
    sock = connect(
        tls_server.address, secure_transport="on", tls=TlsOptions(ca=TestCA().ca_pem, verify=False)
    )
    await sock.opened
    await sock.writable.close()  # TLS cannot half-close: close_notify ends the connection
    assert await asyncio.wait_for(sock.readable.read(), 5) == b""
    await asyncio.wait_for(sock.closed, 5)
    with pytest.raises(SocketClosedError):
        await sock.writable.write(b"x")


async def test_start_tls_upgrades_in_place(starttls_server: StartTlsServer, ca: TestCA) -> None:
    sock = connect(
        starttls_server.address, secure_transport="starttls", tls=TlsOptions(ca=ca.ca_pem)
    )
    assert sock.secure_transport == "starttls"
    await negotiate(sock)
    tls = sock.start_tls()
    assert sock.upgraded
    assert not tls.upgraded
    assert tls.secure_transport == "on"
    await asyncio.wait_for(sock.closed, 1)
    info = await tls.opened
    assert info.remote_address == starttls_server.address
    await tls.writable.write(b"secret")
    assert await tls.readable.readexactly(6) == b"secret"
    (conn,) = starttls_server.connections
    assert conn.upgraded
    assert conn.plaintext_received == b"STARTTLS\n"
    with pytest.raises(SocketClosedError, match="use the socket start_tls\\(\\) returned"):
        await sock.readable.read()
    with pytest.raises(SocketClosedError, match="upgraded"):
        await sock.writable.write(b"x")
    with pytest.raises(StartTlsError, match="already called"):
        sock.start_tls()
    await sock.close()  # no effect on the upgraded connection
    await tls.writable.write(b"still")
    assert await tls.readable.readexactly(5) == b"still"
    await tls.close()
    await asyncio.wait_for(conn.closed.wait(), 5)


async def test_start_tls_before_open_flushes_queued_plaintext_first(
    starttls_server: StartTlsServer, ca: TestCA
) -> None:
    # Writes queued before the connection opened go out in plaintext, before the ClientHello.
    # (This server wants us to wait for its go-ahead, so the upgrade waits for that too.)
    sock = connect(
        starttls_server.address, secure_transport="starttls", tls=TlsOptions(ca=ca.ca_pem)
    )
    await sock.writable.write(b"STARTTLS\n")
    assert await sock.readable.readuntil() == b"READY\n"
    assert await sock.readable.readuntil() == b"GO\n"
    tls = sock.start_tls(server_hostname="localhost")
    await tls.writable.write(b"after")
    assert await tls.readable.readexactly(5) == b"after"
    (conn,) = starttls_server.connections
    assert conn.plaintext_received == b"STARTTLS\n"
    await tls.close()


async def test_start_tls_needs_starttls_mode(tls_server: EchoServer) -> None:
    sock = connect(tls_server.address)
    with pytest.raises(StartTlsError, match="secure_transport='starttls'"):
        sock.start_tls()
    await sock.close()


async def test_start_tls_after_close_is_refused(starttls_server: StartTlsServer) -> None:
    sock = connect(starttls_server.address, secure_transport="starttls")
    await sock.opened
    await sock.close()
    with pytest.raises(SocketClosedError, match="start_tls"):
        sock.start_tls()


async def test_start_tls_during_a_read_is_busy(starttls_server: StartTlsServer) -> None:
    sock = connect(starttls_server.address, secure_transport="starttls")
    assert await sock.readable.readuntil() == b"READY\n"
    reader = await started(sock.readable.read())
    with pytest.raises(SocketBusyError, match="await it first"):
        sock.start_tls()
    reader.cancel()
    await sock.close()


async def test_failed_handshake_after_start_tls(starttls_server: StartTlsServer) -> None:
    sock = connect(
        starttls_server.address,
        secure_transport="starttls",
        tls=TlsOptions(ca=untrusted_ca().ca_pem),
    )
    await negotiate(sock)
    tls = sock.start_tls()
    with pytest.raises(TLSHandshakeError):
        await tls.opened
    with pytest.raises(TLSHandshakeError):
        await tls.closed
    await tls.close()
    (conn,) = starttls_server.connections
    await asyncio.wait_for(conn.closed.wait(), 5)  # nothing left open


async def test_closing_the_tls_socket_while_connecting_drops_everything(
    starttls_server: StartTlsServer, ca: TestCA
) -> None:
    sock = connect(
        starttls_server.address, secure_transport="starttls", tls=TlsOptions(ca=ca.ca_pem)
    )
    tls = sock.start_tls()  # before the plaintext connection even opened
    await tls.close()
    with pytest.raises(ConnectError, match="aborted"):
        await tls.opened
    await asyncio.sleep(0.05)
    for conn in starttls_server.connections:
        await asyncio.wait_for(conn.closed.wait(), 5)


def test_tls_options_validation() -> None:
    with pytest.raises(ValueError, match="without cert"):
        TlsOptions(key="k.pem")
    with pytest.raises(TypeError, match="alpn"):
        TlsOptions(alpn="h2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="alpn"):
        TlsOptions(alpn=("",))
    with pytest.raises(TypeError, match="ca"):
        TlsOptions(ca=b"pem")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="verify"):
        TlsOptions(verify="no")  # type: ignore[arg-type]


async def test_unloadable_tls_files_raise_at_connect(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"TlsOptions\.ca could not be loaded"):
        connect("127.0.0.1:1", secure_transport="on", tls=TlsOptions(ca=str(tmp_path / "no")))
    with pytest.raises(ValueError, match="cert/key could not be loaded"):
        connect(
            "127.0.0.1:1",
            secure_transport="on",
            tls=TlsOptions(cert="-----BEGIN CERTIFICATE-----\nnope\n"),
        )
