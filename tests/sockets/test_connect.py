"""connect(): argument errors, connection failures, timeouts, aborts and happy eyeballs."""

from __future__ import annotations

import asyncio
import gc
import re
import socket
from typing import Any

import pytest

from tcpworkers import TlsOptions, connect
from tcpworkers.errors import ConnectError, ConnectTimeoutError, SocketClosedError
from tcpworkers.sockets import Dialer, Target, use_dialer
from tcpworkers.testing import EchoServer


def refused_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


@pytest.mark.parametrize(
    ("kwargs", "error", "fragment"),
    [
        ({"secure_transport": "maybe"}, ValueError, "'off', 'on' or 'starttls'"),
        ({"allow_half_open": 1}, TypeError, "allow_half_open must be a bool"),
        ({"connect_timeout": 0}, ValueError, "positive"),
        ({"connect_timeout": float("nan")}, ValueError, "positive"),
        ({"connect_timeout": "5"}, TypeError, "number of seconds"),
        ({"high_water_mark": -1}, ValueError, ">= 0"),
        ({"high_water_mark": 1.5}, TypeError, "int"),
        ({"tls": TlsOptions()}, ValueError, "secure_transport='on'"),
        ({"secure_transport": "on", "tls": "yes"}, TypeError, "TlsOptions or an ssl.SSLContext"),
    ],
)
async def test_bad_arguments_raise_synchronously(
    kwargs: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=re.escape(fragment)):
        connect("127.0.0.1:5432", **kwargs)


async def test_bad_address_raises_synchronously() -> None:
    with pytest.raises(ValueError, match="accepted forms"):
        connect("example.com")
    with pytest.raises(TypeError, match="accepted forms"):
        connect(5432)


def test_connect_outside_an_event_loop_says_what_to_do() -> None:
    with pytest.raises(RuntimeError, match="asyncio event loop"):
        connect("127.0.0.1:5432")


async def test_refused_connection_rejects_opened_and_closed() -> None:
    port = refused_port()
    sock = connect(f"127.0.0.1:{port}")
    with pytest.raises(ConnectError) as info:
        await sock.opened
    assert str(info.value) == (
        f"could not connect to 127.0.0.1:{port}: connection refused; "
        "is a server listening on that port?"
    )
    assert isinstance(info.value, OSError)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    with pytest.raises(ConnectError) as closed_info:
        await sock.closed
    assert closed_info.value is info.value
    await sock.close()  # safe in finally blocks
    await sock.close()


async def test_io_on_a_failed_socket_raises_its_connect_error() -> None:
    sock = connect(f"127.0.0.1:{refused_port()}")
    reader = asyncio.ensure_future(sock.readable.read())
    with pytest.raises(ConnectError, match="connection refused"):
        await reader
    with pytest.raises(ConnectError, match="connection refused"):
        await sock.writable.write(b"x")


async def test_an_unawaited_failure_logs_nothing(loop_errors: list[dict[str, Any]]) -> None:
    sock = connect(f"127.0.0.1:{refused_port()}")
    await asyncio.sleep(0.1)
    del sock
    gc.collect()
    await asyncio.sleep(0)
    assert loop_errors == []


async def test_name_resolution_failure_is_a_connect_error() -> None:
    async def no_such_name(host: str, port: int) -> list[Target]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with use_dialer(Dialer(resolve=no_such_name)):
        sock = connect("db.invalid:5432")
    with pytest.raises(ConnectError, match=r"could not be resolved.*check the host name"):
        await sock.opened


async def test_a_name_without_addresses_fails() -> None:
    async def empty(host: str, port: int) -> list[Target]:
        return []

    with use_dialer(Dialer(resolve=empty)):
        sock = connect("db.invalid:5432")
    with pytest.raises(ConnectError, match="no addresses"):
        await sock.opened


async def test_connect_timeout_bounds_the_attempt(blackhole: tuple[str, int]) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    sock = connect(blackhole, connect_timeout=0.3)
    with pytest.raises(ConnectTimeoutError, match=r"connect_timeout=0\.3s") as info:
        await sock.opened
    assert isinstance(info.value, TimeoutError)
    assert 0.25 < loop.time() - started < 2


