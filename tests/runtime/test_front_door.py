"""The front door's bounds: request heads, slow clients and connections, over real loopback.

Each test talks raw HTTP/1.1 over a socket to a worker served by ``serve_worker`` (uvicorn with
the runtime's protocol, as in ``dev`` and ``serve``), so what is checked is what a client sees:
the status line, and whether the server closed the connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from tcpworkers import Request, Response
from tcpworkers.runtime import Limits, RuntimeSettings
from tcpworkers.testing import serve_worker

KIB = 1024


async def fetch(request: Request, env: object, ctx: object) -> Response:
    if request.url.endswith("/slow"):
        await asyncio.sleep(0.6)
    body = await request.bytes()
    return Response(f"hello {len(body)}")


def settings(**limits: float) -> RuntimeSettings:
    return RuntimeSettings(limits=Limits(**limits))  # type: ignore[arg-type]


class Raw:
    """One raw HTTP/1.1 connection: write bytes, read responses, see the server close."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, port: int) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def response(self) -> tuple[int, dict[str, str], bytes]:
        """The next response: status, headers (lower-case names), body (Content-Length)."""
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 10)
        status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        body = await asyncio.wait_for(self.reader.readexactly(length), 10)
        return int(status_line.split()[1]), headers, body

    async def closed_by_server(self) -> bool:
        """True if the server closed the connection (EOF or reset) with nothing more to read."""
        try:
            rest = await asyncio.wait_for(self.reader.read(), 10)
        except ConnectionResetError:
            return True
        return rest == b""

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):  # the server may have reset it
            await self.writer.wait_closed()

    def trickle(self, pieces: list[bytes], pause: float) -> asyncio.Task[int]:
        """Send ``pieces`` in the background, ``pause`` s apart, until done or the server
        closes; the task's result is how many bytes were sent."""

        async def run() -> int:
            sent = 0
            with contextlib.suppress(ConnectionError):
                for piece in pieces:
                    await self.send(piece)
                    sent += len(piece)
                    await asyncio.sleep(pause)
            return sent

        return asyncio.ensure_future(run())


def get(target: str = "/", headers: list[tuple[str, str]] | None = None) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: test"]
    lines += [f"{name}: {value}" for name, value in headers or []]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def head_of_size(size: int) -> bytes:
    """A GET request whose request line and headers are exactly ``size`` bytes."""
    bare = get(headers=[("X-Pad", "")])
    return get(headers=[("X-Pad", "a" * (size - len(bare)))])


@pytest.fixture
async def port() -> AsyncIterator[int]:
    async with serve_worker(fetch) as server:
        yield server.port


# -- 7. request line + headers ---------------------------------------------------------------


async def test_a_head_over_64_kib_is_refused_with_431(port: int) -> None:
    raw = await Raw.open(port)
    await raw.send(head_of_size(64 * KIB + 1))
    status, headers, body = await raw.response()
    assert status == 431
    assert headers["connection"] == "close"
    assert b"64 KiB" in body  # says which bound, so an operator can find the setting
    assert await raw.closed_by_server()
    await raw.close()


async def test_a_head_of_exactly_64_kib_is_served(port: int) -> None:
    raw = await Raw.open(port)
    await raw.send(head_of_size(64 * KIB))
    status, _, body = await raw.response()
    assert (status, body) == (200, b"hello 0")
    await raw.close()


async def test_a_malformed_request_is_answered_400(port: int) -> None:
    raw = await Raw.open(port)
    await raw.send(b"GET / HTTP/1.1\r\nHost test\r\n\r\n")  # a header line without a colon
    status, _, _ = await raw.response()
    assert status == 400
    await raw.close()


async def test_an_unsupported_upgrade_is_served_as_a_plain_request(port: int) -> None:
    # As uvicorn does: a fetch worker has no WebSocket, so "Upgrade" is ignored with a warning.
    raw = await Raw.open(port)
    await raw.send(get(headers=[("Connection", "Upgrade"), ("Upgrade", "h2c")]))
    status, _, body = await raw.response()
    assert (status, body) == (200, b"hello 0")
    await raw.close()


async def test_a_long_request_line_counts_too(port: int) -> None:
    raw = await Raw.open(port)
    await raw.send(get("/" + "x" * (64 * KIB)))
    status, _, _ = await raw.response()
    assert status == 431
    await raw.close()


async def test_a_huge_header_is_answered_431_while_the_client_still_sends(port: int) -> None:
    # 64 MiB in 64 KiB writes: the server answers once it has seen the bound, sends FIN and
    # drops what still comes for a second (so the client's writes do not reset the connection
    # before it read the answer), then aborts. Memory stays flat: see test_front_door_process.
    raw = await Raw.open(port)
    await raw.send(b"GET / HTTP/1.1\r\nHost: test\r\nX-Huge: ")
    sender = raw.trickle([b"a" * (64 * KIB)] * 1024, pause=0)
    status, _, _ = await raw.response()
    assert status == 431
    assert await raw.closed_by_server()
    await sender
    await raw.close()


