"""The client leg's startup: local, cheap, no TLS and no SCRAM.

SSLRequest and GSSENCRequest are answered ``N`` (the client leg is a local socket or in-process),
the user and database must be the binding's, and the password is the binding's per-runtime
secret, sent as cleartext (AuthenticationCleartextPassword) and compared in constant time. The
client then sees what a PostgreSQL server would send: AuthenticationOk, the ParameterStatus
values of the pool's server connections, a synthetic BackendKeyData (mapped to the real server
connection by the relay when a CancelRequest arrives) and ReadyForQuery 'I'.
"""

from __future__ import annotations

import hmac
import weakref
from collections.abc import Mapping
from typing import Final

from tcpworkers.errors import PgProtocolError

from . import _messages as m
from ._pool import Pool
from ._streams import ClientReader, ClientWriter
from ._wire import SSL_REFUSED, Frame, FrontendParser, decode_frontend, error_response

__all__ = ["LOGIN_TIMEOUT", "fatal", "login"]

LOGIN_TIMEOUT: Final = 15.0
# Startup parameters a client may send whatever their value: the pool's server connections use
# their own (application_name is the binding's), and PostgreSQL 12+ prints floats the same way
# for every positive extra_float_digits.
_IGNORED: Final = frozenset({"application_name", "fallback_application_name", "extra_float_digits"})


def fatal(sqlstate: str, message: str, hint: str | None = None) -> bytes:
    return error_response(sqlstate, message, severity="FATAL", hint=hint)


def _normalise(value: str) -> str:
    return value.strip().strip("'\"").upper().replace("-", "").replace("_", "")


async def _next_frame(reader: ClientReader, parser: FrontendParser) -> Frame:
    while (frame := parser.next_frame()) is None:
        data = await reader.read(65536)
        if not data:
            raise EOFError
        parser.feed(data)
    return frame


def _check_parameters(hello: m.StartupMessage, pool: Pool) -> bytes | None:
    """A FATAL error for a startup parameter the pool cannot honour, or None."""
    for name, value in hello.parameters:
        if name in ("user", "database") or name in _IGNORED or name.startswith("_pq_."):
            continue
        if name == "replication":
            return fatal("08P01", "replication connections are not supported by the pool binding")
        current = pool.parameters.get(name) or pool.parameters.get(
            next((k for k in pool.parameters if k.lower() == name.lower()), "")
        )
        if current is not None and _normalise(current) == _normalise(value):
            continue
        if name == "options" and not value.strip():
            continue
        shown = f" (the pool's server connections use {name}={current!r})" if current else ""
        return fatal(
            "08P01",
            f"startup parameter {name}={value!r} is not supported by pool binding "
            f"{pool.name!r}{shown}",
            hint="drop it from the connection settings, or set it per transaction with SET LOCAL",
        )
    return None


async def login(
    reader: ClientReader,
    writer: ClientWriter,
    pool: Pool,
    *,
    user: str,
    database: str,
    password: str | None,
    backend_key: tuple[int, int],
) -> FrontendParser | m.CancelRequest | None:
    """Run the startup exchange. Returns the parser (now past startup, possibly holding the
    client's first messages), a CancelRequest to act on, or None when the client was refused
    (the FATAL error is already written)."""
    parser = FrontendParser()
    known = _accepted(pool)
    while True:
        frame = await _next_frame(reader, parser)
        if frame.raw in known:  # the same bytes as a startup packet accepted before
            hello = None
            break
        message = decode_frontend(frame)
        if isinstance(message, m.SSLRequest | m.GSSENCRequest):
            writer.write(SSL_REFUSED)
            continue
        if isinstance(message, m.CancelRequest):
            return message
        if not isinstance(message, m.StartupMessage):
            raise PgProtocolError(f"expected a startup packet, got {type(message).__name__}")
        hello = message
        break
    if hello is not None:
        refused = _check_startup(hello, pool, user, database)
        if refused is not None:
            writer.write(refused)
            return None
        extensions = tuple(name for name, _ in hello.parameters if name.startswith("_pq_."))
        if hello.protocol != m.PROTOCOL_3_0 or extensions:  # we speak 3.0 and no extensions
            writer.write(m.NegotiateProtocolVersion(0, extensions).encode())
    if password is not None and not await _authenticate(
        reader, writer, parser, pool, user, password
    ):
        return None
    if hello is not None:
        if not pool.parameters:  # nothing opened yet: learn the server's parameters first
            try:
                pool.release(await pool.acquire())
            except Exception as exc:
                sqlstate = getattr(exc, "sqlstate", "") or "08006"
                writer.write(fatal(sqlstate, f"pool binding {pool.name!r}: {exc}"))
                return None
        refused = _check_parameters(hello, pool)
        if refused is not None:
            writer.write(refused)
            return None
        if hello.protocol == m.PROTOCOL_3_0 and not extensions:
            _remember(pool, frame.raw)
    # One write: AuthenticationOk, the ParameterStatus block, BackendKeyData, ReadyForQuery.
    writer.write(_greeting(pool) + m.BackendKeyData(*backend_key).encode() + _READY)
    return parser


