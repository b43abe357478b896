"""The receive buffer: zero-copy hand-out of whole chunks, exact takes, separator search."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tcpworkers.sockets._buffer import ReadBuffer


def test_whole_chunk_is_returned_without_copying() -> None:
    buf = ReadBuffer()
    chunk = b"x" * 1000
    buf.append(chunk)
    assert buf.take(65536) is chunk
    assert len(buf) == 0
    assert buf.take(10) == b""


def test_large_chunk_is_handed_out_in_pieces() -> None:
    buf = ReadBuffer()
    buf.append(b"abcdefghij")
    assert [buf.take(4), buf.take(4), buf.take(4)] == [b"abcd", b"efgh", b"ij"]
    assert len(buf) == 0


def test_take_exactly_joins_chunks_and_find_spans_them() -> None:
    buf = ReadBuffer()
    for part in (b"he", b"llo\r", b"\nrest"):
        buf.append(part)
    assert buf.find(b"\r\n", 0) == 5
    assert buf.take_exactly(7) == b"hello\r\n"
    assert buf.take_exactly(100) == b"rest"


def test_empty_chunks_are_ignored() -> None:
    buf = ReadBuffer()
    buf.append(b"")
    assert len(buf) == 0
    assert buf.find(b"x", 0) == -1


@given(st.lists(st.binary(max_size=50), max_size=20), st.lists(st.integers(1, 70), max_size=40))
def test_takes_return_the_stream_in_order(chunks: list[bytes], sizes: list[int]) -> None:
    buf = ReadBuffer()
    for chunk in chunks:
        buf.append(chunk)
    stream = b"".join(chunks)
    out = bytearray()
    for i, size in enumerate(sizes):
        piece = buf.take(size) if i % 2 else buf.take_exactly(size)
        assert len(piece) <= size
        out += piece
        assert len(buf) == len(stream) - len(out)
    out += buf.take_exactly(len(buf))
    assert bytes(out) == stream
