"""Tests of the public test kit itself, with plain asyncio clients (not tcpworkers.connect).

Every async test runs on the stdlib loop and on uvloop (see this directory's conftest.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import stat
import struct
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

import tcpworkers.testing
from tcpworkers.testing import (
    ClientCert,
    EchoServer,
    Fault,
    FaultKind,
    FaultProxy,
    ServerConnection,
    StartTlsConnection,
    StartTlsServer,
    TestCA,
    untrusted_ca,
)

T = TypeVar("T")

# Generous bound for things that must happen; short bound for things that must not.
SOON = 3.0
NEVER = 0.3


async def soon(aw: Awaitable[T]) -> T:
    return await asyncio.wait_for(aw, SOON)


async def close(writer: asyncio.StreamWriter) -> None:
    """Close a client writer, ignoring the error a reset or failed TLS leaves behind."""
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def rst_close(writer: asyncio.StreamWriter) -> None:
    """Close a client connection with a TCP RST."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


def ipv6_loopback_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


# -- public API ------------------------------------------------------------------------------


def test_public_api_is_pinned() -> None:
    assert sorted(tcpworkers.testing.__all__) == [
        "ClientCert",
        "EchoServer",
        "Fault",
        "FaultKind",
        "FaultProxy",
        "LocalMariaDB",
        "LocalRedis",
        "PgBouncer",
        "ServerConnection",
        "StartTlsConnection",
        "StartTlsServer",
        "TestCA",
        "WorkerServer",
        "serve_worker",
        "untrusted_ca",
    ]
    for name in tcpworkers.testing.__all__:
        assert getattr(tcpworkers.testing, name).__module__.startswith("tcpworkers.testing")


def test_testca_is_not_collected_by_pytest() -> None:
    assert TestCA.__test__ is False


# -- argument checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.1", "localhost", "::", "example.com"])
def test_servers_refuse_non_loopback_hosts(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        EchoServer(host=host)
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy("127.0.0.1", 1, host=host)
    with pytest.raises(ValueError, match="target_host"):
        FaultProxy(host, 1)


def test_port_before_start_says_how_to_start() -> None:
    with pytest.raises(RuntimeError, match="async with EchoServer"):
        _ = EchoServer().port


def test_starttls_server_needs_a_context() -> None:
    with pytest.raises(TypeError, match="SSLContext"):
        StartTlsServer(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="SSLContext"):
        EchoServer(ssl="yes")  # type: ignore[arg-type]


def test_fault_constructors_and_validation() -> None:
    assert Fault(FaultKind.NONE, 0) == Fault.NONE
    assert Fault.reset_after(3) == Fault(FaultKind.RESET_AFTER, 3)
    assert Fault.close_after(0).kind is FaultKind.CLOSE_AFTER
    assert Fault.stall_after(7).n == 7
    assert Fault.stall().kind is FaultKind.STALL
    assert Fault.truncate_tls().kind is FaultKind.TRUNCATE_TLS
    assert Fault.refuse().kind is FaultKind.REFUSE
    with pytest.raises(ValueError, match=">= 0"):
        Fault.reset_after(-1)
    with pytest.raises(ValueError, match="int"):
        Fault.close_after(True)
    proxy = FaultProxy("127.0.0.1", 1)
    with pytest.raises(TypeError, match="Fault"):
        proxy.fault = "reset"  # type: ignore[assignment]
    with pytest.raises(ValueError, match="target_port"):
        FaultProxy("127.0.0.1", 0)


# -- EchoServer ------------------------------------------------------------------------------


async def test_echo_and_connection_record() -> None:
    async with EchoServer() as srv:
        assert srv.address == f"127.0.0.1:{srv.port}"
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        writer.write(b"hello")
        assert await soon(reader.readexactly(5)) == b"hello"
        (conn,) = await srv.wait_for_connections(1)
        assert isinstance(conn, ServerConnection)
        assert conn.peer == writer.get_extra_info("sockname")
        assert conn.bytes_received == 5
        assert srv.accepted == 1
        assert not conn.closed.is_set()
        assert not conn.eof_received.is_set()
        await close(writer)
        await soon(conn.closed.wait())
        assert not conn.reset


@pytest.mark.skipif(not ipv6_loopback_available(), reason="no IPv6 loopback")
async def test_echo_on_ipv6_loopback() -> None:
    async with EchoServer(host="::1") as srv:
        assert srv.address == f"[::1]:{srv.port}"
        reader, writer = await asyncio.open_connection("::1", srv.port)
        writer.write(b"v6")
        assert await soon(reader.readexactly(2)) == b"v6"
        await close(writer)


async def test_half_close_gets_the_echo_then_eof() -> None:
    async with EchoServer() as srv:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        writer.write(b"abc" * 1000)
        writer.write_eof()
        (conn,) = await srv.wait_for_connections(1)
        # The server has seen our FIN before we read a byte; the echo must still arrive.
        await soon(conn.eof_received.wait())
        assert await soon(reader.read()) == b"abc" * 1000  # read() reads up to EOF
        await soon(conn.closed.wait())
        assert not conn.reset
        await close(writer)


async def test_large_echo_with_backpressure() -> None:
    payload = bytes(range(256)) * 8192  # 2 MiB
    async with EchoServer() as srv:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)

        async def send() -> None:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()

        sender = asyncio.create_task(send())
        assert await soon(reader.read()) == payload
        await sender
        await close(writer)


