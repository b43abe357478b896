"""Sans-IO PostgreSQL v3 framing: bytes in any split in, typed messages out.

A :class:`FrontendParser` reads what a client sends (startup packets first: SSLRequest,
GSSENCRequest, CancelRequest, StartupMessage; then typed messages); a :class:`BackendParser`
reads what a server sends. Both buffer partial input, check every length against a bound before
buffering the body (PostgreSQL's own limits: 10,000 bytes for a startup packet, 1 GiB - 1 for a
message, see ``MAX_STARTUP_PACKET_LENGTH`` and ``PQ_LARGE_MESSAGE_LIMIT`` in the server), and
raise :class:`~tcpworkers.errors.PgProtocolError` for anything malformed. A parser that raised
stays broken: the stream has lost its framing and the connection must be closed.

Two levels, so the relay pays only for what it looks at: :meth:`next_frame` splits the stream
into :class:`Frame` (type byte + the message's raw bytes, header included, ready to forward),
and :func:`decode_frontend`/:func:`decode_backend` turn a frame into a message value (the
message classes, with ``encode()`` to build what the pooler sends, are in ``_messages``).
No asyncio.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import ClassVar, Literal, NamedTuple

from tcpworkers.errors import PgProtocolError

from . import _messages as m
from ._messages import I16, I32, U32, Message, TxnStatus

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "MAX_STARTUP_LENGTH",
    "SSL_REFUSED",
    "STARTUP",
    "BackendParser",
    "Frame",
    "FrontendParser",
    "bind_statement",
    "decode_backend",
    "decode_frontend",
    "error_response",
]

MAX_STARTUP_LENGTH = 10_000
MAX_MESSAGE_LENGTH = 0x3FFF_FFFF
STARTUP = 0  # Frame.type of an untyped startup-phase packet


_KINDS: dict[str, Literal["S", "P"]] = {"S": "S", "P": "P"}
_TXN: dict[str, TxnStatus] = {"I": "I", "T": "T", "E": "E"}


class Frame(NamedTuple):
    """One message as it came off the wire: ``raw`` includes the header (forward it as is)."""

    type: int  # the type byte as an int; STARTUP (0) for an untyped startup packet
    raw: bytes

    @property
    def body(self) -> bytes:
        return self.raw[4:] if self.type == STARTUP else self.raw[5:]


class _Cursor:
    """Reads one message body; every short read or bad value raises PgProtocolError."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def fail(self, why: str) -> PgProtocolError:
        return PgProtocolError(f"malformed {self.what} message: {why}")

    def take(self, n: int) -> bytes:
        end = self.pos + n
        if n < 0 or end > len(self.data):
            raise self.fail(
                f"needs {n} more bytes at offset {self.pos}, has {len(self.data) - self.pos}"
            )
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def int16(self) -> int:
        return int(I16.unpack(self.take(2))[0])

    def int32(self) -> int:
        return int(I32.unpack(self.take(4))[0])

    def uint32(self) -> int:
        return int(U32.unpack(self.take(4))[0])

    def byte(self) -> str:
        return chr(self.take(1)[0])

    def cstr(self) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise self.fail(f"string at offset {self.pos} has no terminating NUL")
        value = self.data[self.pos : end].decode("utf-8", "surrogateescape")
        self.pos = end + 1
        return value

    def count(self) -> int:
        n = self.int16()
        if n < 0:
            raise self.fail(f"negative count {n}")
        return n

    def int16s(self) -> tuple[int, ...]:
        return tuple(self.int16() for _ in range(self.count()))

    def values(self, n: int) -> tuple[bytes | None, ...]:
        out: list[bytes | None] = []
        for _ in range(n):
            size = self.int32()
            if size < -1:
                raise self.fail(f"value length {size}")
            out.append(None if size == -1 else self.take(size))
        return tuple(out)

    def rest(self) -> bytes:
        return self.take(len(self.data) - self.pos)

    def done(self, message: Message) -> Message:
        if self.pos != len(self.data):
            raise self.fail(f"{len(self.data) - self.pos} unexpected bytes at the end")
        return message

    def kind(self) -> Literal["S", "P"]:
        kind = self.byte()
        if kind in _KINDS:
            return _KINDS[kind]
        raise self.fail(f"kind {kind!r} is neither 'S' (statement) nor 'P' (portal)")


