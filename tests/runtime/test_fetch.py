"""``tcpworkers.fetch()``: HTTP and HTTPS over loopback, through the gate.

The server is :class:`tests.runtime.http_peer.HttpPeer` (h11 on 127.0.0.1, OS-chosen port),
which records each connection and sees it close, so "fetch() closed its connection" is checked
from the server's side.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

import tcpworkers
from tcpworkers import Request, Response, TlsOptions, fetch
from tcpworkers.egress import EgressPolicy, set_default_policy
from tcpworkers.errors import (
    ConnectError,
    ConnectNotAllowedError,
    ConnectTimeoutError,
    CrossRequestError,
    EgressDeniedError,
    FetchError,
    FetchTimeoutError,
    SocketBrokenError,
    TcpworkersError,
    TLSHandshakeError,
)
from tcpworkers.runtime import workers_module
from tcpworkers.scope import forbid_connections, request_scope
from tcpworkers.testing import Fault, FaultProxy, TestCA, serve_worker

from .http_peer import HttpPeer, chunks, pattern

NO_LOOPBACK = EgressPolicy.from_config({"preset": "dev", "deny": ["loopback"]})


@pytest.fixture
async def peer() -> AsyncIterator[HttpPeer]:
    async with HttpPeer() as server:
        yield server


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture
async def tls_peer(ca: TestCA) -> AsyncIterator[HttpPeer]:
    async with HttpPeer(ssl_context=ca.server_context()) as server:
        yield server


@pytest.fixture
def blackhole() -> Iterator[tuple[str, int]]:
    """A loopback address whose connection attempts hang: a listener with a full backlog."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    address = listener.getsockname()
    filler = socket.socket()
    filler.connect(address)  # takes the only backlog slot: further SYNs are dropped
    try:
        yield address
    finally:
        filler.close()
        listener.close()


async def echoed(response: Response) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(await response.text())
    return data


def header(echo: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in echo["headers"] if key == name]


# -- requests and responses ------------------------------------------------------------------


async def test_get_returns_status_headers_and_a_streaming_body(peer: HttpPeer) -> None:
    response = await fetch(peer.url("/echo?x=1"), headers=[("X-Tag", "a"), ("x-tag", "b")])
    assert isinstance(response, Response)
    assert response.status == 200
    assert response.ok
    assert response.headers["content-type"] == "application/json"
    echo = await echoed(response)
    assert echo["method"] == "GET"
    assert echo["target"] == "/echo?x=1"
    assert header(echo, "x-tag") == ["a", "b"]
    assert echo["body"] == ""


async def test_post_sends_a_bytes_body(peer: HttpPeer) -> None:
    response = await fetch(peer.url("/echo"), method="POST", body=b"\x00payload\xff")
    echo = await echoed(response)
    assert echo["method"] == "POST"
    assert echo["body"] == "\x00payload\xff"
    assert header(echo, "content-length") == ["9"]
    assert not echo["chunked"]


async def test_a_str_body_is_sent_as_utf8_text(peer: HttpPeer) -> None:
    echo = await echoed(await fetch(peer.url("/echo"), method="PUT", body="héllo"))
    assert echo["body"].encode("latin-1").decode() == "héllo"
    assert header(echo, "content-type") == ["text/plain; charset=utf-8"]
    explicit = await fetch(
        peer.url("/echo"), method="PUT", body="{}", headers={"Content-Type": "application/json"}
    )
    assert header(await echoed(explicit), "content-type") == ["application/json"]


async def test_an_async_iterable_body_is_streamed_chunked(peer: HttpPeer) -> None:
    response = await fetch(peer.url("/echo"), method="POST", body=chunks(b"one ", b"two"))
    echo = await echoed(response)
    assert echo["body"] == "one two"
    assert echo["chunked"]


async def test_a_request_body_can_be_forwarded(peer: HttpPeer) -> None:
    incoming = Request("http://worker.test/upload", method="POST", body=chunks(b"up", b"load"))
    echo = await echoed(await fetch(peer.url("/echo"), method="POST", body=incoming))
    assert echo["body"] == "upload"