async def test_reset_by_client_is_recorded() -> None:
    async with EchoServer() as srv:
        _, writer = await asyncio.open_connection(srv.host, srv.port)
        (conn,) = await srv.wait_for_connections(1)
        rst_close(writer)
        await soon(conn.closed.wait())
        assert conn.reset
        assert not conn.eof_received.is_set()


async def test_closing_the_server_closes_its_connections() -> None:
    async with EchoServer() as srv:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        (conn,) = await srv.wait_for_connections(1)
    # The server is closed: the client sees the end of the stream (a FIN: the client sent
    # nothing, so no unread data turns the close into a reset).
    assert await soon(reader.read()) == b""
    assert not conn.closed.is_set()  # `closed` reports the client's doing only
    await close(writer)


async def test_wait_for_connections_times_out() -> None:
    async with EchoServer() as srv:
        with pytest.raises(TimeoutError, match="accepted 0 connection"):
            await srv.wait_for_connections(1, timeout=0.05)


# -- TLS -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("server_hostname", ["localhost", "127.0.0.1"])
async def test_tls_echo(ca: TestCA, server_hostname: str) -> None:
    async with EchoServer(ssl=ca.server_context()) as srv:
        reader, writer = await asyncio.open_connection(
            srv.host, srv.port, ssl=ca.client_context(), server_hostname=server_hostname
        )
        writer.write(b"secret")
        assert await soon(reader.readexactly(6)) == b"secret"
        (conn,) = await srv.wait_for_connections(1)
        assert conn.tls_error is None
        await close(writer)
        await soon(conn.closed.wait())
        assert conn.eof_received.is_set()  # the client's close_notify
        assert conn.bytes_received == 6


async def test_tls_trusting_the_written_ca_file(ca: TestCA, tmp_path: Path) -> None:
    ca_file = ca.write_ca(tmp_path / "ca.pem")
    assert ca_file.read_text() == ca.ca_pem
    assert ca.ca_pem.startswith("-----BEGIN CERTIFICATE-----")
    client = ssl.create_default_context(cafile=str(ca_file))
    async with EchoServer(ssl=ca.server_context()) as srv:
        reader, writer = await asyncio.open_connection(
            srv.host, srv.port, ssl=client, server_hostname="localhost"
        )
        writer.write(b"x")
        assert await soon(reader.readexactly(1)) == b"x"
        await close(writer)


async def test_expired_certificate_fails_verification(ca: TestCA) -> None:
    async with EchoServer(ssl=ca.server_context(expired=True)) as srv:
        with pytest.raises(ssl.SSLCertVerificationError, match="expired"):
            await soon(
                asyncio.open_connection(
                    srv.host, srv.port, ssl=ca.client_context(), server_hostname="localhost"
                )
            )
        (conn,) = await srv.wait_for_connections(1)
        await soon(conn.closed.wait())
        assert conn.tls_error is not None


async def test_certificate_from_another_ca_fails_verification(ca: TestCA) -> None:
    async with EchoServer(ssl=untrusted_ca().server_context()) as srv:
        with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
            await soon(
                asyncio.open_connection(
                    srv.host, srv.port, ssl=ca.client_context(), server_hostname="localhost"
                )
            )


