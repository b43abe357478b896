"""``Response(sock.readable)``: a socket streamed straight into the HTTP response, with
backpressure both ways, and a client leaving mid-stream."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from tcpworkers import Request, Response, connect
from tcpworkers.runtime import CLIENT_CLOSED_REQUEST, Env, ExecutionContext
from tcpworkers.testing import serve_worker

from ..waiting import eventually
from .worker_helpers import MIB, Blaster, Recorder

# Bytes that may legitimately be in flight between the blaster and the client when everything
# applies backpressure: the kernel's socket buffers on both hops (loopback autotuning can reach
# several MiB each way) plus a few 64 KiB transport and read buffers. A runtime that buffered
# the stream would let the blaster run ahead by (nearly) the whole 100 MiB.
MAX_IN_FLIGHT = 24 * MIB


def request_tasks() -> list[asyncio.Task[object]]:
    """Tasks that belong to a request: uvicorn's ASGI call, our receive pump, wait_until."""
    names = ("run_asgi", "Inbound._pump", "ExecutionContext._run")
    return [
        task
        for task in asyncio.all_tasks()
        if any(name in getattr(task.get_coro(), "__qualname__", "") for name in names)
    ]


def rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.fixture
async def blaster() -> AsyncIterator[Blaster]:
    async with Blaster().running() as server:
        yield server


async def blast(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    sock = connect(request.query["addr"])
    await sock.writable.write(f"{request.query['mib']}\n".encode())
    return Response(sock.readable, headers={"content-type": "application/octet-stream"})


@pytest.mark.slow  # a large transfer
async def test_streams_100_mib_from_a_socket_with_flat_memory(blaster: Blaster) -> None:
    recorder = Recorder()
    received = 0
    max_ahead = 0  # how far the sender ever got ahead of what the client had received
    peak_rss = baseline = rss()
    async with serve_worker(blast, observers=[recorder]) as server:
        params = {"addr": blaster.address, "mib": "100"}
        async with server.client.stream("GET", "/", params=params) as response:
            assert response.status_code == 200
            async for chunk in response.aiter_raw():
                received += len(chunk)
                max_ahead = max(max_ahead, blaster.sent - received)
                if MIB <= received < MIB + len(chunk):
                    # A slow client: everything upstream must stop, not buffer.
                    await asyncio.sleep(0.3)
                    max_ahead = max(max_ahead, blaster.sent - received)
                    stalled_at = blaster.sent
                    await asyncio.sleep(0.1)
                    assert blaster.sent == stalled_at, "the sender was not held back"
                peak_rss = max(peak_rss, rss())
        (record,) = await recorder.wait_for(1)
    assert received == 100 * MIB
    assert blaster.finished.is_set()
    assert max_ahead < MAX_IN_FLIGHT, f"{max_ahead / MIB:.1f} MiB were buffered in flight"
    assert peak_rss - baseline < 32 * MIB, f"RSS grew {(peak_rss - baseline) / MIB:.0f} MiB"
    assert record.status == 200
    assert record.stats.bytes_in == 100 * MIB


async def test_client_leaving_mid_stream_closes_the_socket(
    blaster: Blaster, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    async with serve_worker(blast, observers=[recorder]) as server:
        params = {"addr": blaster.address, "mib": "1000"}  # more than the test will read
        async with server.client.stream("GET", "/", params=params) as response:
            received = 0
            async for chunk in response.aiter_raw():
                received += len(chunk)
                if received >= 2 * MIB:
                    assert len(request_tasks()) == 2  # the ASGI call and its pump: seen
                    break
        # Leaving the block closed the client's connection mid-body.
        await asyncio.wait_for(blaster.peer_gone.wait(), 5)  # the sender saw the close
        (record,) = await recorder.wait_for(1)
        await eventually(lambda: request_tasks() == [], what="the request's tasks ended")
        leftovers = request_tasks()
    assert not blaster.finished.is_set()
    assert blaster.sent < 100 * MIB
    assert record.status == CLIENT_CLOSED_REQUEST
    assert record.error is None
    assert record.stats.sockets_opened == 1
    assert record.stats.closed_at_end == 1
    assert leftovers == []  # nothing of the request is left running
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