async def test_methods_are_sent_upper_cased(peer: HttpPeer) -> None:
    assert (await echoed(await fetch(peer.url("/echo"), method="delete")))["method"] == "DELETE"
    assert (await echoed(await fetch(peer.url("/echo"), method="Purge")))["method"] == "PURGE"


async def test_a_large_response_streams_chunk_by_chunk(peer: HttpPeer) -> None:
    size = 16 * 1024 * 1024
    response = await fetch(peer.url(f"/bytes?n={size}"))
    received = 0
    count = 0
    expected = pattern(size)
    async for chunk in response:
        assert chunk == expected[received : received + len(chunk)]
        received += len(chunk)
        count += 1
    assert received == size
    assert count > 16  # delivered as it arrived, not buffered whole
    await peer.wait_closed()


async def test_no_accept_encoding_is_sent_and_bodies_are_not_decoded(peer: HttpPeer) -> None:
    echo = await echoed(await fetch(peer.url("/echo")))
    assert header(echo, "accept-encoding") == []
    response = await fetch(peer.url("/gzip"))
    assert response.headers["content-encoding"] == "gzip"
    raw = await response.bytes()
    assert raw.startswith(b"\x1f\x8b")  # the bytes as sent
    assert response.headers["content-length"] == str(len(raw))
    asked = await fetch(peer.url("/echo"), headers={"Accept-Encoding": "gzip"})
    assert header(await echoed(asked), "accept-encoding") == ["gzip"]


async def test_hop_by_hop_headers_are_dropped(peer: HttpPeer) -> None:
    response = await fetch(peer.url("/hop"))
    assert dict(response.headers.items()) == {"x-public": "kept", "content-length": "3"}
    assert await response.text() == "hop"
    chunked = await fetch(peer.url("/bytes?n=10"))
    assert "transfer-encoding" not in chunked.headers
    assert await chunked.bytes() == pattern(10)


@pytest.mark.parametrize(("method", "path"), [("HEAD", "/echo"), ("GET", "/status?code=204")])
async def test_responses_without_a_body_release_the_connection_at_once(
    peer: HttpPeer, method: str, path: str
) -> None:
    async with request_scope() as scope:
        response = await fetch(peer.url(path), method=method)
        assert await response.bytes() == b""
        assert scope.open_resources == ()
    assert scope.stats.closed_at_end == 0


async def test_a_status_a_response_cannot_represent_is_a_fetch_error(peer: HttpPeer) -> None:
    with pytest.raises(FetchError, match="status 600"):
        await fetch(peer.url("/status?code=600"))
    await peer.wait_closed()


async def test_server_closing_without_a_response_is_a_fetch_error(peer: HttpPeer) -> None:
    with pytest.raises(FetchError, match=r"GET http://127\.0\.0\.1:\d+/close") as info:
        await fetch(peer.url("/close"))
    assert info.value.__cause__ is not None  # httpx's error, kept


async def test_a_reset_mid_body_is_socket_broken(peer: HttpPeer) -> None:
    async with FaultProxy("127.0.0.1", peer.port) as proxy:
        proxy.fault = Fault.reset_after(200_000)
        response = await fetch(f"http://{proxy.address}/bytes?n=1000000")
        with pytest.raises(SocketBrokenError):
            await response.bytes()


# -- redirects -----------------------------------------------------------------------------


async def test_redirects_are_followed(peer: HttpPeer) -> None:
    response = await fetch(peer.url("/redirect?to=/echo&code=301"))
    assert response.status == 200
    assert (await echoed(response))["target"] == "/echo"


async def test_redirect_manual_returns_the_redirect(peer: HttpPeer) -> None:
    response = await fetch(peer.url("/redirect?to=/echo"), redirect="manual")
    assert response.status == 302
    assert response.headers["location"] == "/echo"
    assert len(peer.requests) == 1