async def test_wrong_hostname_fails_verification(ca: TestCA) -> None:
    async with EchoServer(ssl=ca.server_context(("db.internal",))) as srv:
        with pytest.raises(ssl.SSLCertVerificationError, match="match"):
            await soon(
                asyncio.open_connection(
                    srv.host, srv.port, ssl=ca.client_context(), server_hostname="localhost"
                )
            )


async def tls_echo_once(port: int, context: ssl.SSLContext) -> bytes:
    """Connect with TLS, send one byte and return its echo."""
    reader, writer = await soon(
        asyncio.open_connection("127.0.0.1", port, ssl=context, server_hostname="localhost")
    )
    try:
        writer.write(b"x")
        return await soon(reader.readexactly(1))
    finally:
        await close(writer)


async def test_mtls_rejects_a_client_without_a_certificate(ca: TestCA) -> None:
    async with EchoServer(ssl=ca.server_context(require_client_cert=True)) as srv:
        # With TLS 1.3 the client finishes its side of the handshake before the server checks
        # the (missing) certificate, so the failure surfaces on the first read.
        with pytest.raises((ssl.SSLError, ConnectionResetError, asyncio.IncompleteReadError)):
            await tls_echo_once(srv.port, ca.client_context())
        (conn,) = await srv.wait_for_connections(1)
        await soon(conn.closed.wait())
        assert isinstance(conn.tls_error, ssl.SSLError)
        assert "CERTIFICATE" in str(conn.tls_error).upper()
        assert conn.bytes_received == 0


async def test_mtls_rejects_a_certificate_from_another_ca(ca: TestCA) -> None:
    stranger = untrusted_ca().issue_client_cert()
    async with EchoServer(ssl=ca.server_context(require_client_cert=True)) as srv:
        with pytest.raises((ssl.SSLError, ConnectionResetError, asyncio.IncompleteReadError)):
            await tls_echo_once(srv.port, ca.client_context(client_cert=stranger))
        (conn,) = await srv.wait_for_connections(1)
        await soon(conn.closed.wait())
        assert isinstance(conn.tls_error, ssl.SSLError)


async def test_mtls_accepts_the_issued_client_certificate(ca: TestCA, tmp_path: Path) -> None:
    cert = ca.issue_client_cert("worker")
    # Both ways a client can take it: PEM text (via configure) and files.
    by_pem = ca.client_context(client_cert=cert)
    by_file = ca.client_context()
    by_file.load_cert_chain(*cert.write(tmp_path))
    async with EchoServer(ssl=ca.server_context(require_client_cert=True)) as srv:
        assert await tls_echo_once(srv.port, by_pem) == b"x"
        assert await tls_echo_once(srv.port, by_file) == b"x"
        assert len(srv.connections) == 2
        assert all(conn.tls_error is None for conn in srv.connections)


def test_client_cert_files(ca: TestCA, tmp_path: Path) -> None:
    cert = ca.issue_client_cert("alice")
    assert isinstance(cert, ClientCert)
    cert_path, key_path = cert.write(tmp_path)
    assert (cert_path.name, key_path.name) == ("alice.crt", "alice.key")
    assert cert_path.read_text() == cert.cert_pem
    assert key_path.read_text() == cert.key_pem
    assert "BEGIN CERTIFICATE" in cert.cert_pem
    assert "PRIVATE KEY" in cert.key_pem
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert "PRIVATE" not in repr(cert)


# -- StartTlsServer ------------------------------------------------------------------------------


async def test_starttls_dialog(ca: TestCA) -> None:
    async with StartTlsServer(ca.server_context()) as srv:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        assert await soon(reader.readline()) == b"READY\n"
        # Queued without draining, right before STARTTLS: must go out in plaintext first.
        writer.write(b"hello\n")
        writer.write(b"STARTTLS\n")
        assert await soon(reader.readline()) == b"hello\n"
        assert await soon(reader.readline()) == b"GO\n"
        await soon(writer.start_tls(ca.client_context(), server_hostname="localhost"))
        writer.write(b"encrypted bytes")
        assert await soon(reader.readexactly(15)) == b"encrypted bytes"
        (conn,) = await srv.wait_for_connections(1)
        assert isinstance(conn, StartTlsConnection)
        assert conn.upgraded
        assert conn.plaintext_received == b"hello\nSTARTTLS\n"
        assert conn.bytes_received == len(b"hello\nSTARTTLS\nencrypted bytes")
        await close(writer)
        await soon(conn.closed.wait())


