"""PostgreSQL protocol 3.0 messages as typed values: each knows its type byte and encodes itself.

Frontend messages are what a client (a driver, or the pooler speaking upstream) sends; backend
messages are what a server (PostgreSQL, or the pooler speaking to a driver) sends. Decoding lives
in :mod:`tcpworkers.pool._wire`. Strings are UTF-8 with ``surrogateescape``, so any bytes a peer
sends survive a decode/encode round trip unchanged (the pooler keys statements by query text and
must never alter it). Layouts: https://www.postgresql.org/docs/current/protocol-message-formats.html
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar, Literal

I16 = struct.Struct("!h")
I32 = struct.Struct("!i")
U32 = struct.Struct("!I")
HEADER = struct.Struct("!ci")

# Untyped startup-phase packets carry a code instead of a type byte (protocol.h).
PROTOCOL_3_0 = 3 << 16
CANCEL_REQUEST_CODE = 80877102
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104

TxnStatus = Literal["I", "T", "E"]


def cstr(value: str) -> bytes:
    data = value.encode("utf-8", "surrogateescape")
    if b"\0" in data:
        raise ValueError(f"a protocol string cannot contain a NUL byte: {value!r}")
    return data + b"\0"


def typed(kind: bytes, body: bytes = b"") -> bytes:
    return HEADER.pack(kind, len(body) + 4) + body


def untyped(body: bytes) -> bytes:
    return I32.pack(len(body) + 4) + body


def _int16s(values: tuple[int, ...]) -> bytes:
    return I16.pack(len(values)) + b"".join(I16.pack(v) for v in values)


class Message:
    """Base of every message; ``TYPE`` is the type byte (``b""`` for untyped startup packets)."""

    __slots__ = ()
    TYPE: ClassVar[bytes] = b""

    def encode(self) -> bytes:
        return typed(self.TYPE)


# -- frontend: startup phase (untyped) -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StartupMessage(Message):
    parameters: tuple[tuple[str, str], ...]
    protocol: int = PROTOCOL_3_0

    def encode(self) -> bytes:
        pairs = b"".join(cstr(k) + cstr(v) for k, v in self.parameters)
        return untyped(I32.pack(self.protocol) + pairs + b"\0")

    def get(self, name: str, default: str | None = None) -> str | None:
        return next((v for k, v in self.parameters if k == name), default)


@dataclass(frozen=True, slots=True)
class SSLRequest(Message):
    def encode(self) -> bytes:
        return untyped(I32.pack(SSL_REQUEST_CODE))


@dataclass(frozen=True, slots=True)
class GSSENCRequest(Message):
    def encode(self) -> bytes:
        return untyped(I32.pack(GSSENC_REQUEST_CODE))


@dataclass(frozen=True, slots=True)
class CancelRequest(Message):
    backend_pid: int
    backend_secret: int

    def encode(self) -> bytes:
        return untyped(
            I32.pack(CANCEL_REQUEST_CODE)
            + I32.pack(self.backend_pid)
            + I32.pack(self.backend_secret)
        )


# -- frontend: typed -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query(Message):
    TYPE = b"Q"
    sql: str

    def encode(self) -> bytes:
        return typed(b"Q", cstr(self.sql))


@dataclass(frozen=True, slots=True)
class Parse(Message):
    TYPE = b"P"
    name: str
    sql: str
    param_types: tuple[int, ...] = ()

    def encode(self) -> bytes:
        types = I16.pack(len(self.param_types)) + b"".join(U32.pack(t) for t in self.param_types)
        return typed(b"P", cstr(self.name) + cstr(self.sql) + types)


@dataclass(frozen=True, slots=True)
class Bind(Message):
    TYPE = b"B"
    portal: str
    statement: str
    param_formats: tuple[int, ...] = ()
    params: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()

    def encode(self) -> bytes:
        values = b"".join(I32.pack(-1) if v is None else I32.pack(len(v)) + v for v in self.params)
        return typed(
            b"B",
            cstr(self.portal)
            + cstr(self.statement)
            + _int16s(self.param_formats)
            + I16.pack(len(self.params))
            + values
            + _int16s(self.result_formats),
        )


@dataclass(frozen=True, slots=True)
class Describe(Message):
    TYPE = b"D"
    kind: Literal["S", "P"]
    name: str

    def encode(self) -> bytes:
        return typed(b"D", self.kind.encode() + cstr(self.name))


@dataclass(frozen=True, slots=True)
class Execute(Message):
    TYPE = b"E"
    portal: str = ""
    max_rows: int = 0

    def encode(self) -> bytes:
        return typed(b"E", cstr(self.portal) + I32.pack(self.max_rows))


@dataclass(frozen=True, slots=True)
class Close(Message):
    TYPE = b"C"
    kind: Literal["S", "P"]
    name: str

    def encode(self) -> bytes:
        return typed(b"C", self.kind.encode() + cstr(self.name))


@dataclass(frozen=True, slots=True)
class Sync(Message):
    TYPE = b"S"


@dataclass(frozen=True, slots=True)
class Flush(Message):
    TYPE = b"H"


@dataclass(frozen=True, slots=True)
class Terminate(Message):
    TYPE = b"X"


@dataclass(frozen=True, slots=True)
class CopyData(Message):
    """Sent by both sides (type ``d``)."""

    TYPE = b"d"
    data: bytes

    def encode(self) -> bytes:
        return typed(b"d", self.data)


@dataclass(frozen=True, slots=True)
class CopyDone(Message):
    """Sent by both sides (type ``c``)."""

    TYPE = b"c"


@dataclass(frozen=True, slots=True)
class CopyFail(Message):
    TYPE = b"f"
    message: str

    def encode(self) -> bytes:
        return typed(b"f", cstr(self.message))


@dataclass(frozen=True, slots=True)
class PasswordMessage(Message):
    """Type ``p``: a password, or a SASL/GSS response; only the context tells which."""

    TYPE = b"p"
    data: bytes

    def encode(self) -> bytes:
        return typed(b"p", self.data)

    @property
    def password(self) -> str:
        return self.data.rstrip(b"\0").decode("utf-8", "surrogateescape")


@dataclass(frozen=True, slots=True)
class FunctionCall(Message):
    """Type ``F``: the legacy fast-path call, kept opaque (the pooler only relays it)."""

    TYPE = b"F"
    body: bytes

    def encode(self) -> bytes:
        return typed(b"F", self.body)


# -- backend -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authentication(Message):
    """Type ``R``; ``code`` 0 ok, 3 cleartext, 5 MD5 (``data`` = salt), 10 SASL (``data`` =
    mechanism list), 11 SASL continue, 12 SASL final; other codes (GSS, SSPI) kept opaque."""

    TYPE = b"R"
    code: int
    data: bytes = b""

    def encode(self) -> bytes:
        return typed(b"R", I32.pack(self.code) + self.data)

    @property
    def mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms of an AuthenticationSASL message (code 10)."""
        return tuple(m.decode("ascii", "replace") for m in self.data.split(b"\0") if m)


AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12


@dataclass(frozen=True, slots=True)
class ParameterStatus(Message):
    TYPE = b"S"
    name: str
    value: str

    def encode(self) -> bytes:
        return typed(b"S", cstr(self.name) + cstr(self.value))


@dataclass(frozen=True, slots=True)
class BackendKeyData(Message):
    TYPE = b"K"
    backend_pid: int
    backend_secret: int

    def encode(self) -> bytes:
        return typed(b"K", I32.pack(self.backend_pid) + I32.pack(self.backend_secret))


@dataclass(frozen=True, slots=True)
class ReadyForQuery(Message):
    TYPE = b"Z"
    txn_status: TxnStatus

    def encode(self) -> bytes:
        return typed(b"Z", self.txn_status.encode())


@dataclass(frozen=True, slots=True)
class ErrorResponse(Message):
    """Type ``E``: ``fields`` are (code, value) pairs in wire order; ``S`` severity, ``V`` the
    untranslated severity, ``C`` SQLSTATE, ``M`` message, ``D`` detail, ``H`` hint..."""

    TYPE = b"E"
    fields: tuple[tuple[str, str], ...]

    def encode(self) -> bytes:
        return typed(self.TYPE, b"".join(c.encode() + cstr(v) for c, v in self.fields) + b"\0")

    def get(self, code: str, default: str = "") -> str:
        return next((v for c, v in self.fields if c == code), default)

    @property
    def sqlstate(self) -> str:
        return self.get("C")

    @property
    def message(self) -> str:
        return self.get("M")