def _fields(c: _Cursor) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    while (code := c.byte()) != "\0":
        out.append((code, c.cstr()))
    return tuple(out)


def _startup(c: _Cursor) -> Message:
    code = c.int32()
    if code == m.SSL_REQUEST_CODE:
        return c.done(m.SSLRequest())
    if code == m.GSSENC_REQUEST_CODE:
        return c.done(m.GSSENCRequest())
    if code == m.CANCEL_REQUEST_CODE:
        return c.done(m.CancelRequest(c.int32(), c.int32()))
    if code >> 16 != 3:
        raise PgProtocolError(
            f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: this server speaks 3.x"
        )
    pairs: list[tuple[str, str]] = []
    while (name := c.cstr()) != "":
        pairs.append((name, c.cstr()))
    return c.done(m.StartupMessage(tuple(pairs), code))


_Decoder = Callable[[_Cursor], Message]

_FRONTEND: dict[int, tuple[str, _Decoder]] = {
    ord("Q"): ("Query", lambda c: c.done(m.Query(c.cstr()))),
    ord("P"): (
        "Parse",
        lambda c: c.done(m.Parse(c.cstr(), c.cstr(), tuple(c.uint32() for _ in range(c.count())))),
    ),
    ord("B"): (
        "Bind",
        lambda c: c.done(m.Bind(c.cstr(), c.cstr(), c.int16s(), c.values(c.count()), c.int16s())),
    ),
    ord("D"): ("Describe", lambda c: c.done(m.Describe(c.kind(), c.cstr()))),
    ord("E"): ("Execute", lambda c: c.done(m.Execute(c.cstr(), c.int32()))),
    ord("C"): ("Close", lambda c: c.done(m.Close(c.kind(), c.cstr()))),
    ord("S"): ("Sync", lambda c: c.done(m.Sync())),
    ord("H"): ("Flush", lambda c: c.done(m.Flush())),
    ord("X"): ("Terminate", lambda c: c.done(m.Terminate())),
    ord("d"): ("CopyData", lambda c: m.CopyData(c.rest())),
    ord("c"): ("CopyDone", lambda c: c.done(m.CopyDone())),
    ord("f"): ("CopyFail", lambda c: c.done(m.CopyFail(c.cstr()))),
    ord("p"): ("PasswordMessage", lambda c: m.PasswordMessage(c.rest())),
    ord("F"): ("FunctionCall", lambda c: m.FunctionCall(c.rest())),
}


def _auth(c: _Cursor) -> Message:
    code = c.int32()
    data = c.rest()
    if code in (0, 3) and data:
        raise c.fail(f"authentication code {code} carries {len(data)} unexpected bytes")
    if code == 5 and len(data) != 4:
        raise c.fail(f"MD5 salt is {len(data)} bytes, not 4")
    return m.Authentication(code, data)


def _row_description(c: _Cursor) -> Message:
    fields = tuple(
        (c.cstr(), c.uint32(), c.int16(), c.uint32(), c.int16(), c.int32(), c.int16())
        for _ in range(c.count())
    )
    return c.done(m.RowDescription(fields))


def _copy_response(cls: type[m.CopyInResponse]) -> _Decoder:
    return lambda c: c.done(cls(c.take(1)[0], c.int16s()))


def _negotiate(c: _Cursor) -> Message:
    minor = c.int32()
    n = c.int32()
    if n < 0:
        raise c.fail(f"negative count {n}")
    return c.done(m.NegotiateProtocolVersion(minor, tuple(c.cstr() for _ in range(n))))


def _ready(c: _Cursor) -> Message:
    status = c.byte()
    if status in _TXN:
        return c.done(m.ReadyForQuery(_TXN[status]))
    raise c.fail(f"transaction status {status!r} is not one of 'I', 'T', 'E'")


