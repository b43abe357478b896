"""PostgreSQL v3 framing: round trips, any split of a stream, bounds, and garbage.

Sans-IO: no event loop, no sockets.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpworkers.errors import PgProtocolError
from tcpworkers.pool import _messages as m
from tcpworkers.pool._wire import (
    MAX_STARTUP_LENGTH,
    SSL_REFUSED,
    STARTUP,
    BackendParser,
    Frame,
    FrontendParser,
    decode_backend,
    error_response,
)

text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"), max_size=40)
i32 = st.integers(-(2**31), 2**31 - 1)
u32 = st.integers(0, 2**32 - 1)
i16 = st.integers(-(2**15), 2**15 - 1)
blob = st.binary(max_size=64)
values = st.lists(st.none() | blob, max_size=6).map(tuple)
int16s = st.lists(i16, max_size=6).map(tuple)
kind = st.sampled_from(["S", "P"])
fields = st.lists(st.tuples(st.sampled_from("SVCMDHPpqWstcdnFLR"), text), max_size=6).map(tuple)

frontend_typed = st.one_of(
    st.builds(m.Query, text),
    st.builds(m.Parse, text, text, st.lists(u32, max_size=5).map(tuple)),
    st.builds(m.Bind, text, text, int16s, values, int16s),
    st.builds(m.Describe, kind, text),
    st.builds(m.Execute, text, i32),
    st.builds(m.Close, kind, text),
    st.just(m.Sync()),
    st.just(m.Flush()),
    st.builds(m.CopyData, blob),
    st.just(m.CopyDone()),
    st.builds(m.CopyFail, text),
    st.builds(m.PasswordMessage, blob),
    st.builds(m.FunctionCall, blob),
)
startup = st.builds(
    m.StartupMessage,
    st.lists(st.tuples(text.filter(bool), text), max_size=4).map(tuple),
)
backend = st.one_of(
    st.builds(m.Authentication, st.sampled_from([0, 3])),
    st.builds(m.Authentication, st.just(5), st.binary(min_size=4, max_size=4)),
    st.builds(m.Authentication, st.sampled_from([10, 11, 12]), blob),
    st.builds(m.ParameterStatus, text, text),
    st.builds(m.BackendKeyData, i32, i32),
    st.builds(m.ReadyForQuery, st.sampled_from(["I", "T", "E"])),
    st.builds(m.ErrorResponse, fields),
    st.builds(m.NoticeResponse, fields),
    st.builds(m.NotificationResponse, i32, text, text),
    st.builds(m.CommandComplete, text),
    st.sampled_from(
        [
            m.ParseComplete(),
            m.BindComplete(),
            m.CloseComplete(),
            m.NoData(),
            m.EmptyQueryResponse(),
            m.PortalSuspended(),
            m.CopyDone(),
        ]
    ),
    st.builds(m.DataRow, values),
    st.builds(
        m.RowDescription,
        st.lists(st.tuples(text, u32, i16, u32, i16, i32, i16), max_size=3).map(tuple),
    ),
    st.builds(m.ParameterDescription, st.lists(u32, max_size=5).map(tuple)),
    st.builds(m.CopyInResponse, st.integers(0, 1), int16s),
    st.builds(m.CopyOutResponse, st.integers(0, 1), int16s),
    st.builds(m.CopyBothResponse, st.integers(0, 1), int16s),
    st.builds(m.CopyData, blob),
    st.builds(m.NegotiateProtocolVersion, i32, st.lists(text, max_size=3).map(tuple)),
    st.builds(m.FunctionCallResponse, st.none() | blob),
)


def feed_in_pieces(
    parser: FrontendParser | BackendParser, data: bytes, cuts: list[int]
) -> list[m.Message]:
    out: list[m.Message] = []
    last = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        parser.feed(data[last:cut])
        last = cut
        out.extend(parser.messages())
    assert parser.buffered == 0
    return out


@settings(max_examples=300)
@given(
    st.lists(st.sampled_from([m.SSLRequest(), m.GSSENCRequest()]), max_size=2),
    startup,
    st.lists(frontend_typed, max_size=12),
    st.lists(st.integers(0, 10_000), max_size=12),
)
def test_frontend_stream_any_split(
    pre: list[m.Message], hello: m.StartupMessage, msgs: list[m.Message], cuts: list[int]
) -> None:
    sent = [*pre, hello, *msgs, m.Terminate()]
    data = b"".join(x.encode() for x in sent)
    assert feed_in_pieces(FrontendParser(), data, cuts) == sent
    one = FrontendParser()
    one.feed(data)
    assert list(one.messages()) == sent


@settings(max_examples=300)
@given(st.lists(backend, max_size=15), st.lists(st.integers(0, 10_000), max_size=12))
def test_backend_stream_any_split(msgs: list[m.Message], cuts: list[int]) -> None:
    data = b"".join(x.encode() for x in msgs)
    assert feed_in_pieces(BackendParser(), data, cuts) == msgs


@settings(max_examples=500)
@given(st.binary(max_size=200), st.booleans(), st.lists(st.integers(0, 300), max_size=6))
def test_garbage_raises_protocol_error_or_waits(junk: bytes, front: bool, cuts: list[int]) -> None:
    """Arbitrary bytes: messages, a PgProtocolError, or "need more"; never another exception
    and never a loop that does not end (every step consumes input or stops)."""
    parser: FrontendParser | BackendParser = FrontendParser() if front else BackendParser()
    last = 0
    try:
        for cut in [*sorted(c % (len(junk) + 1) for c in cuts), len(junk)]:
            parser.feed(junk[last:cut])
            last = cut
            for _ in parser.messages():
                pass
    except PgProtocolError as exc:
        first = str(exc)
    else:
        return
    assert first
    with pytest.raises(PgProtocolError):  # broken stays broken
        parser.next_frame()


def test_frames_keep_raw_bytes_for_forwarding() -> None:
    data = m.Query("select 1").encode() + m.Sync().encode()
    parser = FrontendParser(startup=False)
    parser.feed(data[:3])
    assert parser.next_frame() is None
    parser.feed(data[3:])
    frames = list(parser.frames())
    assert [f.type for f in frames] == [ord("Q"), ord("S")]
    assert b"".join(f.raw for f in frames) == data
    assert frames[0].body == b"select 1\0"


def test_startup_phase_ssl_then_startup_then_typed() -> None:
    parser = FrontendParser()
    parser.feed(m.SSLRequest().encode())
    assert parser.next_message() == m.SSLRequest()
    assert parser.in_startup
    parser.feed(m.StartupMessage((("user", "app"), ("database", "db"))).encode())
    hello = parser.next_message()
    assert isinstance(hello, m.StartupMessage)
    assert hello.get("user") == "app"
    assert hello.get("options") is None
    assert not parser.in_startup
    parser.feed(m.Query("x").encode())
    assert parser.next_message() == m.Query("x")


def test_cancel_request() -> None:
    parser = FrontendParser()
    parser.feed(m.CancelRequest(1234, -5).encode())
    assert parser.next_message() == m.CancelRequest(1234, -5)


def test_startup_length_is_bounded() -> None:
    parser = FrontendParser()
    parser.feed((MAX_STARTUP_LENGTH + 1).to_bytes(4, "big") + b"\0\3\0\0")
    with pytest.raises(PgProtocolError, match="startup packet length 10001"):
        parser.next_frame()


def test_message_length_is_bounded_before_the_body_arrives() -> None:
    parser = BackendParser(max_length=1024)
    parser.feed(b"D" + (2000).to_bytes(4, "big"))
    with pytest.raises(PgProtocolError, match=r"DataRow message length 2000 is outside 4\.\.1024"):
        parser.next_frame()


def test_unknown_type_and_old_protocol() -> None:
    parser = FrontendParser(startup=False)
    parser.feed(b"Z\0\0\0\4")
    with pytest.raises(PgProtocolError, match="unknown frontend message type 'Z'"):
        parser.next_frame()
    parser = FrontendParser()
    parser.feed(m.StartupMessage((), protocol=2 << 16).encode())
    with pytest.raises(PgProtocolError, match=r"unsupported frontend protocol 2\.0"):
        parser.next_message()


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"Z\0\0\0\5X", "transaction status 'X'"),
        (b"Z\0\0\0\6II", "1 unexpected bytes"),
        (b"S\0\0\0\6ab", "no terminating NUL"),
        (b"D\0\0\0\6\0\1", "needs 4 more bytes"),
        (b"D\0\0\0\x0a\0\1\xff\xff\xff\xfe", "value length -2"),
        (b"R\0\0\0\x0a\0\0\0\5ab", "MD5 salt is 2 bytes"),
    ],
)
def test_malformed_backend_bodies(raw: bytes, why: str) -> None:
    parser = BackendParser()
    parser.feed(raw)
    with pytest.raises(PgProtocolError, match=why):
        parser.next_message()


def test_builders_the_pooler_uses() -> None:
    encoded = error_response("53300", "pool full", detail="d", hint="raise max_size")
    message = decode_backend(Frame(encoded[0], encoded))
    assert isinstance(message, m.ErrorResponse)
    assert (message.sqlstate, message.message, message.get("H")) == (
        "53300",
        "pool full",
        "raise max_size",
    )
    notice = decode_backend(Frame(ord("N"), error_response("01000", "hi", notice=True)))
    assert isinstance(notice, m.NoticeResponse)
    assert SSL_REFUSED == b"N"
    assert STARTUP == 0
    sasl = m.Authentication(m.AUTH_SASL, b"SCRAM-SHA-256\0SCRAM-SHA-256-PLUS\0\0")
    assert sasl.mechanisms == ("SCRAM-SHA-256", "SCRAM-SHA-256-PLUS")
    assert m.PasswordMessage(b"secret\0").password == "secret"
    with pytest.raises(ValueError, match="NUL"):
        m.Query("a\0b").encode()


def test_non_utf8_query_text_survives_unchanged() -> None:
    raw = b"Q\0\0\0\x0dselect \xe9\0"  # latin-1 bytes from a client_encoding=LATIN1 client
    parser = FrontendParser(startup=False)
    parser.feed(raw)
    query = parser.next_message()
    assert isinstance(query, m.Query)
    assert query.encode() == raw


@settings(max_examples=300)
@given(
    st.lists(backend, min_size=1, max_size=6),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=4),
)
def test_corrupted_valid_stream_never_crashes(
    msgs: list[m.Message], flips: list[tuple[int, int]]
) -> None:
    """Valid messages with a few bytes overwritten: the hard case for a parser (plausible
    types and lengths); it yields messages, raises PgProtocolError, or waits for more."""
    data = bytearray(b"".join(x.encode() for x in msgs))
    for where, value in flips:
        data[where % len(data)] = value
    parser = BackendParser(max_length=4096)
    parser.feed(bytes(data))
    try:
        for _ in parser.messages():
            pass
    except PgProtocolError:
        return
    assert parser.buffered < 4096 + 5


@settings(max_examples=200)
@given(
    st.lists(backend, max_size=15),
    st.lists(st.integers(0, 10_000), max_size=8),
    st.frozensets(st.sampled_from(b"ZCESDT1")),
)
def test_scan_forwards_the_same_bytes_and_stops_where_asked(
    msgs: list[m.Message], cuts: list[int], stop: frozenset[int]
) -> None:
    data = b"".join(x.encode() for x in msgs)
    parser = BackendParser()
    seen = bytearray()
    stopped: list[int] = []
    last = 0
    for cut in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        parser.feed(data[last:cut])
        last = cut
        while True:
            passed, frame = parser.scan(stop)
            seen += passed
            if frame is None:
                break
            stopped.append(frame.type)
            seen += frame.raw
    assert bytes(seen) == data
    assert stopped == [x.TYPE[0] for x in msgs if x.TYPE[0] in stop]