async def test_starttls_plaintext_half_close(ca: TestCA) -> None:
    async with StartTlsServer(ca.server_context()) as srv:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        writer.write(b"one\ntwo")  # the last line has no newline
        writer.write_eof()
        assert await soon(reader.read()) == b"READY\none\ntwo"
        (conn,) = await srv.wait_for_connections(1)
        await soon(conn.closed.wait())
        assert not conn.upgraded
        assert conn.eof_received.is_set()
        await close(writer)


async def test_starttls_client_that_does_not_wait_for_go_is_dropped(ca: TestCA) -> None:
    async with StartTlsServer(ca.server_context()) as srv:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        assert await soon(reader.readline()) == b"READY\n"
        writer.write(b"STARTTLS\n\x16\x03\x01\x00\x05hello")
        (conn,) = await srv.wait_for_connections(1)
        await soon(conn.closed.wait())
        assert not conn.upgraded
        assert conn.plaintext_received == b"STARTTLS\n\x16\x03\x01\x00\x05hello"
        await close(writer)


async def test_starttls_handshake_failure_is_recorded(ca: TestCA) -> None:
    async with StartTlsServer(untrusted_ca().server_context()) as srv:
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        assert await soon(reader.readline()) == b"READY\n"
        writer.write(b"STARTTLS\n")
        assert await soon(reader.readline()) == b"GO\n"
        with pytest.raises(ssl.SSLCertVerificationError):
            await soon(writer.start_tls(ca.client_context(), server_hostname="localhost"))
        (conn,) = await srv.wait_for_connections(1)
        await soon(conn.closed.wait())
        assert not conn.upgraded
        assert conn.tls_error is not None
        await close(writer)


# -- FaultProxy ----------------------------------------------------------------------------------


async def test_proxy_without_fault_is_transparent() -> None:
    payload = b"0123456789" * 100_000  # 1 MB through the proxy, both ways
    async with EchoServer() as srv, FaultProxy(srv.host, srv.port) as proxy:
        assert proxy.address == f"127.0.0.1:{proxy.port}"
        assert proxy.fault == Fault.NONE
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)

        async def send() -> None:
            writer.write(payload)
            await writer.drain()
            writer.write_eof()  # half-close travels through the proxy

        sender = asyncio.create_task(send())
        assert await soon(reader.read()) == payload
        await sender
        (conn,) = await srv.wait_for_connections(1)
        assert conn.eof_received.is_set()
        assert conn.bytes_received == len(payload)
        assert proxy.connections == 1
        await close(writer)


async def test_proxy_passes_tls_through(ca: TestCA) -> None:
    async with EchoServer(ssl=ca.server_context()) as srv, FaultProxy(srv.host, srv.port) as p:
        reader, writer = await asyncio.open_connection(
            p.host, p.port, ssl=ca.client_context(), server_hostname="localhost"
        )
        writer.write(b"tls")
        assert await soon(reader.readexactly(3)) == b"tls"
        await close(writer)


async def test_reset_after_sends_n_bytes_then_a_reset() -> None:
    async with (
        EchoServer() as srv,
        FaultProxy(srv.host, srv.port, fault=Fault.reset_after(3)) as proxy,
    ):
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"hello")
        assert await soon(reader.readexactly(3)) == b"hel"
        with pytest.raises(ConnectionResetError):
            await soon(reader.read(100))
        (conn,) = await srv.wait_for_connections(1)
        await soon(conn.closed.wait())  # the proxy closed the upstream connection too
        await close(writer)


async def test_reset_after_zero_resets_before_any_byte() -> None:
    async with (
        EchoServer() as srv,
        FaultProxy(srv.host, srv.port, fault=Fault.reset_after(0)) as proxy,
    ):
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        with pytest.raises(ConnectionResetError):
            await soon(reader.read(100))
        await close(writer)


async def test_close_after_sends_exactly_n_bytes_then_eof() -> None:
    async with (
        EchoServer() as srv,
        FaultProxy(srv.host, srv.port, fault=Fault.close_after(4)) as proxy,
    ):
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"hello world")
        assert await soon(reader.read()) == b"hell"  # then EOF, not a reset
        (conn,) = await srv.wait_for_connections(1)
        await soon(conn.closed.wait())
        assert conn.eof_received.is_set()  # the upstream got a FIN, not a reset
        assert not conn.reset
        await close(writer)


