"""The one place where OS and SSL errors become tcpworkers errors.

Every translated error keeps the original as ``__cause__`` and says what failed, where, and what
to try. Nothing else in the package inspects errno values or ``ssl`` exception types.
"""

from __future__ import annotations

import errno
import socket
import ssl

from tcpworkers.errors import (
    ConnectError,
    ConnectTimeoutError,
    SocketBrokenError,
    TLSHandshakeError,
)

__all__ = ["broken_error", "connect_error"]

_CONNECT_HINTS: dict[int, tuple[str, str]] = {
    errno.ECONNREFUSED: ("connection refused", "is a server listening on that port?"),
    errno.ECONNRESET: ("connection reset by the peer", "the server or a firewall dropped it"),
    errno.ENETUNREACH: ("network unreachable", "there is no route to that network"),
    errno.EHOSTUNREACH: ("host unreachable", "there is no route to that host"),
    errno.EADDRNOTAVAIL: ("address not available", "the address cannot be used from this host"),
}


def connect_error(
    exc: BaseException, where: str, *, timeout: float, during_tls: bool = False
) -> ConnectError:
    """Translate a failure while opening a connection (or its TLS handshake) to ``where``.

    ``during_tls`` says the TCP connection was up and the TLS handshake was running, so a reset
    or EOF is reported as a handshake failure (typically: the server does not speak TLS there).
    """
    if isinstance(exc, ConnectError):
        return exc
    err: ConnectError
    if during_tls and isinstance(exc, OSError) and not isinstance(exc, ssl.SSLError | TimeoutError):
        err = TLSHandshakeError(
            f"TLS handshake with {where} failed: the peer ended the connection "
            f"({_describe(exc)}); does the server speak TLS on that port?"
        )
    elif isinstance(exc, TimeoutError) and exc.errno is None:
        # asyncio.timeout() expired (an OS-level ETIMEDOUT carries an errno).
        err = ConnectTimeoutError(
            f"could not connect to {where}: no connection within connect_timeout={timeout:g}s; "
            "raise connect_timeout or check that the host is reachable"
        )
    elif isinstance(exc, TimeoutError):
        err = ConnectTimeoutError(
            f"could not connect to {where}: the operating system timed out the attempt; "
            "check that the host is reachable and no firewall drops the packets"
        )
    elif isinstance(exc, ssl.SSLCertVerificationError):
        err = TLSHandshakeError(
            f"TLS handshake with {where} failed: {exc.verify_message or exc.reason}; "
            f"{_verify_hint(exc)}"
        )
    elif isinstance(exc, ssl.SSLError):
        err = TLSHandshakeError(
            f"TLS handshake with {where} failed: {exc.reason or exc}; does the server speak TLS "
            "on that port (or expect STARTTLS: secure_transport='starttls')?"
        )
    elif isinstance(exc, socket.gaierror):
        err = ConnectError(
            f"could not connect to {where}: the name could not be resolved ({exc.strerror}); "
            "check the host name"
        )
    elif isinstance(exc, OSError) and exc.errno in _CONNECT_HINTS:
        what, hint = _CONNECT_HINTS[exc.errno]
        err = ConnectError(f"could not connect to {where}: {what}; {hint}")
    else:
        err = ConnectError(f"could not connect to {where}: {_describe(exc)}")
    err.__cause__ = exc
    return err


def broken_error(exc: BaseException | None, where: str) -> SocketBrokenError:
    """Translate a failure of an open connection (reset, timeout, TLS alert) to ``where``."""
    if isinstance(exc, SocketBrokenError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _CONNECT_HINTS:
        what = _CONNECT_HINTS[exc.errno][0]
    elif exc is None:
        what = "the connection was lost"
    else:
        what = _describe(exc)
    err = SocketBrokenError(f"connection to {where} broke: {what}")
    err.__cause__ = exc
    return err


def _verify_hint(exc: ssl.SSLCertVerificationError) -> str:
    message = (exc.verify_message or "").lower()
    if "hostname mismatch" in message or "ip address mismatch" in message:
        return (
            "the certificate is for another name; connect to a name it covers or set "
            "TlsOptions(server_hostname=...)"
        )
    if "expired" in message:
        return "the server's certificate has expired; renew it"
    if "not yet valid" in message:
        return "the server's certificate is not valid yet; check the clocks"
    return (
        "the certificate is not signed by a trusted CA; pass the CA with TlsOptions(ca=...) "
        "if the server uses a private one"
    )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    if isinstance(exc, ConnectionResetError):
        return str(exc) or "connection reset"
    return str(exc) or type(exc).__name__
