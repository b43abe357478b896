"""A tiny line service on loopback for the demo's ``/api/stream`` route.

A client sends a number N and a newline; the service answers with N lines of the character
generator pattern (RFC 864), one every 50 ms, then closes. The worker streams the socket straight
into its HTTP response, so the lines reach the browser as they are sent.

Run alone: ``python examples/demo/ticker.py [--port 7079]``; ``scripts/demo`` starts it for you.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib

PRINTABLE = bytes(range(33, 127))  # RFC 864: the 94 printable ASCII characters, rotated
LINE_WIDTH = 72
MAX_LINES = 200
INTERVAL = 0.05


def line(index: int) -> bytes:
    start = index % len(PRINTABLE)
    rotated = PRINTABLE[start:] + PRINTABLE[:start]
    return b"%4d " % (index + 1) + rotated[: LINE_WIDTH - 5] + b"\n"


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        request = await asyncio.wait_for(reader.readline(), 10)
        count = int(request.strip() or b"20")
        for index in range(max(0, min(count, MAX_LINES))):
            writer.write(line(index))
            await writer.drain()
            await asyncio.sleep(INTERVAL)
    except (ValueError, TimeoutError, ConnectionError):
        pass
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


async def start_ticker(host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """Listen on ``host:port`` (0: a free port); the caller closes the server."""
    return await asyncio.start_server(_serve, host, port)


async def _main(port: int) -> None:
    server = await start_ticker(port=port)
    print(f"ticker on 127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=7079)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_main(parser.parse_args().port))