async def test_every_redirect_hop_goes_through_the_gate(peer: HttpPeer) -> None:
    async with HttpPeer() as other:
        policy = EgressPolicy.from_config({"preset": "dev", "deny_ports": [str(other.port)]})
        async with request_scope(policy) as scope:
            with pytest.raises(EgressDeniedError):
                await fetch(peer.url(f"/redirect?to={other.url('/echo')}"))
        assert scope.stats.sockets_denied == 1
        assert other.connections == []


async def test_a_redirect_loop_is_a_fetch_error(peer: HttpPeer) -> None:
    with pytest.raises(FetchError, match="more than 20 redirects"):
        await fetch(peer.url("/loop"))


async def test_a_streamed_body_cannot_be_resent_by_a_307(peer: HttpPeer) -> None:
    with pytest.raises(FetchError, match="307/308"):
        await fetch(peer.url("/redirect?to=/echo&code=307"), method="POST", body=chunks(b"once"))


# -- the gate ------------------------------------------------------------------------------


async def test_the_egress_policy_is_applied(peer: HttpPeer) -> None:
    async with request_scope(NO_LOOPBACK) as scope:
        with pytest.raises(EgressDeniedError, match="denied by the egress policy"):
            await fetch(peer.url("/echo"))
    assert scope.stats.sockets_denied == 1
    assert peer.connections == []


async def test_connections_are_counted_and_closed_once_the_body_is_read(peer: HttpPeer) -> None:
    async with request_scope() as scope:
        response = await fetch(peer.url("/bytes?n=100000"))
        assert len(scope.open_resources) == 1
        assert len(await response.bytes()) == 100_000
        await peer.wait_closed()  # closed by fetch(), before the request ended
        assert not scope.open_resources
    assert scope.stats.sockets_opened == 1
    assert scope.stats.closed_at_end == 0
    assert scope.stats.bytes_in > 100_000
    assert scope.stats.bytes_out > 0


async def test_an_unread_body_is_closed_when_the_request_ends(peer: HttpPeer) -> None:
    async with request_scope() as scope:
        response = await fetch(peer.url("/bytes?n=10000000"))
        (conn,) = peer.connections
        assert not conn.closed.is_set()
    assert scope.stats.closed_at_end == 1
    await peer.wait_closed()
    assert response.status == 200  # kept alive until here: see the test below on collection


async def test_each_fetch_has_its_own_connection(peer: HttpPeer) -> None:
    async with request_scope() as scope:
        responses = [await fetch(peer.url("/echo")) for _ in range(3)]  # bodies left unread
        assert len(scope.open_resources) == 3
        assert [r.status for r in responses] == [200] * 3
    assert scope.stats.sockets_opened == 3
    assert len(peer.connections) == 3
    await peer.wait_closed()


async def test_a_response_cannot_be_read_by_another_request(peer: HttpPeer) -> None:
    async with request_scope(label="GET /first"):
        response = await fetch(peer.url("/bytes?n=1000000"))  # more than one read
        async with request_scope(label="GET /second"):
            with pytest.raises(CrossRequestError, match="GET /first"):
                await response.text()


async def test_outside_a_request_the_default_policy_applies(peer: HttpPeer) -> None:
    assert (await fetch(peer.url("/echo"))).status == 200  # dev preset: loopback allowed
    set_default_policy(NO_LOOPBACK)
    try:
        with pytest.raises(EgressDeniedError):
            await fetch(peer.url("/echo"))
    finally:
        set_default_policy(EgressPolicy.default())


@pytest.mark.parametrize("in_scope", [False, True])
async def test_an_abandoned_unread_body_is_closed_when_collected(
    peer: HttpPeer, in_scope: bool
) -> None:
    async with request_scope() if in_scope else contextlib.nullcontext():
        response = await fetch(peer.url("/bytes?n=10000000"))
        assert response.status == 200
        del response
        gc.collect()
        await peer.wait_closed()  # before the request ends, or with no request at all