@dataclass(frozen=True, slots=True)
class NoticeResponse(ErrorResponse):
    TYPE = b"N"


@dataclass(frozen=True, slots=True)
class NotificationResponse(Message):
    TYPE = b"A"
    backend_pid: int
    channel: str
    payload: str

    def encode(self) -> bytes:
        return typed(b"A", I32.pack(self.backend_pid) + cstr(self.channel) + cstr(self.payload))


@dataclass(frozen=True, slots=True)
class CommandComplete(Message):
    TYPE = b"C"
    tag: str

    def encode(self) -> bytes:
        return typed(b"C", cstr(self.tag))


@dataclass(frozen=True, slots=True)
class ParseComplete(Message):
    TYPE = b"1"


@dataclass(frozen=True, slots=True)
class BindComplete(Message):
    TYPE = b"2"


@dataclass(frozen=True, slots=True)
class CloseComplete(Message):
    TYPE = b"3"


@dataclass(frozen=True, slots=True)
class NoData(Message):
    TYPE = b"n"


@dataclass(frozen=True, slots=True)
class EmptyQueryResponse(Message):
    TYPE = b"I"


@dataclass(frozen=True, slots=True)
class PortalSuspended(Message):
    TYPE = b"s"


@dataclass(frozen=True, slots=True)
class DataRow(Message):
    TYPE = b"D"
    values: tuple[bytes | None, ...]

    def encode(self) -> bytes:
        cols = b"".join(I32.pack(-1) if v is None else I32.pack(len(v)) + v for v in self.values)
        return typed(b"D", I16.pack(len(self.values)) + cols)


@dataclass(frozen=True, slots=True)
class RowDescription(Message):
    """Type ``T``; each field: (name, table_oid, column, type_oid, type_size, type_mod, format)."""

    TYPE = b"T"
    fields: tuple[tuple[str, int, int, int, int, int, int], ...]

    def encode(self) -> bytes:
        body = b"".join(cstr(f[0]) + struct.pack("!IhIhih", *f[1:]) for f in self.fields)
        return typed(b"T", I16.pack(len(self.fields)) + body)


@dataclass(frozen=True, slots=True)
class ParameterDescription(Message):
    TYPE = b"t"
    type_oids: tuple[int, ...]

    def encode(self) -> bytes:
        oids = b"".join(U32.pack(t) for t in self.type_oids)
        return typed(b"t", I16.pack(len(self.type_oids)) + oids)


@dataclass(frozen=True, slots=True)
class CopyInResponse(Message):
    """Types ``G`` (copy in), ``H`` (copy out), ``W`` (copy both): overall and column formats."""

    TYPE = b"G"
    format: int
    column_formats: tuple[int, ...]

    def encode(self) -> bytes:
        return typed(self.TYPE, bytes([self.format]) + _int16s(self.column_formats))


@dataclass(frozen=True, slots=True)
class CopyOutResponse(CopyInResponse):
    TYPE = b"H"


@dataclass(frozen=True, slots=True)
class CopyBothResponse(CopyInResponse):
    TYPE = b"W"


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion(Message):
    TYPE = b"v"
    newest_minor: int
    unrecognized: tuple[str, ...]

    def encode(self) -> bytes:
        names = b"".join(cstr(n) for n in self.unrecognized)
        return typed(b"v", I32.pack(self.newest_minor) + I32.pack(len(self.unrecognized)) + names)


@dataclass(frozen=True, slots=True)
class FunctionCallResponse(Message):
    TYPE = b"V"
    value: bytes | None

    def encode(self) -> bytes:
        v = self.value
        return typed(b"V", I32.pack(-1) if v is None else I32.pack(len(v)) + v)
