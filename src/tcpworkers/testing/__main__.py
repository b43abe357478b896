"""``python -m tcpworkers.testing peers``: the echo and blast servers the example workers use.

``examples/bench_worker.py`` talks to an echo server (``/echo?size=N``) and a blast server
(``/blast?mib=N``: the client sends ``N\\n``, the server sends N MiB and closes). This command
runs both on 127.0.0.1 until Ctrl-C (or SIGTERM), on the ports that worker expects by default::

    python -m tcpworkers.testing peers                       # echo on 9001, blast on 9002
    python -m tcpworkers.testing peers --echo-port 0 --blast-port 0   # ports the OS picks

It prints one line per server (``echo server on 127.0.0.1:9001``) and the command that serves
the benchmark worker against them. Loopback only: nothing else can connect.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from typing import Final

__all__ = ["main"]

HOST: Final = "127.0.0.1"
DEFAULT_ECHO_PORT: Final = 9001
DEFAULT_BLAST_PORT: Final = 9002
# The blast server sends zeros in blocks of this size; a request asks for at most this many MiB.
_BLOCK: Final = 1 << 20
_MAX_MIB: Final = 1 << 20
_MAX_LINE: Final = 32


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def _blast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    block = memoryview(bytes(_BLOCK))
    with contextlib.suppress(
        ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError
    ):
        line = await reader.readuntil(b"\n")
        text = line.strip().decode("ascii", "replace")
        if not text.isdigit() or len(line) > _MAX_LINE or int(text) > _MAX_MIB:
            writer.write(b"send the number of MiB to receive and a newline, e.g. 16\n")
        else:
            for _ in range(int(text)):
                writer.write(block)
                await writer.drain()
    writer.close()


async def _peers(echo_port: int, blast_port: int) -> int:
    echo = await asyncio.start_server(_echo, HOST, echo_port)
    blast = await asyncio.start_server(_blast, HOST, blast_port, limit=_MAX_LINE)
    echo_port = echo.sockets[0].getsockname()[1]
    blast_port = blast.sockets[0].getsockname()[1]
    print(f"echo server on {HOST}:{echo_port} (sends back every byte)")
    print(f"blast server on {HOST}:{blast_port} (send N and a newline, receive N MiB)")
    print(
        "serve the benchmark worker against them: tcpworkers dev examples/bench_worker.py "
        f"--var ECHO_PORT={echo_port} --var BLAST_PORT={blast_port}"
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)  # before saying so: a test may signal at once
    print("Ctrl-C stops them", flush=True)
    async with echo, blast:
        await stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m tcpworkers.testing",
        description="Loopback servers for trying the example workers.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    peers = commands.add_parser(
        "peers",
        help="run the echo and blast servers examples/bench_worker.py talks to",
        description=(
            "Run an echo server and a blast server on 127.0.0.1 until Ctrl-C "
            "(examples/bench_worker.py's /echo and /blast routes)."
        ),
    )
    peers.add_argument(
        "--echo-port", type=int, default=DEFAULT_ECHO_PORT, help="0 lets the OS choose"
    )
    peers.add_argument(
        "--blast-port", type=int, default=DEFAULT_BLAST_PORT, help="0 lets the OS choose"
    )
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_peers(args.echo_port, args.blast_port))
    except OSError as exc:
        print(
            f"python -m tcpworkers.testing peers: error: cannot listen: {exc.strerror or exc}; "
            "is another server using the port? choose others with --echo-port/--blast-port",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
