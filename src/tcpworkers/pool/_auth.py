"""Authentication of a server connection: trust, cleartext password, MD5, SCRAM-SHA-256.

SCRAM runs through the ``scramp`` library (RFC 5802/7677); the server's final signature is
verified, so a server that does not know the password cannot pretend it does. Every failure is an
:class:`~tcpworkers.errors.UpstreamError` naming the server, the user and what failed.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from typing import Final

from tcpworkers.errors import UpstreamAuthError, UpstreamConnectError, UpstreamError
from tcpworkers.pool import _messages as m
from tcpworkers.pool._dsn import UpstreamParams

__all__ = ["authenticate", "upstream_error"]

_AUTH_NAMES: Final = {2: "KerberosV5", 6: "SCM credentials", 7: "GSSAPI", 9: "SSPI"}

ReadMessage = Callable[[], Awaitable[m.Message]]
OnError = Callable[[m.ErrorResponse], UpstreamError]


async def authenticate(
    params: UpstreamParams, read: ReadMessage, writer: asyncio.StreamWriter, on_error: OnError
) -> str:
    """Answer authentication requests until AuthenticationOk; returns the method used."""
    method = "trust"
    scram = None
    while True:
        message = await read()
        if isinstance(message, m.ErrorResponse):
            raise on_error(message)
        if not isinstance(message, m.Authentication):
            raise upstream_error(
                UpstreamConnectError,
                params,
                f"unexpected {type(message).__name__} during authentication",
            )
        code = message.code
        if code == m.AUTH_OK:
            if scram is not None and not scram.done:
                raise upstream_error(
                    UpstreamAuthError,
                    params,
                    "the server ended SCRAM authentication without proving it knows the "
                    "password; refusing the connection",
                )
            return method
        if code == m.AUTH_CLEARTEXT:
            method = "password"
            password = _password(params, method).encode()
            writer.write(m.PasswordMessage(password + b"\0").encode())
        elif code == m.AUTH_MD5:
            method = "md5"
            digest = _md5(params, _password(params, method), message.data[:4])
            writer.write(m.PasswordMessage(digest).encode())
        elif code == m.AUTH_SASL:
            method = "scram-sha-256"
            scram = _Scram(params, _password(params, method), list(message.mechanisms))
            writer.write(scram.first())
        elif code == m.AUTH_SASL_CONTINUE and scram is not None:
            writer.write(scram.final(message.data))
        elif code == m.AUTH_SASL_FINAL and scram is not None:
            scram.verify(message.data)
        else:
            raise upstream_error(
                UpstreamAuthError,
                params,
                f"the server asked for authentication method "
                f"{_AUTH_NAMES.get(code, f'code {code}')}, which the pool does not implement "
                "(trust, password, md5 and scram-sha-256 are); change the role's method in "
                "pg_hba.conf",
            )
        await writer.drain()


class _Scram:
    """SCRAM-SHA-256 (RFC 5802/7677) through scramp, on the wire as SASL messages."""

    MECHANISM: Final = "SCRAM-SHA-256"

    def __init__(self, params: UpstreamParams, password: str, offered: list[str]) -> None:
        import scramp  # lazy: only servers that ask for SCRAM need it

        if self.MECHANISM not in offered:
            raise upstream_error(
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
        # SASLInitialResponse: mechanism, then the client-first message with its length.
        data = self._client.get_client_first().encode()
        body = m.cstr(self.MECHANISM) + m.I32.pack(len(data)) + data
        return m.PasswordMessage(body).encode()

    def final(self, server_first: bytes) -> bytes:
        try:
            self._client.set_server_first(server_first.decode())
            return m.PasswordMessage(self._client.get_client_final().encode()).encode()
        except self._errors as exc:
            raise upstream_error(
                UpstreamAuthError, self._params, f"SCRAM exchange failed: {exc}"
            ) from exc

    def verify(self, server_final: bytes) -> None:
        try:
            self._client.set_server_final(server_final.decode())
        except self._errors as exc:
            raise upstream_error(
                UpstreamAuthError,
                self._params,
                f"the server's SCRAM signature is wrong ({exc}); it may not be the server "
                "you configured",
            ) from exc
        self.done = True


def _password(params: UpstreamParams, method: str) -> str:
    if params.password is None:
        raise upstream_error(
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


def upstream_error(
    cls: type[UpstreamError], params: UpstreamParams, what: str, sqlstate: str = ""
) -> UpstreamError:
    return cls(
        f"server connection to {params.address} as user {params.user!r} "
        f"(database {params.database!r}): {what}",
        sqlstate,
    )
