"""asyncpg's own CPU for one new connection + ``SELECT 1`` + close, against a server that costs
nothing: the floor under variant (b) of ``bench_pool.py``, whatever the pooler does.

A measurement, not a test. The "server" is the binding's in-process door (``pool._inprocess``:
a transport pair, no file descriptor, no system call) with canned answers in place of the
pooler: the greeting a pool binding sends (AuthenticationOk, the ParameterStatus messages of a
PostgreSQL 15 server, BackendKeyData, ReadyForQuery) and, per message, the answer PostgreSQL
gives to ``SELECT 1`` (ParseComplete; ParameterDescription + RowDescription; BindComplete;
DataRow + CommandComplete; ReadyForQuery). The answers are prebuilt bytes, so nearly all the CPU
measured is asyncpg's: parsing its DSN, building its protocol and ``Connection`` objects, the
startup, one prepared query, and close.

Why it matters: a request of (b) does what a request of (d) does (HTTP, the same query) plus
this, plus the pooler. So at a CPU-bound concurrency, (b)/(d) can never exceed
``srv(d) / (srv(d) + floor)``; ``bench_pool.py`` prints that ceiling next to the target.

Run alone: ``.venv/bin/python benchmarks/_asyncpg_floor.py [N]``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable
from typing import Any, Final

from tcpworkers.pool import _messages as m
from tcpworkers.pool._inprocess import ServerEnd, open_pipe

DSN: Final = "postgresql://app:0123456789abcdef0123456789abcdef@/app?host=/tmp/floor&port=5432"

_GREETING: Final = b"".join(
    [
        m.Authentication(0).encode(),
        *(
            m.ParameterStatus(name, value).encode()
            for name, value in (
                ("application_name", ""),
                ("client_encoding", "UTF8"),
                ("DateStyle", "ISO, MDY"),
                ("integer_datetimes", "on"),
                ("IntervalStyle", "postgres"),
                ("is_superuser", "off"),
                ("server_encoding", "UTF8"),
                ("server_version", "15.19"),
                ("session_authorization", "app"),
                ("standard_conforming_strings", "on"),
                ("TimeZone", "UTC"),
            )
        ),
        m.BackendKeyData(4242, 17).encode(),
        m.ReadyForQuery("I").encode(),
    ]
)
# What PostgreSQL answers to each message asyncpg sends for fetchval("SELECT 1").
# One int4 column "?column?": table 0, attribute 0, type 23, size 4, typmod -1, text format.
_COLUMN: Final = bytes.fromhex("00000000 0000 00000017 0004 ffffffff 0000")
_ROW_DESCRIPTION: Final = m.typed(b"T", b"\x00\x01" + m.cstr("?column?") + _COLUMN)
_ANSWERS: Final = {
    ord("P"): m.ParseComplete().encode(),
    ord("D"): m.typed(b"t", b"\x00\x00") + _ROW_DESCRIPTION,
    ord("B"): m.BindComplete().encode(),
    ord("E"): m.typed(b"D", b"\x00\x01\x00\x00\x00\x04\x00\x00\x00\x01")
    + m.typed(b"C", m.cstr("SELECT 1")),
    ord("S"): m.ReadyForQuery("I").encode(),
    ord("H"): b"",
}


async def _canned(end: ServerEnd) -> None:
    """Answer the startup, then each message, until Terminate or EOF."""
    startup = await end.read(65536)
    if not startup:
        return
    end.write(_GREETING)
    buffer = b""
    while data := await end.read(65536):
        buffer += data
        out: list[bytes] = []
        while len(buffer) >= 5:
            size = 1 + int.from_bytes(buffer[1:5], "big")
            if len(buffer) < size:
                break
            kind, buffer = buffer[0], buffer[size:]
            if kind == ord("X"):
                end.close()
                return
            out.append(_ANSWERS[kind])
        if out:
            end.write(b"".join(out))


def canned_loop_factory(base: Callable[[], asyncio.AbstractEventLoop]) -> Any:
    """A loop class like ``base``'s whose unix connections reach the canned server in-process."""
    loop_class = type(base())

    class CannedLoop(loop_class):  # type: ignore[misc, valid-type]
        async def create_unix_connection(  # type: ignore[no-untyped-def]
            self, protocol_factory, path=None, **kwargs
        ):
            protocol = protocol_factory()
            transport, end = open_pipe(self, protocol, path or "")
            self.create_task(_canned(end))
            protocol.connection_made(transport)
            return transport, protocol

    return CannedLoop


def measure(count: int = 3000, *, loop: str = "uvloop") -> float:
    """µs of this process's CPU per new connection + SELECT 1 + close (after a warm-up)."""
    import asyncpg

    if loop == "uvloop":
        import uvloop

        base: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        base = asyncio.new_event_loop
    canned = canned_loop_factory(base)

    async def one() -> None:
        conn = await asyncpg.connect(DSN)
        try:
            if await conn.fetchval("SELECT 1") != 1:
                raise AssertionError("the canned server's answer was not read as 1")
        finally:
            await conn.close()

    async def run() -> float:
        for _ in range(min(300, count)):
            await one()
        start = time.process_time()
        for _ in range(count):
            await one()
        return (time.process_time() - start) / count * 1e6

    with asyncio.Runner(loop_factory=canned) as runner:
        return runner.run(run())


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    print(
        f"asyncpg new connection + SELECT 1 + close, canned in-process server: "
        f"{measure(n):.0f} µs CPU"
    )
