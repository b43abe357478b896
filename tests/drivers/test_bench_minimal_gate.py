"""The ``minimal`` reference of benchmarks/bench_drivers.py does the counting the gate does.

Its figures are compared with the runtime's, so it must see the same bytes and close what a
request leaves open, or the comparison flatters one side. A real loopback server, on both
loops; the gate's own counts (a ``request_scope()`` on the gated loop) are the reference.
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tcpworkers.drivers import gated_loop_factory
from tcpworkers.scope import request_scope

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
ANSWER = b"answer:" + b"x" * 1000


def _load_minimal_gate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_minimal_gate", BENCHMARKS / "_minimal_gate.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


minimal_gate = _load_minimal_gate()


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readexactly(5)
    writer.write(ANSWER)
    await writer.drain()
    await reader.read()  # until the client closes or is aborted
    writer.close()


async def _exchange(port: int, close: bool) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"hello")
    assert await reader.readexactly(len(ANSWER)) == ANSWER
    if close:
        writer.close()
        await writer.wait_closed()


def _on_loop(factory: Callable[[], asyncio.AbstractEventLoop], body: Any) -> Any:
    async def with_server() -> Any:
        server = await asyncio.start_server(_answer, "127.0.0.1", 0)
        try:
            return await body(server.sockets[0].getsockname()[1])
        finally:
            server.close()

    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(with_server())


def _gate_counts(uvloop: bool, close: bool) -> tuple[int, int, int]:
    async def body(port: int) -> tuple[int, int, int]:
        async with request_scope() as scope:
            await _exchange(port, close)
        stats = scope.stats
        return stats.bytes_in, stats.bytes_out, stats.sockets_opened

    counts: tuple[int, int, int] = _on_loop(gated_loop_factory(prefer_uvloop=uvloop), body)
    return counts


def _minimal_counts(uvloop: bool, close: bool) -> tuple[int, int, int, bool]:
    """Bytes in and out, connections, and whether each was closed by the end of the scope."""

    async def body(port: int) -> tuple[int, int, int, bool]:
        async with minimal_gate.minimal_scope() as records:
            await _exchange(port, close)
        closed = all(r.lost or r.transport.is_closing() for r in records)
        await asyncio.sleep(0.05)  # the loss reaches the proxies
        return (
            sum(r.bytes_in for r in records),
            sum(r.bytes_out for r in records),
            len(records),
            closed and all(r.lost for r in records),
        )

    factory = minimal_gate.minimal_loop_factory(prefer_uvloop=uvloop)
    counts: tuple[int, int, int, bool] = _on_loop(factory, body)
    return counts


@pytest.mark.parametrize("uvloop", [True, False], ids=["uvloop", "asyncio"])
@pytest.mark.parametrize("close", [True, False], ids=["closed", "left-open"])
def test_minimal_gate_counts_what_the_gate_counts(uvloop: bool, close: bool) -> None:
    bytes_in, bytes_out, connections = _gate_counts(uvloop, close)
    assert (bytes_in, bytes_out, connections) == (len(ANSWER), 5, 1)
    assert _minimal_counts(uvloop, close) == (bytes_in, bytes_out, connections, True)


@pytest.mark.parametrize("uvloop", [True, False], ids=["uvloop", "asyncio"])
def test_minimal_app_answers_after_the_request(uvloop: bool) -> None:
    async def body(port: int) -> list[str]:
        sent: list[dict[str, Any]] = []
        ran: list[int] = []

        async def request() -> None:
            await _exchange(port, close=True)
            ran.append(port)

        async def send(message: dict[str, Any]) -> None:
            assert ran, "the response must follow the request"
            sent.append(message)

        app: Callable[..., Awaitable[None]] = minimal_gate.minimal_app(request)
        await app({"type": "http"}, None, send)
        return [f"{m['type']}:{m.get('status', m.get('body'))!r}" for m in sent]

    factory = minimal_gate.minimal_loop_factory(prefer_uvloop=uvloop)
    assert _on_loop(factory, body) == ["http.response.start:200", "http.response.body:b'ok'"]
