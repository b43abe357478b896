"""Helpers: run a simple query on a raw ServerConnection (the pool's view of a server)."""

from __future__ import annotations

import struct

from tcpworkers.pool._upstream import ServerConnection


async def simple_query(conn: ServerConnection, sql: str) -> list[list[str | None]]:
    """Send a Query, return the text values of every DataRow, raise on ErrorResponse."""
    body = sql.encode() + b"\0"
    conn.writer.write(b"Q" + struct.pack("!i", len(body) + 4) + body)
    rows: list[list[str | None]] = []
    error = None
    while True:
        kind, length = struct.unpack("!ci", await conn.reader.readexactly(5))
        payload = await conn.reader.readexactly(length - 4)
        if kind == b"D":
            (count,) = struct.unpack("!h", payload[:2])
            pos, row = 2, []
            for _ in range(count):
                (size,) = struct.unpack("!i", payload[pos : pos + 4])
                pos += 4
                if size < 0:
                    row.append(None)
                else:
                    row.append(payload[pos : pos + size].decode())
                    pos += size
            rows.append(row)
        elif kind == b"E":
            error = payload
        elif kind == b"Z":
            if error is not None:
                raise AssertionError(f"query failed: {error!r}")
            return rows
