"""Server (upstream) connections for the pool: connect, TLS per sslmode, authenticate, start up.

Theory of operation. :func:`open_server_connection` does what libpq does before a pool can use
a connection, in this order, all bounded by ``connect_timeout``:

1. connect over TCP (``host:port``) or a unix socket (``host`` is a directory);
2. unless ``sslmode`` says not to (and never on unix sockets), send SSLRequest; on ``S`` upgrade
   the same connection with ``loop.start_tls``, verifying as ``sslmode`` says (``require``: no
   verification; ``verify-ca``: the chain against ``sslrootcert``; ``verify-full``: the chain and
   the host name). ``prefer`` falls back to plaintext on ``N`` or a failed handshake; ``allow``
   tries plaintext first and TLS only when the server refuses plaintext;
3. send the StartupMessage and answer the server's authentication request: trust, cleartext
   password, MD5, or SCRAM-SHA-256 (via the ``scramp`` library; the server's final signature is
   verified, so a server that does not know the password cannot pretend it does);
4. collect ParameterStatus and BackendKeyData until ReadyForQuery.

These connections are the operator's configuration, not a worker's egress: they are opened
outside any request scope (the worker's egress policy and socket limit never apply), whatever
task asks for one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
import struct
from collections.abc import Mapping
from typing import Final, final

from tcpworkers.egress._trust import trusted_connections
from tcpworkers.errors import (
    UpstreamAuthError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamServerError,
)
from tcpworkers.pool._dsn import UpstreamParams

__all__ = ["ServerConnection", "UpstreamParams", "cancel_query", "open_server_connection"]

# Settings every server connection starts with, so clients of the pool see one encoding
# whatever the database's default (asyncpg requires UTF8; psycopg decodes with it).
STARTUP_SETTINGS: Final[Mapping[str, str]] = {"client_encoding": "UTF8"}
# How long close() waits for the server to see Terminate before giving up.
_CLOSE_TIMEOUT: Final = 2.0


@final
class ServerConnection:
    """One authenticated server connection, idle (after ReadyForQuery), for the pool to use.

    Attributes:
        reader, writer: the stream pair; the pool owns them from here on.
        parameters: the ParameterStatus values the server sent during startup.
        backend_pid, backend_secret: BackendKeyData, for :func:`cancel_query`.
        server_version: the ``server_version`` parameter (``""`` if the server sent none).
        auth_method: ``trust``, ``password``, ``md5`` or ``scram-sha-256``.
        tls: the TLS protocol version in use (``"TLSv1.3"``), or ``None`` for plaintext.
    """

    __slots__ = (
        "auth_method",
        "backend_pid",
        "backend_secret",
        "parameters",
        "reader",
        "server_version",
        "tls",
        "writer",
    )

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        parameters: Mapping[str, str],
        backend_pid: int,
        backend_secret: int,
        auth_method: str,
        tls: str | None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.parameters = dict(parameters)
        self.backend_pid = backend_pid
        self.backend_secret = backend_secret
        self.server_version = self.parameters.get("server_version", "")
        self.auth_method = auth_method
        self.tls = tls

    async def close(self) -> None:
        """Send Terminate and close the connection; never raises (cancellation aside)."""
        try:
            if not self.writer.is_closing():
                self.writer.write(_wire.TERMINATE)
            self.writer.close()
            await asyncio.wait_for(self.writer.wait_closed(), _CLOSE_TIMEOUT)
        except (OSError, TimeoutError, ssl.SSLError, RuntimeError):
            self.writer.transport.abort()

    def __repr__(self) -> str:
        return (
            f"<ServerConnection pid={self.backend_pid} version={self.server_version!r} "
            f"auth={self.auth_method} tls={self.tls}>"
        )


async def open_server_connection(params: UpstreamParams) -> ServerConnection:
    """Connect, negotiate TLS, authenticate and start up a server connection.

    Raises:
        UpstreamConnectError: unreachable, timed out, or TLS not possible as sslmode requires.
        UpstreamAuthError: the server rejected the credentials or wants an unsupported method.
        UpstreamServerError: the server refused the startup (no such database, too many
            connections, shutting down), with its SQLSTATE.
    """
    mode = params.effective_sslmode
    with trusted_connections():  # the operator's configuration, not the worker's egress
        try:
            async with asyncio.timeout(params.connect_timeout):
                if mode == "allow":
                    try:
                        return await _attempt(params, tls=False)
                    except UpstreamAuthError as exc:
                        if exc.sqlstate != "28000":  # only pg_hba's "no encryption" refusal
                            raise
                        return await _attempt(params, tls=True)
                if mode == "prefer":
                    try:
                        return await _attempt(params, tls=True, fallback=True)
                    except _TlsFailed:
                        return await _attempt(params, tls=False)
                return await _attempt(params, tls=mode != "disable")
        except TimeoutError:
            raise _fail(
                UpstreamConnectError,
                params,
                f"timed out after {params.connect_timeout:g} s (connect_timeout); check that "
                "the server is up and reachable, or raise connect_timeout",
            ) from None
        except _TlsFailed as exc:
            raise _fail(UpstreamConnectError, params, str(exc)) from exc.__cause__


async def cancel_query(params: UpstreamParams, backend_pid: int, backend_secret: int) -> None:
    """Ask the server to cancel what ``backend_pid`` is running (a CancelRequest on a new
    connection, over TLS when sslmode requires it). Best effort: failures are ignored, as
    libpq's PQcancel reports them only as a return value nobody can act on."""
    with (
        trusted_connections(),
        contextlib.suppress(OSError, TimeoutError, ssl.SSLError, UpstreamError),
    ):
        async with asyncio.timeout(params.connect_timeout):
            reader, writer = await _open_stream(params)
            try:
                if params.effective_sslmode in ("require", "verify-ca", "verify-full"):
                    await _negotiate_tls(params, reader, writer, fallback=False)
                writer.write(_wire.cancel_request(backend_pid, backend_secret))
                await writer.drain()
                await reader.read(1)  # the server closes the connection when done
            finally:
                writer.close()


