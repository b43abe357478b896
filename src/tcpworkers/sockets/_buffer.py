"""The receive buffer: a queue of immutable chunks with zero-copy hand-out.

asyncio's ``Protocol.data_received`` already gives us a fresh ``bytes`` per receive, so a read
that can take a whole chunk returns that very object. (A ``BufferedProtocol`` would receive into
our own ``bytearray`` and then need one more copy to produce the immutable ``bytes`` that
``read()`` promises; measured in benchmarks/bench_sockets.py.)
"""

from __future__ import annotations

from collections import deque
from typing import final

__all__ = ["ReadBuffer"]


@final
class ReadBuffer:
    """Received bytes not yet read, in arrival order."""

    __slots__ = ("_chunks", "_offset", "_size")

    def __init__(self) -> None:
        self._chunks: deque[bytes] = deque()
        self._offset = 0  # bytes of _chunks[0] already handed out
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def append(self, chunk: bytes) -> None:
        if chunk:
            self._chunks.append(chunk)
            self._size += len(chunk)

    def take(self, max_bytes: int) -> bytes:
        """Remove and return up to ``max_bytes`` from the first chunk (``b""`` when empty).

        A whole chunk is returned as it is; a larger one is handed out in pieces, each copied
        once, keeping an offset instead of re-slicing the remainder.
        """
        if not self._chunks:
            return b""
        first = self._chunks[0]
        offset = self._offset
        available = len(first) - offset
        if available <= max_bytes:
            self._chunks.popleft()
            self._offset = 0
            self._size -= available
            return first if offset == 0 else first[offset:]
        self._offset = offset + max_bytes
        self._size -= max_bytes
        return first[offset : offset + max_bytes]

    def take_exactly(self, n: int) -> bytes:
        """Remove and return ``min(n, len(self))`` bytes, joining chunks as needed."""
        if self._chunks and len(self._chunks[0]) - self._offset >= n:
            return self.take(n)
        parts: list[bytes] = []
        wanted = min(n, self._size)
        while wanted:
            part = self.take(wanted)
            parts.append(part)
            wanted -= len(part)
        return b"".join(parts)

    def find(self, sep: bytes, start: int) -> int:
        """Index of ``sep`` at or after ``start`` in the buffered bytes, or -1."""
        if len(self._chunks) > 1 or self._offset:
            # Searching across chunk borders is simplest on one contiguous object; merging also
            # makes the next search start from one chunk again.
            merged = b"".join(self._chunks)[self._offset :]
            self._chunks.clear()
            self._chunks.append(merged)
            self._offset = 0
        return self._chunks[0].find(sep, start) if self._chunks else -1

    def clear(self) -> None:
        self._chunks.clear()
        self._offset = 0
        self._size = 0