def test_the_gate_applies_on_a_plain_event_loop() -> None:
    # No gated loop needed: every connection is a connect() socket.
    async def main() -> None:
        async with HttpPeer() as server:
            async with request_scope(NO_LOOPBACK) as scope:
                with pytest.raises(EgressDeniedError):
                    await fetch(server.url("/echo"))
            async with request_scope() as scope:
                assert await (await fetch(server.url("/bytes?n=5"))).bytes() == pattern(5)
            assert scope.stats.sockets_opened == 1

    asyncio.run(main())


async def test_fetch_is_refused_where_connections_are_not_allowed(peer: HttpPeer) -> None:
    # What a worker module calling fetch() at import time gets (see load_worker).
    with (
        forbid_connections("connect() at import time"),
        pytest.raises(ConnectNotAllowedError, match="at import time"),
    ):
        await fetch(peer.url("/echo"))
    assert peer.connections == []


# -- timeouts and connection failures --------------------------------------------------------


async def test_a_server_that_does_not_answer_times_out(peer: HttpPeer) -> None:
    with pytest.raises(FetchTimeoutError, match=r"timeout=0\.2s") as info:
        await fetch(peer.url("/stall"), timeout=0.2)
    assert isinstance(info.value, TimeoutError)
    await peer.wait_closed()


async def test_a_stalled_body_times_out(peer: HttpPeer) -> None:
    response = await fetch(peer.url("/stall-body"), timeout=0.2)
    with pytest.raises(FetchTimeoutError):
        await response.bytes()
    await peer.wait_closed()


async def test_a_server_that_does_not_read_the_request_times_out() -> None:
    # A listener that never accepts: the kernel completes the handshake and buffers what it
    # can, then the window closes and the upload stalls.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        host, port = listener.getsockname()
        with pytest.raises(FetchTimeoutError, match="did not take the request"):
            await fetch(
                f"http://{host}:{port}/upload",
                method="POST",
                body=bytes(64 * 1024 * 1024),
                timeout=0.3,
            )


async def test_a_cancelled_fetch_drops_its_connection_at_once() -> None:
    with socket.socket() as listener:  # accepts nothing, reads nothing (see above)
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        host, port = listener.getsockname()
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with request_scope() as scope:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await fetch(
                        f"http://{host}:{port}/upload",
                        method="POST",
                        body=bytes(64 * 1024 * 1024),
                        timeout=None,
                    )
            assert not scope.open_resources
        # No graceful close waiting for the unsent body to flush (that would take 5 s).
        assert loop.time() - started < 2


async def test_connecting_times_out(blackhole: tuple[str, int]) -> None:
    host, port = blackhole
    with pytest.raises(ConnectTimeoutError):
        await fetch(f"http://{host}:{port}/", timeout=0.2)


async def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectError, match="refused"):
        await fetch(f"http://127.0.0.1:{port}/")


# -- https ---------------------------------------------------------------------------------


async def test_https_with_a_private_ca(tls_peer: HttpPeer, ca: TestCA) -> None:
    async with request_scope() as scope:
        response = await fetch(tls_peer.url("/echo"), tls=TlsOptions(ca=ca.ca_pem))
        assert (await echoed(response))["method"] == "GET"
    # The TLS upgrade keeps the plaintext connection's slot: one socket.
    assert scope.stats.sockets_opened == 1
    assert scope.stats.closed_at_end == 0
    await tls_peer.wait_closed()


async def test_https_with_an_ssl_context(tls_peer: HttpPeer, ca: TestCA) -> None:
    response = await fetch(tls_peer.url("/bytes?n=1000"), tls=ca.client_context())
    assert await response.bytes() == pattern(1000)