async def test_more_than_100_headers_are_refused_with_431(port: int) -> None:
    raw = await Raw.open(port)
    await raw.send(get(headers=[(f"X-H{i}", "v") for i in range(100)]))  # + Host = 101
    status, _, body = await raw.response()
    assert status == 431
    assert b"100 headers" in body
    assert await raw.closed_by_server()
    await raw.close()


async def test_100_headers_are_served(port: int) -> None:
    raw = await Raw.open(port)
    await raw.send(get(headers=[(f"X-H{i}", "v") for i in range(99)]))  # + Host = 100
    status, _, _ = await raw.response()
    assert status == 200
    await raw.close()


async def test_bodies_and_pipelined_requests_do_not_count_as_head(port: int) -> None:
    raw = await Raw.open(port)
    body = b"b" * (1024 * KIB)
    post = b"POST / HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % len(body)
    # One write: a 1 MiB body after a small head, then three 40 KiB heads back to back (120 KiB
    # of heads in one read, each under the bound).
    await raw.send(post + body + head_of_size(40 * KIB) * 3)
    for expected in (b"hello 1048576", b"hello 0", b"hello 0", b"hello 0"):
        status, _, answer = await raw.response()
        assert (status, answer) == (200, expected)
    await raw.close()


async def test_the_head_bounds_are_configurable() -> None:
    limits = settings(max_header_size=1024, max_headers=5)
    async with serve_worker(fetch, limits) as server:
        raw = await Raw.open(server.port)
        await raw.send(head_of_size(1025))
        assert (await raw.response())[0] == 431
        await raw.close()
        raw = await Raw.open(server.port)
        await raw.send(get(headers=[(f"X-H{i}", "v") for i in range(5)]))
        assert (await raw.response())[0] == 431
        await raw.close()
        raw = await Raw.open(server.port)
        await raw.send(head_of_size(1024))
        assert (await raw.response())[0] == 200
        await raw.close()


# -- 8. slow clients and the connection cap --------------------------------------------------


async def test_a_head_not_completed_in_time_is_answered_408_and_closed() -> None:
    async with serve_worker(fetch, settings(header_timeout=0.3)) as server:
        raw = await Raw.open(server.port)
        await raw.send(b"GET / HTTP/1.1\r\nHost: te")  # ...and never the rest
        status, headers, _ = await raw.response()
        assert status == 408
        assert headers["connection"] == "close"
        assert await raw.closed_by_server()
        await raw.close()


async def test_a_connection_that_sends_nothing_is_closed() -> None:
    async with serve_worker(fetch, settings(header_timeout=0.3)) as server:
        raw = await Raw.open(server.port)
        status, _, _ = await raw.response()
        assert status == 408
        assert await raw.closed_by_server()
        await raw.close()


async def test_slowloris_trickling_a_byte_at_a_time_is_closed() -> None:
    async with serve_worker(fetch, settings(header_timeout=0.5)) as server:
        raw = await Raw.open(server.port)
        request = get()
        # One byte every 0.1 s: the head would take ~3 s, six times the header timeout.
        sender = raw.trickle([request[i : i + 1] for i in range(len(request))], pause=0.1)
        status, _, _ = await raw.response()
        assert status == 408  # a 200 would mean the whole head got in
        assert await raw.closed_by_server()
        assert await sender < len(request)
        await raw.close()


async def test_the_header_timeout_does_not_cut_a_slow_response() -> None:
    # The handler takes 0.6 s, twice the header timeout: the head was complete, so the request
    # runs to the end, and the next request on the same connection is timed afresh.
    async with serve_worker(fetch, settings(header_timeout=0.3)) as server:
        raw = await Raw.open(server.port)
        await raw.send(get("/slow"))
        assert (await raw.response())[:1] == (200,)
        await raw.send(get("/slow"))
        assert (await raw.response())[:1] == (200,)
        await raw.close()


async def test_connections_over_the_cap_get_503_and_one_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    async with serve_worker(fetch, settings(max_connections=3)) as server:
        held = [await Raw.open(server.port) for _ in range(3)]
        for raw in held:  # each one served: all three are open connections now
            await raw.send(get())
            assert (await raw.response())[0] == 200
        refused = [await Raw.open(server.port) for _ in range(5)]
        for raw in refused:
            status, headers, _ = await raw.response()
            assert status == 503
            assert headers["connection"] == "close"
            assert await raw.closed_by_server()
            await raw.close()
        lines = [r.getMessage() for r in caplog.records if "max_connections" in r.getMessage()]
        assert len(lines) == 1, lines
        assert "3 open connections" in lines[0]
        # Closing one frees its place (once the server has seen the close).
        await held[0].close()
        served = None
        for _ in range(100):
            again = await Raw.open(server.port)
            await again.send(get())
            if (await again.response())[0] == 200:
                served = again
                break
            await again.close()
            await asyncio.sleep(0.01)
        assert served is not None, "no connection was served after one of the three closed"
        for raw in [*held[1:], served]:
            await raw.close()
