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
import os
import ssl
from collections.abc import Mapping
from typing import Final, final

from tcpworkers.errors import (
    PgProtocolError,
    UpstreamAuthError,
    UpstreamConnectError,
    UpstreamError,
    UpstreamServerError,
)
from tcpworkers.pool import _messages as m
from tcpworkers.pool._auth import authenticate, upstream_error
from tcpworkers.pool._dsn import UpstreamParams
from tcpworkers.pool._wire import MAX_MESSAGE_LENGTH, Frame, decode_backend
from tcpworkers.scope._trust import trusted_connections

__all__ = ["ServerConnection", "UpstreamParams", "cancel_query", "open_server_connection"]

# Settings every server connection starts with, so clients of the pool see one encoding
# whatever the database's default (asyncpg requires UTF8; psycopg decodes with it).
STARTUP_SETTINGS: Final[Mapping[str, str]] = {"client_encoding": "UTF8"}
_TERMINATE: Final = m.Terminate().encode()
_SSL_REQUEST: Final = m.SSLRequest().encode()
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
                self.writer.write(_TERMINATE)
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
            raise upstream_error(
                UpstreamConnectError,
                params,
                f"timed out after {params.connect_timeout:g} s (connect_timeout); check that "
                "the server is up and reachable, or raise connect_timeout",
            ) from None
        except _TlsFailed as exc:
            raise upstream_error(UpstreamConnectError, params, str(exc)) from exc.__cause__


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
                writer.write(m.CancelRequest(backend_pid, backend_secret).encode())
                await writer.drain()
                await reader.read(1)  # the server closes the connection when done
            finally:
                writer.close()


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
        writer.write(m.StartupMessage(tuple(_startup_parameters(params).items())).encode())
        auth_method = await authenticate(
            params,
            lambda: _read_message(params, reader, "authentication"),
            writer,
            lambda error: _error_response(params, error, "authentication"),
        )
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
        raise upstream_error(
            UpstreamConnectError, params, f"could not connect: {reason}; {hint}"
        ) from exc


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
    writer.write(_SSL_REQUEST)
    answer = await reader.read(1)
    if answer == b"N":
        if fallback:
            return None
        raise upstream_error(
            UpstreamConnectError,
            params,
            f"the server does not support TLS, but sslmode={params.sslmode} requires it; "
            "enable ssl on the server or lower sslmode (prefer)",
        )
    if answer != b"S":
        raise upstream_error(
            UpstreamConnectError,
            params,
            f"unexpected answer {answer!r} to SSLRequest; is this a PostgreSQL server?",
        )
    if reader.at_eof() or len(reader._buffer) > 0:  # type: ignore[attr-defined]
        # Bytes after 'S' before the handshake: injected plaintext (CVE-2021-23222).
        raise upstream_error(
            UpstreamConnectError, params, "the server sent data before the TLS handshake"
        )
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
            raise upstream_error(
                UpstreamConnectError,
                params,
                f"root certificate file {root!r} does not exist; set sslrootcert to the CA "
                f"file, or use sslmode=require to skip verification (sslmode={mode})",
            )
        else:
            try:
                context.load_verify_locations(cafile=root)
            except (ssl.SSLError, OSError) as exc:
                raise upstream_error(
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
            raise upstream_error(
                UpstreamConnectError, params, f"cannot load sslcert/sslkey: {exc}"
            ) from exc
    return context


async def _read_until_ready(
    params: UpstreamParams, reader: asyncio.StreamReader
) -> tuple[dict[str, str], int, int]:
    parameters: dict[str, str] = {}
    pid = secret = 0
    while True:
        message = await _read_message(params, reader, "startup")
        if isinstance(message, m.ParameterStatus):
            parameters[message.name] = message.value
        elif isinstance(message, m.BackendKeyData):
            pid, secret = message.backend_pid, message.backend_secret
        elif isinstance(message, m.ReadyForQuery):
            return parameters, pid, secret
        elif isinstance(message, m.ErrorResponse) and not isinstance(message, m.NoticeResponse):
            raise _error_response(params, message, "startup")
        elif not isinstance(message, m.NoticeResponse | m.NegotiateProtocolVersion):
            raise upstream_error(
                UpstreamConnectError, params, f"unexpected {type(message).__name__} during startup"
            )


async def _read_message(
    params: UpstreamParams, reader: asyncio.StreamReader, step: str
) -> m.Message:
    """One backend message, read exactly (nothing past it is consumed: after ReadyForQuery the
    stream belongs to the pool), decoded by the pool's wire module."""
    try:
        header = await reader.readexactly(5)
        length = m.I32.unpack_from(header, 1)[0]
        if not 4 <= length <= MAX_MESSAGE_LENGTH:
            raise PgProtocolError(f"message length {length} is out of bounds")
        raw = header + await reader.readexactly(length - 4)
        return decode_backend(Frame(raw[0], raw))
    except (asyncio.IncompleteReadError, ConnectionError) as exc:
        raise upstream_error(
            UpstreamConnectError,
            params,
            f"the server closed the connection during {step}; see the server's log",
        ) from exc
    except PgProtocolError as exc:
        raise upstream_error(
            UpstreamConnectError, params, f"protocol error during {step}: {exc}"
        ) from exc


def _error_response(params: UpstreamParams, error: m.ErrorResponse, step: str) -> UpstreamError:
    sqlstate = error.sqlstate
    text = f"the server refused the {step}: {error.get('S', 'ERROR')} {sqlstate}: {error.message}"
    if error.get("H"):
        text += f" (hint: {error.get('H')})"
    rejected = "authentication failed" in error.message  # PgBouncer: 08P01 for SCRAM
    if sqlstate.startswith("28") or rejected:  # invalid_authorization_specification/password
        return upstream_error(
            UpstreamAuthError, params, f"{text}; check the user and password", sqlstate
        )
    return upstream_error(UpstreamServerError, params, text, sqlstate)