# -- framing: the few startup-phase messages, until pool-core's _wire/_messages are merged --


class _Framing:
    HEADER: Final = struct.Struct("!ci")
    TERMINATE: Final = b"X\0\0\0\x04"
    SSL_REQUEST: Final = struct.pack("!ii", 8, 80877103)
    AUTH_OK: Final = 0
    AUTH_CLEARTEXT: Final = 3
    AUTH_MD5: Final = 5
    AUTH_SASL: Final = 10
    AUTH_SASL_CONTINUE: Final = 11
    AUTH_SASL_FINAL: Final = 12
    _AUTH_NAMES: Final = {2: "KerberosV5", 6: "SCM", 7: "GSS", 9: "SSPI"}

    class ProtocolError(Exception):
        pass

    @staticmethod
    def cancel_request(pid: int, secret: int) -> bytes:
        return struct.pack("!iiii", 16, 80877102, pid, secret)

    @staticmethod
    def startup_message(values: Mapping[str, str]) -> bytes:
        pairs = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in values.items())
        body = struct.pack("!i", 196608) + pairs + b"\0"
        return struct.pack("!i", len(body) + 4) + body

    @staticmethod
    def password_message(data: bytes) -> bytes:
        return b"p" + struct.pack("!i", len(data) + 4) + data

    @classmethod
    def sasl_initial_response(cls, mechanism: str, data: bytes) -> bytes:
        body = mechanism.encode() + b"\0" + struct.pack("!i", len(data)) + data
        return cls.password_message(body)

    @staticmethod
    def auth_code(body: bytes) -> int:
        code: int = struct.unpack("!i", body[:4])[0]
        return code

    @classmethod
    def auth_name(cls, code: int) -> str:
        return cls._AUTH_NAMES.get(code, f"code {code}")

    @staticmethod
    def sasl_mechanisms(body: bytes) -> list[str]:
        return [m.decode("ascii", "replace") for m in body[4:].split(b"\0") if m]

    @staticmethod
    def parameter_status(body: bytes) -> tuple[str, str]:
        name, value, *_ = body.split(b"\0")
        return name.decode("utf-8", "replace"), value.decode("utf-8", "replace")

    @staticmethod
    def error_fields(body: bytes) -> dict[str, str]:
        fields: dict[str, str] = {}
        for part in body.split(b"\0"):
            if part:
                fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
        return fields

    @classmethod
    async def read_message(cls, reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
        kind, length = cls.HEADER.unpack(await reader.readexactly(5))
        if not 4 <= length <= 1 << 24:
            raise cls.ProtocolError(f"message {kind!r} with impossible length {length}")
        return kind, await reader.readexactly(length - 4)


_wire = _Framing


class _TlsFailed(Exception):
    """Internal: TLS could not be set up (prefer falls back to plaintext on this)."""


async def _attempt(
    params: UpstreamParams, *, tls: bool, fallback: bool = False
) -> ServerConnection:
    reader, writer = await _open_stream(params)
    try:
        tls_version = (
            await _negotiate_tls(params, reader, writer, fallback=fallback) if tls else None
        )
        writer.write(_wire.startup_message(_startup_parameters(params)))
        auth_method = await _authenticate(params, reader, writer)
        parameters, pid, secret = await _read_until_ready(params, reader)
    except BaseException:
        writer.transport.abort()
        raise
    return ServerConnection(
        reader,
        writer,
        parameters=parameters,
        backend_pid=pid,
        backend_secret=secret,
        auth_method=auth_method,
        tls=tls_version,
    )


def _startup_parameters(params: UpstreamParams) -> dict[str, str]:
    values = {"user": params.user, "database": params.database, **STARTUP_SETTINGS}
    if params.application_name:
        values["application_name"] = params.application_name
    if params.options:
        values["options"] = params.options
    return values


async def _open_stream(params: UpstreamParams) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        if params.is_unix:
            return await asyncio.open_unix_connection(params.unix_path)
        return await asyncio.open_connection(params.hostaddr or params.host, params.port)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        hint = (
            "is the server running and listening there (unix_socket_directories)?"
            if params.is_unix
            else "is the server running and accepting TCP connections on that port?"
        )
        raise _fail(UpstreamConnectError, params, f"could not connect: {reason}; {hint}") from exc


async def _negotiate_tls(
    params: UpstreamParams,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    *,
    fallback: bool,
) -> str | None:
    """SSLRequest, then TLS on ``S``. Returns the TLS version, or None when the server said
    ``N`` and plaintext is acceptable (``fallback``)."""
    context = _ssl_context(params)
    writer.write(_wire.SSL_REQUEST)
    answer = await reader.read(1)
    if answer == b"N":
        if fallback:
            return None
        raise _fail(
            UpstreamConnectError,
            params,
            f"the server does not support TLS, but sslmode={params.sslmode} requires it; "
            "enable ssl on the server or lower sslmode (prefer)",
        )
    if answer != b"S":
        raise _fail(
            UpstreamConnectError,
            params,
            f"unexpected answer {answer!r} to SSLRequest; is this a PostgreSQL server?",
        )
    if reader.at_eof() or len(reader._buffer) > 0:  # type: ignore[attr-defined]
        # Bytes after 'S' before the handshake: injected plaintext (CVE-2021-23222).
        raise _fail(UpstreamConnectError, params, "the server sent data before the TLS handshake")
    try:
        await writer.start_tls(context, server_hostname=params.host)
    except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
        verify = params.effective_sslmode in ("verify-ca", "verify-full")
        hint = (
            "check sslrootcert (the CA that signed the server certificate) and that the "
            "certificate names the host"
            if verify
            else "check the server's TLS setup"
        )
        raise _TlsFailed(f"TLS handshake failed ({exc}); {hint}") from exc
    ssl_object = writer.get_extra_info("ssl_object")
    version: str | None = ssl_object.version() if ssl_object is not None else "TLS"
    return version


def _ssl_context(params: UpstreamParams) -> ssl.SSLContext:
    mode = params.effective_sslmode
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if mode in ("verify-ca", "verify-full"):
        root = params.sslrootcert or os.path.expanduser("~/.postgresql/root.crt")
        if root == "system":
            context.load_default_certs()
        elif not os.path.exists(root):
            raise _fail(
                UpstreamConnectError,
                params,
                f"root certificate file {root!r} does not exist; set sslrootcert to the CA "
                f"file, or use sslmode=require to skip verification (sslmode={mode})",
            )
        else:
            try:
                context.load_verify_locations(cafile=root)
            except (ssl.SSLError, OSError) as exc:
                raise _fail(
                    UpstreamConnectError, params, f"cannot load sslrootcert {root!r}: {exc}"
                ) from exc
        context.check_hostname = mode == "verify-full"
    else:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if params.sslcert is not None:
        try:
            context.load_cert_chain(params.sslcert, params.sslkey)
        except (ssl.SSLError, OSError) as exc:
            raise _fail(UpstreamConnectError, params, f"cannot load sslcert/sslkey: {exc}") from exc
    return context


async def _authenticate(
    params: UpstreamParams, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
) -> str:
    """Answer authentication requests until AuthenticationOk; returns the method used."""
    method = "trust"
    scram = None
    while True:
        kind, body = await _read_message(params, reader, "authentication")
        if kind == b"E":
            raise _error_response(params, body, "authentication")
        if kind != b"R":
            raise _fail(
                UpstreamConnectError, params, f"unexpected message {kind!r} during authentication"
            )
        code = _wire.auth_code(body)
        if code == _wire.AUTH_OK:
            if scram is not None and not scram.done:
                raise _fail(
                    UpstreamAuthError,
                    params,
                    "the server ended SCRAM authentication without proving it knows the "
                    "password; refusing the connection",
                )
            return method
        if code == _wire.AUTH_CLEARTEXT:
            method = "password"
            writer.write(_wire.password_message(_password(params, method).encode() + b"\0"))
        elif code == _wire.AUTH_MD5:
            method = "md5"
            salt = body[4:8]
            writer.write(_wire.password_message(_md5(params, _password(params, method), salt)))
        elif code == _wire.AUTH_SASL:
            method = "scram-sha-256"
            scram = _Scram(params, _password(params, method), _wire.sasl_mechanisms(body))
            writer.write(scram.first())
        elif code == _wire.AUTH_SASL_CONTINUE and scram is not None:
            writer.write(scram.final(body[4:]))
        elif code == _wire.AUTH_SASL_FINAL and scram is not None:
            scram.verify(body[4:])
        else:
            raise _fail(
                UpstreamAuthError,
                params,
                f"the server asked for authentication method {_wire.auth_name(code)}, which "
                "the pool does not implement (trust, password, md5 and scram-sha-256 are); "
                "change the role's method in pg_hba.conf",
            )
        await writer.drain()


class _Scram:
    """SCRAM-SHA-256 (RFC 5802/7677) through scramp, on the wire as SASL messages."""

    MECHANISM: Final = "SCRAM-SHA-256"

    def __init__(self, params: UpstreamParams, password: str, offered: list[str]) -> None:
        import scramp  # lazy: only servers that ask for SCRAM need it

        if self.MECHANISM not in offered:
            raise _fail(
                UpstreamAuthError,
                params,
                f"the server offers SASL mechanisms {', '.join(offered)}; the pool needs "
                f"{self.MECHANISM}",
            )
        self._params = params
        self._errors: tuple[type[Exception], ...] = (scramp.ScramException,)
        self._client = scramp.ScramClient([self.MECHANISM], params.user, password)
        self.done = False

    def first(self) -> bytes:
        data = self._client.get_client_first().encode()
        return _wire.sasl_initial_response(self.MECHANISM, data)

    def final(self, server_first: bytes) -> bytes:
        try:
            self._client.set_server_first(server_first.decode())
            return _wire.password_message(self._client.get_client_final().encode())
        except self._errors as exc:
            raise _fail(UpstreamAuthError, self._params, f"SCRAM exchange failed: {exc}") from exc

    def verify(self, server_final: bytes) -> None:
        try:
            self._client.set_server_final(server_final.decode())
        except self._errors as exc:
            raise _fail(
                UpstreamAuthError,
                self._params,
                f"the server's SCRAM signature is wrong ({exc}); it may not be the server "
                "you configured",
            ) from exc
        self.done = True


def _password(params: UpstreamParams, method: str) -> str:
    if params.password is None:
        raise _fail(
            UpstreamAuthError,
            params,
            f"the server asked for a password ({method}) but the url has none; add it to the "
            "url (postgresql://user:PASSWORD@host/db) or take the url from [secrets]",
        )
    return params.password


def _md5(params: UpstreamParams, password: str, salt: bytes) -> bytes:
    # PostgreSQL's md5 scheme: "md5" + md5(md5(password + user).hexdigest() + salt).
    inner = hashlib.md5((password + params.user).encode(), usedforsecurity=False).hexdigest()
    outer = hashlib.md5(inner.encode() + salt, usedforsecurity=False).hexdigest()
    return b"md5" + outer.encode() + b"\0"


async def _read_until_ready(
    params: UpstreamParams, reader: asyncio.StreamReader
) -> tuple[dict[str, str], int, int]:
    parameters: dict[str, str] = {}
    pid = secret = 0
    while True:
        kind, body = await _read_message(params, reader, "startup")
        if kind == b"S":
            name, value = _wire.parameter_status(body)
            parameters[name] = value
        elif kind == b"K":
            pid, secret = struct.unpack("!ii", body[:8])
        elif kind == b"Z":
            return parameters, pid, secret
        elif kind == b"E":
            raise _error_response(params, body, "startup")
        elif kind not in (b"N", b"v"):  # notices; NegotiateProtocolVersion (harmless here)
            raise _fail(UpstreamConnectError, params, f"unexpected message {kind!r} during startup")


async def _read_message(
    params: UpstreamParams, reader: asyncio.StreamReader, step: str
) -> tuple[bytes, bytes]:
    try:
        return await _wire.read_message(reader)
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise _fail(
            UpstreamConnectError,
            params,
            f"the server closed the connection during {step}; see the server's log",
        ) from exc
    except _wire.ProtocolError as exc:
        raise _fail(UpstreamConnectError, params, f"protocol error during {step}: {exc}") from exc


def _error_response(params: UpstreamParams, body: bytes, step: str) -> UpstreamError:
    fields = _wire.error_fields(body)
    sqlstate = fields.get("C", "")
    text = f"{step} failed: {fields.get('S', 'ERROR')} {sqlstate}: {fields.get('M', '')}"
    if fields.get("H"):
        text += f" (hint: {fields['H']})"
    rejected = "authentication failed" in fields.get("M", "")  # PgBouncer: 08P01 for SCRAM
    if sqlstate.startswith("28") or rejected:  # invalid_authorization_specification/password
        return _fail(UpstreamAuthError, params, f"{text}; check the user and password", sqlstate)
    return _fail(UpstreamServerError, params, text, sqlstate)


def _fail(
    cls: type[UpstreamError], params: UpstreamParams, what: str, sqlstate: str = ""
) -> UpstreamError:
    return cls(
        f"server connection to {params.address} as user {params.user!r} "
        f"(database {params.database!r}): {what}",
        sqlstate,
    )