_BACKEND: dict[int, tuple[str, _Decoder]] = {
    ord("R"): ("Authentication", _auth),
    ord("S"): ("ParameterStatus", lambda c: c.done(m.ParameterStatus(c.cstr(), c.cstr()))),
    ord("K"): ("BackendKeyData", lambda c: c.done(m.BackendKeyData(c.int32(), c.int32()))),
    ord("Z"): ("ReadyForQuery", _ready),
    ord("E"): ("ErrorResponse", lambda c: c.done(m.ErrorResponse(_fields(c)))),
    ord("N"): ("NoticeResponse", lambda c: c.done(m.NoticeResponse(_fields(c)))),
    ord("A"): (
        "NotificationResponse",
        lambda c: c.done(m.NotificationResponse(c.int32(), c.cstr(), c.cstr())),
    ),
    ord("C"): ("CommandComplete", lambda c: c.done(m.CommandComplete(c.cstr()))),
    ord("1"): ("ParseComplete", lambda c: c.done(m.ParseComplete())),
    ord("2"): ("BindComplete", lambda c: c.done(m.BindComplete())),
    ord("3"): ("CloseComplete", lambda c: c.done(m.CloseComplete())),
    ord("n"): ("NoData", lambda c: c.done(m.NoData())),
    ord("I"): ("EmptyQueryResponse", lambda c: c.done(m.EmptyQueryResponse())),
    ord("s"): ("PortalSuspended", lambda c: c.done(m.PortalSuspended())),
    ord("D"): ("DataRow", lambda c: c.done(m.DataRow(c.values(c.count())))),
    ord("T"): ("RowDescription", _row_description),
    ord("t"): (
        "ParameterDescription",
        lambda c: c.done(m.ParameterDescription(tuple(c.uint32() for _ in range(c.count())))),
    ),
    ord("G"): ("CopyInResponse", _copy_response(m.CopyInResponse)),
    ord("H"): ("CopyOutResponse", _copy_response(m.CopyOutResponse)),
    ord("W"): ("CopyBothResponse", _copy_response(m.CopyBothResponse)),
    ord("d"): ("CopyData", lambda c: m.CopyData(c.rest())),
    ord("c"): ("CopyDone", lambda c: c.done(m.CopyDone())),
    ord("v"): ("NegotiateProtocolVersion", _negotiate),
    ord("V"): (
        "FunctionCallResponse",
        lambda c: c.done(m.FunctionCallResponse(c.values(1)[0])),
    ),
}


def _decode(table: dict[int, tuple[str, _Decoder]], side: str, frame: Frame) -> Message:
    if frame.type == STARTUP:
        return _startup(_Cursor(frame.body, "startup packet"))
    entry = table.get(frame.type)
    if entry is None:
        raise PgProtocolError(f"unknown {side} message type {chr(frame.type)!r}")
    name, decoder = entry
    return decoder(_Cursor(frame.body, name))


def decode_frontend(frame: Frame) -> Message:
    """The message a client sent, from its frame. Raises PgProtocolError when malformed."""
    return _decode(_FRONTEND, "frontend", frame)


def decode_backend(frame: Frame) -> Message:
    """The message a server sent, from its frame. Raises PgProtocolError when malformed."""
    return _decode(_BACKEND, "backend", frame)