async def _authenticate(
    reader: ClientReader,
    writer: ClientWriter,
    parser: FrontendParser,
    pool: Pool,
    user: str,
    password: str,
) -> bool:
    """Ask for the binding's secret (cleartext: the leg is local) and check it in constant time;
    False after writing the FATAL error for a wrong one."""
    writer.write(_ASK_PASSWORD)
    answer = await _next_frame(reader, parser)
    secret = password.encode()
    expected = b"p" + (len(secret) + 5).to_bytes(4, "big") + secret + b"\0"
    if hmac.compare_digest(answer.raw, expected):
        return True
    message = decode_frontend(answer)  # not the exact message expected: look closer
    if not isinstance(message, m.PasswordMessage):
        raise PgProtocolError(f"expected a password message, got {type(message).__name__}")
    if hmac.compare_digest(message.data.rstrip(b"\0"), secret):
        return True
    writer.write(
        fatal(
            "28P01",
            f"password authentication failed for user {user!r} on pool binding {pool.name!r}",
        )
    )
    return False


def _check_startup(hello: m.StartupMessage, pool: Pool, user: str, database: str) -> bytes | None:
    """A FATAL error for a user or database the binding does not serve, or None."""
    asked_user = hello.get("user") or ""
    asked_db = hello.get("database") or asked_user
    if asked_user != user:
        return fatal(
            "28000",
            f"role {asked_user!r} cannot use pool binding "
            f"{pool.name!r}; connect as {user!r} (its connection string)",
        )
    if asked_db != database:
        return fatal(
            "3D000",
            f"database {asked_db!r} is not served by pool binding "
            f"{pool.name!r}; connect to {database!r} (its connection string)",
        )
    return None


# Startup packets accepted before, per pool and per set of server parameters (what the checks
# compare against): a driver sends the same bytes for every connection, so the checks run once.
_ACCEPTED_MAX: Final = 64
_accepted_startups: weakref.WeakKeyDictionary[Pool, tuple[Mapping[str, str], set[bytes]]] = (
    weakref.WeakKeyDictionary()
)


def _accepted(pool: Pool) -> set[bytes] | frozenset[bytes]:
    cached = _accepted_startups.get(pool)
    if cached is None or cached[0] is not pool.parameters:
        return frozenset()
    return cached[1]


def _remember(pool: Pool, raw: bytes) -> None:
    cached = _accepted_startups.get(pool)
    if cached is None or cached[0] is not pool.parameters:
        cached = _accepted_startups[pool] = (pool.parameters, set())
    if len(cached[1]) < _ACCEPTED_MAX:
        cached[1].add(raw)


_ASK_PASSWORD: Final = m.Authentication(m.AUTH_CLEARTEXT).encode()
_AUTH_OK: Final = m.Authentication(m.AUTH_OK).encode()
_READY: Final = m.ReadyForQuery("I").encode()
_greetings: weakref.WeakKeyDictionary[Pool, tuple[Mapping[str, str], bytes]] = (
    weakref.WeakKeyDictionary()
)


def _greeting(pool: Pool) -> bytes:
    """AuthenticationOk and the ParameterStatus block, encoded once per parameter set."""
    cached = _greetings.get(pool)
    if cached is None or cached[0] is not pool.parameters:
        block = b"".join(m.ParameterStatus(k, v).encode() for k, v in pool.parameters.items())
        cached = _greetings[pool] = (pool.parameters, _AUTH_OK + block)
    return cached[1]