async def test_stall_never_forwards_anything() -> None:
    async with EchoServer() as srv, FaultProxy(srv.host, srv.port, fault=Fault.stall()) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"hello")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), NEVER)
        assert proxy.connections == 1
        assert srv.accepted == 0  # nothing reached the server
        await close(writer)


async def test_stall_fills_the_clients_send_buffers() -> None:
    async with EchoServer() as srv, FaultProxy(srv.host, srv.port, fault=Fault.stall()) as proxy:
        _, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"x" * 16 * 1024 * 1024)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(writer.drain(), NEVER)
        writer.transport.abort()


async def test_stall_after_forwards_n_bytes_then_nothing() -> None:
    async with (
        EchoServer() as srv,
        FaultProxy(srv.host, srv.port, fault=Fault.stall_after(2)) as proxy,
    ):
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"hello")
        assert await soon(reader.readexactly(2)) == b"he"
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), NEVER)
        writer.write(b"more")  # not forwarded either
        await asyncio.sleep(0.05)
        (conn,) = await srv.wait_for_connections(1)
        assert conn.bytes_received == 5
        assert not conn.closed.is_set()  # the connection stays open
        await close(writer)


async def test_truncate_tls_cuts_the_first_record_in_half() -> None:
    # A fake TLS record (type 22, version 3.3, 16-byte body) echoed by a plain server: the proxy
    # forwards the 5-byte header and 8 body bytes, then closes with a FIN.
    record = b"\x16\x03\x03\x00\x10" + bytes(range(16))
    async with (
        EchoServer() as srv,
        FaultProxy(srv.host, srv.port, fault=Fault.truncate_tls()) as proxy,
    ):
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(record)
        assert await soon(reader.read()) == record[: 5 + 8]
        await close(writer)


async def test_truncate_tls_breaks_the_handshake(ca: TestCA) -> None:
    async with (
        EchoServer(ssl=ca.server_context()) as srv,
        FaultProxy(srv.host, srv.port, fault=Fault.truncate_tls()) as proxy,
    ):
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            await soon(
                asyncio.open_connection(
                    proxy.host, proxy.port, ssl=ca.client_context(), server_hostname="localhost"
                )
            )


async def test_refuse_resets_every_connection() -> None:
    async with EchoServer() as srv, FaultProxy(srv.host, srv.port, fault=Fault.refuse()) as proxy:
        for _ in range(2):
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
            with pytest.raises(ConnectionResetError):
                await soon(reader.read(100))
            await close(writer)
        assert proxy.connections == 2
        assert srv.accepted == 0


async def test_fault_change_applies_to_new_connections_only() -> None:
    async with EchoServer() as srv, FaultProxy(srv.host, srv.port) as proxy:
        r1, w1 = await asyncio.open_connection(proxy.host, proxy.port)
        w1.write(b"a")
        assert await soon(r1.readexactly(1)) == b"a"
        proxy.fault = Fault.refuse()
        r2, w2 = await asyncio.open_connection(proxy.host, proxy.port)
        with pytest.raises(ConnectionResetError):
            await soon(r2.read(100))
        w1.write(b"b")
        assert await soon(r1.readexactly(1)) == b"b"
        await close(w1)
        await close(w2)


async def test_proxy_to_a_dead_target_resets_the_client() -> None:
    async with EchoServer() as srv:
        port = srv.port
    async with FaultProxy("127.0.0.1", port) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        with pytest.raises(ConnectionResetError):
            await soon(reader.read(100))
        await close(writer)


async def test_proxy_passes_a_client_reset_on() -> None:
    async with EchoServer() as srv, FaultProxy(srv.host, srv.port) as proxy:
        reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        writer.write(b"x")
        assert await soon(reader.readexactly(1)) == b"x"
        (conn,) = await srv.wait_for_connections(1)
        rst_close(writer)
        await soon(conn.closed.wait())
        assert conn.reset


async def test_closing_the_proxy_ends_stalled_connections() -> None:
    async with EchoServer() as srv:
        async with FaultProxy(srv.host, srv.port, fault=Fault.stall()) as proxy:
            reader, writer = await asyncio.open_connection(proxy.host, proxy.port)
        with contextlib.suppress(ConnectionResetError):
            assert await soon(reader.read()) == b""
        await close(writer)