class _Parser:
    _side: ClassVar[str] = ""
    _table: ClassVar[dict[int, tuple[str, _Decoder]]] = {}

    def __init__(self, *, max_length: int = MAX_MESSAGE_LENGTH, startup: bool = False) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._max = max_length
        self._startup = startup
        self._broken: PgProtocolError | None = None

    @property
    def in_startup(self) -> bool:
        """True while the next packet is an untyped startup-phase packet."""
        return self._startup

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def feed(self, data: bytes) -> None:
        if self._pos and self._pos >= len(self._buf) // 2:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def take_buffered(self) -> bytes:
        """Everything fed but not yet framed (e.g. to hand a stream over after startup)."""
        rest = bytes(self._buf[self._pos :])
        self._buf.clear()
        self._pos = 0
        return rest

    def _error(self, why: str) -> PgProtocolError:
        self._broken = PgProtocolError(why)
        return self._broken

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None until more bytes are fed."""
        if self._broken is not None:
            raise self._broken
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if self._startup:
            if avail < 4:
                return None
            length = I32.unpack_from(buf, pos)[0]
            if not 8 <= length <= MAX_STARTUP_LENGTH:
                raise self._error(
                    f"startup packet length {length} is outside 8..{MAX_STARTUP_LENGTH} "
                    "(is this client speaking the PostgreSQL protocol?)"
                )
            if avail < length:
                return None
            frame = Frame(STARTUP, bytes(buf[pos : pos + length]))
            code = I32.unpack_from(buf, pos + 4)[0]
            if code not in (m.SSL_REQUEST_CODE, m.GSSENC_REQUEST_CODE):
                # a StartupMessage (or a CancelRequest, which ends the stream)
                self._startup = False
        else:
            if avail < 5:
                return None
            kind = buf[pos]
            length = I32.unpack_from(buf, pos + 1)[0]
            if kind not in self._table:
                raise self._error(f"unknown {self._side} message type {chr(kind)!r}")
            if not 4 <= length <= self._max:
                raise self._error(
                    f"{self._table[kind][0]} message length {length} is outside 4..{self._max}"
                )
            if avail < length + 1:
                return None
            frame = Frame(kind, bytes(buf[pos : pos + length + 1]))
        self._pos += len(frame.raw)
        return frame

    def scan(self, stop: frozenset[int]) -> tuple[bytes, Frame | None]:
        """Skip over complete typed messages whose type is not in ``stop``: returns their raw
        bytes (one slice, to forward as they are) and the first complete frame whose type is in
        ``stop``, or None when the complete input is used up. The fast path for relaying."""
        if self._broken is not None:
            raise self._broken
        buf, table, most, unpack = self._buf, self._table, self._max, I32.unpack_from
        start = pos = self._pos
        end = len(buf)
        frame = None
        while end - pos >= 5:
            kind = buf[pos]
            length = unpack(buf, pos + 1)[0]
            if kind not in table:
                raise self._error(f"unknown {self._side} message type {chr(kind)!r}")
            if not 4 <= length <= most:
                raise self._error(f"{table[kind][0]} message length {length} is outside 4..{most}")
            if end - pos <= length:
                break
            if kind in stop:
                frame = Frame(kind, bytes(buf[pos : pos + length + 1]))
                self._pos = pos + length + 1
                return bytes(buf[start:pos]), frame
            pos += length + 1
        self._pos = pos
        return bytes(buf[start:pos]), None

    def next_message(self) -> Message | None:
        """The next complete message, decoded, or None until more bytes are fed."""
        frame = self.next_frame()
        if frame is None:
            return None
        try:
            return _decode(self._table, self._side, frame)
        except PgProtocolError as exc:
            self._broken = exc
            raise

    def frames(self) -> Iterator[Frame]:
        while (frame := self.next_frame()) is not None:
            yield frame

    def messages(self) -> Iterator[Message]:
        while (message := self.next_message()) is not None:
            yield message


class FrontendParser(_Parser):
    """Parses what a client sends; starts in the startup phase unless ``startup=False``."""

    _side = "frontend"
    _table = _FRONTEND

    def __init__(self, *, max_length: int = MAX_MESSAGE_LENGTH, startup: bool = True) -> None:
        super().__init__(max_length=max_length, startup=startup)


class BackendParser(_Parser):
    """Parses what a server sends (after an SSLRequest's one-byte answer, which is not framed)."""

    _side = "backend"
    _table = _BACKEND


def bind_statement(body: bytes) -> tuple[int, str, int]:
    """Where a Bind body's portal name ends, its statement name, and where the rest starts: what
    renaming the statement needs, without decoding the parameters."""
    first = body.find(0)
    second = body.find(0, first + 1)
    if first < 0 or second < 0:
        raise PgProtocolError("malformed Bind message: missing portal or statement name")
    return first + 1, body[first + 1 : second].decode("utf-8", "surrogateescape"), second + 1


def error_response(
    sqlstate: str,
    message: str,
    *,
    severity: str = "ERROR",
    detail: str | None = None,
    hint: str | None = None,
    notice: bool = False,
) -> bytes:
    """An encoded ErrorResponse (or NoticeResponse) as PostgreSQL would send it."""
    fields = [("S", severity), ("V", severity), ("C", sqlstate), ("M", message)]
    if detail:
        fields.append(("D", detail))
    if hint:
        fields.append(("H", hint))
    cls = m.NoticeResponse if notice else m.ErrorResponse
    return cls(tuple(fields)).encode()


SSL_REFUSED = b"N"  # the one-byte answer to SSLRequest/GSSENCRequest: not supported here