async def test_close_while_connecting_aborts_at_once(blackhole: tuple[str, int]) -> None:
    # Nothing queued: nothing to deliver, so the attempt stops at once. (With writes queued,
    # close() waits for the connection to send them: see test_hardening.py, issue 8 item 1.)
    loop = asyncio.get_running_loop()
    sock = connect(blackhole, connect_timeout=30)
    reader = asyncio.ensure_future(sock.readable.read())  # waits for the connection
    await asyncio.sleep(0.05)
    started = loop.time()
    await sock.close()
    assert loop.time() - started < 1
    with pytest.raises(ConnectError, match="aborted: close\\(\\) was called"):
        await sock.opened
    assert await sock.closed is None
    with pytest.raises(SocketClosedError):
        await reader
    with pytest.raises(SocketClosedError):
        await sock.writable.write(b"x")


async def test_happy_eyeballs_moves_on_from_a_stalled_address(
    blackhole: tuple[str, int],
) -> None:
    loop = asyncio.get_running_loop()
    async with EchoServer(host="::1") as v6_server:

        async def both(host: str, port: int) -> list[Target]:
            # First the black-holed IPv4 address, then a working IPv6 one.
            return [
                Target(socket.AF_INET, blackhole),
                Target(socket.AF_INET6, ("::1", v6_server.port, 0, 0)),
            ]

        attempts: list[tuple[str, float]] = []
        abandoned: list[str] = []

        async def recording_connect(target: Target) -> socket.socket:
            attempts.append((target.ip, loop.time()))
            try:
                return await Dialer().connect(target)
            except asyncio.CancelledError:
                abandoned.append(target.ip)
                raise

        # The black hole never answers: had connect() waited for it, it would fail after the
        # 30 s connect_timeout instead of opening.
        dialer = Dialer(resolve=both, connect=recording_connect, happy_eyeballs_delay=0.1)
        with use_dialer(dialer):
            sock = connect("dual.test:1", connect_timeout=30)
            info = await sock.opened
        assert info.remote_address == f"[::1]:{v6_server.port}"
        (v4, v4_at), (v6, v6_at) = attempts
        assert (v4, v6) == (blackhole[0], "::1")  # in the resolver's order
        # The second attempt starts when the delay has passed (timers never fire early; the
        # allowance is the loop clock's resolution), and the stalled one is abandoned.
        assert v6_at - v4_at >= 0.1 - 1e-3
        assert abandoned == [blackhole[0]]
        await sock.writable.write(b"v6")
        assert await sock.readable.readexactly(2) == b"v6"
        await sock.close()


async def test_happy_eyeballs_tries_the_next_address_when_one_fails() -> None:
    attempts: list[str] = []
    async with EchoServer() as server:
        refused = refused_port()

        async def two(host: str, port: int) -> list[Target]:
            return [
                Target(socket.AF_INET, ("127.0.0.1", refused)),
                Target(socket.AF_INET, ("127.0.0.1", server.port)),
            ]

        async def recording_connect(target: Target) -> socket.socket:
            attempts.append(f"{target.ip}:{target.sockaddr[1]}")
            return await Dialer().connect(target)

        with use_dialer(Dialer(resolve=two, connect=recording_connect, happy_eyeballs_delay=10)):
            sock = connect("two.test:1")
        info = await asyncio.wait_for(sock.opened, 2)  # did not wait the 10 s delay
        assert info.remote_address == server.address
        assert attempts == [f"127.0.0.1:{refused}", f"127.0.0.1:{server.port}"]
        await sock.close()


async def test_all_addresses_failing_reports_the_failure() -> None:
    refused = refused_port()

    async def two(host: str, port: int) -> list[Target]:
        return [
            Target(socket.AF_INET, ("127.0.0.1", refused)),
            Target(socket.AF_INET6, ("::1", refused, 0, 0)),
        ]

    with use_dialer(Dialer(resolve=two)):
        sock = connect(f"two.test:{refused}")
    with pytest.raises(ConnectError, match="connection refused"):
        await sock.opened


async def test_connect_by_name_and_ipv6_literal() -> None:
    async with EchoServer() as v4, EchoServer(host="::1") as v6:
        for address in (
            f"localhost:{v4.port}",
            {"hostname": "::1", "port": v6.port},
            f"[::1]:{v6.port}",
            ("127.0.0.1", v4.port),
        ):
            async with connect(address) as sock:
                await sock.writable.write(b"hi")
                assert await sock.readable.readexactly(2) == b"hi"
