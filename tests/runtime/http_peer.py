"""A loopback HTTP/1.1 server for the fetch() tests, built on h11, that records what it sees.

Every connection is a :class:`PeerConnection` (its requests, and an event set when the server
saw it close), so a test can check from the server's side that fetch() closed a connection.
Routes (all ``GET``/``POST``/...; query parameters as shown):

- ``/echo``: 200 with a JSON object: ``method``, ``target``, ``headers`` (pairs, in order),
  ``body`` (latin-1 text) and ``chunked`` (whether the request body was chunked);
- ``/bytes?n=N&chunk=C``: N bytes of the pattern ``bytes(range(256))`` repeated, sent chunked
  in C-byte pieces (default 64 KiB);
- ``/status?code=N``: status N, no body;
- ``/redirect?to=URL&code=N``: status N (302) with ``Location: URL``;
- ``/loop``: a redirect to itself;
- ``/hop``: a response with hop-by-hop headers (``Connection: x-private``, ``Keep-Alive``, ...);
- ``/gzip``: a gzip-compressed body with ``Content-Encoding: gzip``;
- ``/stall``: never answers (until the client goes away);
- ``/stall-body``: answers with headers and 3 bytes of a 10-byte body, then stalls;
- ``/close``: closes the connection without answering.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self
from urllib.parse import parse_qsl, urlsplit

import h11

PATTERN = bytes(range(256))


def pattern(n: int) -> bytes:
    """The first ``n`` bytes the ``/bytes`` route sends."""
    return (PATTERN * (n // len(PATTERN) + 1))[:n]


@dataclass
class PeerRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    chunked: bool = False


@dataclass
class PeerConnection:
    requests: list[PeerRequest] = field(default_factory=list)
    closed: asyncio.Event = field(default_factory=asyncio.Event)


class HttpPeer:
    """``async with HttpPeer() as peer:`` serves on 127.0.0.1:<OS port>; ``peer.url(path)``."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.connections: list[PeerConnection] = []
        self.port = 0

    def url(self, path: str = "/") -> str:
        scheme = "https" if self._ssl is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    @property
    def requests(self) -> list[PeerRequest]:
        return [r for c in self.connections for r in c.requests]

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, ssl=self._ssl)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        # Aborting the connections ends their handlers (a read sees the end); cancelling the
        # handlers instead would make asyncio's stream callback log the CancelledError.
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        await self._server.wait_closed()

    async def wait_closed(self, count: int | None = None, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Wait until the server saw ``count`` (default: all) of its connections close."""
        async with asyncio.timeout(timeout):
            conns = self.connections if count is None else self.connections[:count]
            for conn in conns:
                await conn.closed.wait()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        record = PeerConnection()
        self.connections.append(record)
        try:
            await self._serve(reader, writer, record)
        except (ConnectionError, h11.RemoteProtocolError, ssl.SSLError):
            pass  # the client went away or broke off: what the tests provoke
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            record.closed.set()
            self._tasks.discard(task)
            self._writers.discard(writer)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: PeerConnection
    ) -> None:
        conn = h11.Connection(h11.SERVER)
        while True:
            event = await _next_event(conn, reader)
            if not isinstance(event, h11.Request):
                return  # ConnectionClosed
            request = PeerRequest(
                method=event.method.decode(),
                target=event.target.decode(),
                headers=[(k.decode(), v.decode("latin-1")) for k, v in event.headers],
                chunked=any(
                    k.lower() == b"transfer-encoding" and b"chunked" in v.lower()
                    for k, v in event.headers
                ),
            )
            record.requests.append(request)
            while True:
                part = await _next_event(conn, reader)
                if isinstance(part, h11.Data):
                    request.body += part.data
                elif isinstance(part, h11.EndOfMessage):
                    break
                else:
                    return
            if not await self._respond(conn, reader, writer, request):
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _respond(
        self,
        conn: h11.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        request: PeerRequest,
    ) -> bool:
        """Answer ``request``; False when the connection must end."""
        parts = urlsplit(request.target)
        query = dict(parse_qsl(parts.query))
        path = parts.path

        async def send(*events: h11.Event) -> None:
            for event in events:
                if request.method == "HEAD" and isinstance(event, h11.Data):
                    continue  # the headers say what a GET would get; no body
                data = conn.send(event)
                if data:
                    writer.write(data)
            await writer.drain()

        if path == "/echo":
            body = json.dumps(
                {
                    "method": request.method,
                    "target": request.target,
                    "headers": request.headers,
                    "body": request.body.decode("latin-1"),
                    "chunked": request.chunked,
                }
            ).encode()
            headers = [("content-type", "application/json"), ("content-length", str(len(body)))]
            await send(h11.Response(status_code=200, headers=headers), h11.Data(data=body))
        elif path == "/bytes":
            n, chunk = int(query.get("n", "0")), int(query.get("chunk", str(64 * 1024)))
            data = pattern(n)
            await send(h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")]))
            for start in range(0, n, chunk):
                await send(h11.Data(data=data[start : start + chunk]))
        elif path == "/status":
            code = int(query["code"])
            headers = [] if code in (204, 304) else [("content-length", "0")]
            await send(h11.Response(status_code=code, headers=headers))
        elif path == "/redirect":
            await send(
                h11.Response(
                    status_code=int(query.get("code", "302")),
                    headers=[("location", query["to"]), ("content-length", "0")],
                )
            )
        elif path == "/loop":
            await send(
                h11.Response(
                    status_code=302, headers=[("location", "/loop"), ("content-length", "0")]
                )
            )
        elif path == "/hop":
            body = b"hop"
            headers = [
                ("connection", "x-private"),
                ("keep-alive", "timeout=5"),
                ("x-private", "secret"),
                ("x-public", "kept"),
                ("content-length", str(len(body))),
            ]
            await send(h11.Response(status_code=200, headers=headers), h11.Data(data=body))
        elif path == "/gzip":
            body = gzip.compress(b"compressed text")
            headers = [("content-encoding", "gzip"), ("content-length", str(len(body)))]
            await send(h11.Response(status_code=200, headers=headers), h11.Data(data=body))
        elif path == "/stall":
            await _until_eof(reader)
            return False
        elif path == "/stall-body":
            await send(
                h11.Response(status_code=200, headers=[("content-length", "10")]),
                h11.Data(data=b"abc"),
            )
            await _until_eof(reader)
            return False
        elif path == "/close":
            return False
        else:
            await send(h11.Response(status_code=404, headers=[("content-length", "0")]))
        await send(h11.EndOfMessage())
        return True


async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> object:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await reader.read(65536))
            continue
        return event


async def _until_eof(reader: asyncio.StreamReader) -> None:
    while await reader.read(65536):
        pass


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    """An async iterator over ``parts``: a streaming request body."""
    for part in parts:
        await asyncio.sleep(0)
        yield part
