"""Shared pieces of the runtime tests: example worker files, an observer that records, a fake
binding, and a loopback server that sends N MiB as fast as its peer takes them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from tcpworkers.runtime import RequestRecord
from tcpworkers.scope import current_scope

WORKERS = Path(__file__).parent / "workers"
MIB = 1024 * 1024


def worker_file(name: str) -> str:
    """The path of an example worker under tests/runtime/workers/."""
    return str(WORKERS / name)


class Recorder:
    """A RequestObserver that keeps every record and lets a test wait for them."""

    def __init__(self) -> None:
        self.records: list[RequestRecord] = []
        self._changed = asyncio.Event()

    def request_finished(self, record: RequestRecord) -> None:
        self.records.append(record)
        self._changed.set()

    async def wait_for(self, n: int = 1, timeout: float = 5.0) -> list[RequestRecord]:  # noqa: ASYNC109
        async with asyncio.timeout(timeout):
            while len(self.records) < n:
                self._changed.clear()
                await self._changed.wait()
        return self.records


class FakeBinding:
    """A Binding that records its life; optionally fails to start."""

    def __init__(self, *, fail: bool = False) -> None:
        self.events: list[str] = []
        self.fail = fail
        self.scopes: list[object] = []  # the request scope current in start()

    @property
    def started(self) -> bool:
        return self.events[-1:] == ["start"]

    async def start(self) -> None:
        self.scopes.append(current_scope())
        if self.fail:
            raise RuntimeError("the fake binding refuses to start")
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")


class Blaster:
    """Loopback server: reads ``N\\n``, then sends N MiB in 64 KiB writes, waiting for the
    transport to drain after each, so ``sent`` is what the peer has taken (give or take the
    kernel's buffers). Records whether the peer went away before the end."""

    CHUNK = b"\xa5" * 65536

    def __init__(self) -> None:
        self.sent = 0
        self.finished = asyncio.Event()
        self.peer_gone = asyncio.Event()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Blaster]:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()
            for task in self._handlers:
                task.cancel()
            if self._handlers:
                await asyncio.wait(self._handlers)
            await self._server.wait_closed()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            mib = int(await reader.readline())
            for _ in range(mib * MIB // len(self.CHUNK)):
                writer.write(self.CHUNK)
                await writer.drain()
                self.sent += len(self.CHUNK)
            writer.write_eof()
            await writer.drain()
            self.finished.set()
        except (ConnectionError, OSError):
            self.peer_gone.set()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
                await writer.wait_closed()
            self._handlers.discard(task)