async def test_https_verifies_the_expected_host_name(tls_peer: HttpPeer, ca: TestCA) -> None:
    good = TlsOptions(ca=ca.ca_pem, server_hostname="localhost")
    assert (await fetch(tls_peer.url("/echo"), tls=good)).status == 200
    wrong = TlsOptions(ca=ca.ca_pem, server_hostname="db.example")
    with pytest.raises(TLSHandshakeError):
        await fetch(tls_peer.url("/echo"), tls=wrong)


async def test_https_rejects_an_unknown_ca(tls_peer: HttpPeer) -> None:
    with pytest.raises(TLSHandshakeError, match="certificate"):
        await fetch(tls_peer.url("/echo"))


async def test_fetch_leaves_connects_default_tls_context_alone(
    tls_peer: HttpPeer, ca: TestCA
) -> None:
    from tcpworkers.sockets._tls import client_context

    options = TlsOptions(ca=ca.ca_pem)
    await (await fetch(tls_peer.url("/echo"), tls=options)).bytes()
    # httpcore sets ALPN on the context it is given: never on the one connect() shares.
    assert client_context(options) is not client_context(
        TlsOptions(ca=ca.ca_pem, alpn=("http/1.1",))
    )


# -- inside a worker -----------------------------------------------------------------------


async def test_a_worker_can_return_a_fetched_response(peer: HttpPeer) -> None:
    async def proxy(request: Request, env: object, ctx: object) -> Response:
        return await fetch(peer.url("/bytes?n=300000"))

    async with serve_worker(proxy) as server:
        response = await server.client.get("/")
        assert response.status_code == 200
        assert response.content == pattern(300_000)
    await peer.wait_closed()


def test_fetch_is_public_and_the_workers_module_uses_it() -> None:
    assert "fetch" in tcpworkers.__all__
    assert workers_module().fetch is tcpworkers.fetch
    assert issubclass(FetchError, TcpworkersError)
    assert issubclass(FetchTimeoutError, FetchError)
    assert issubclass(FetchTimeoutError, TimeoutError)


# -- arguments -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"url": "ftp://127.0.0.1/x"}, ValueError, "absolute http"),
        ({"url": "/relative"}, ValueError, "absolute http"),
        ({"url": "http://127.0.0.1:port/"}, ValueError, "invalid url"),
        ({"url": b"http://127.0.0.1/"}, TypeError, "url must be a str"),
        ({"url": "http://exa mple.test/"}, ValueError, "not a host name or IP address"),
        ({"url": "http://[::1/"}, ValueError, "invalid url"),
        ({"method": "CONNECT"}, ValueError, "tcpworkers.connect"),
        ({"method": "GE T"}, ValueError, "invalid method"),
        ({"method": 1}, TypeError, "method must be a str"),
        ({"timeout": 0}, ValueError, "positive"),
        ({"timeout": "1"}, TypeError, "seconds"),
        ({"body": b"x"}, ValueError, "cannot have a body"),
        ({"method": "POST", "body": 1}, TypeError, "body must be"),
        ({"headers": {"bad name": "x"}}, ValueError, "invalid header name"),
        ({"headers": {"x": "a\r\nb"}}, ValueError, "line break"),
        ({"redirect": "error"}, ValueError, "redirect"),
        ({"tls": "ca.pem"}, TypeError, "TlsOptions"),
    ],
)
async def test_bad_arguments_raise_before_connecting(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    arguments: dict[str, Any] = {"url": "http://127.0.0.1:9/"}
    arguments.update(kwargs)
    url = arguments.pop("url")
    with pytest.raises(error, match=match):
        await fetch(url, **arguments)


async def test_timeout_none_means_no_read_limit(peer: HttpPeer) -> None:
    assert (await fetch(peer.url("/echo"), timeout=None)).status == 200
    assert (await fetch(peer.url("/echo"), timeout=float("inf"))).status == 200


async def test_ssl_context_argument_is_accepted_for_http(peer: HttpPeer) -> None:
    # A TLS setting is harmless for http:// URLs (a redirect may lead to https).
    context = ssl.create_default_context()
    assert (await fetch(peer.url("/echo"), tls=context)).status == 200
