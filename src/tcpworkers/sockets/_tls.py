"""TLS options and the client ``ssl.SSLContext`` built from them.

Contexts are cached per ``TlsOptions`` value: building one loads the system trust store, which
costs milliseconds, far more than a connection to a warm server should.
"""

from __future__ import annotations

import functools
import os
import ssl
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import final

__all__ = ["TlsOptions", "client_context"]

PemOrPath = str | os.PathLike[str]


@final
@dataclass(frozen=True)
class TlsOptions:
    """How a TLS connection verifies the server and presents itself.

    Verification of the certificate chain and the host name is on unless ``verify=False``.

    Attributes:
        ca: CA certificate(s) to trust instead of the system store: a file path or PEM text.
        cert: a client certificate (mTLS): a file path or PEM text (may include the key).
        key: the client certificate's private key: a file path or PEM text.
        server_hostname: the name sent as SNI and checked against the certificate; defaults to
            the host given to ``connect()``.
        alpn: ALPN protocols to offer, most preferred first (e.g. ``("h2", "http/1.1")``).
        verify: ``False`` disables certificate and host name checks. Only for tests.
    """

    ca: PemOrPath | None = None
    cert: PemOrPath | None = None
    key: PemOrPath | None = None
    server_hostname: str | None = None
    alpn: tuple[str, ...] = field(default=())
    verify: bool = True

    def __post_init__(self) -> None:
        for name in ("ca", "cert", "key"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str | os.PathLike):
                raise TypeError(
                    f"TlsOptions.{name} must be a path or PEM text, not {type(value).__name__}"
                )
        if self.key is not None and self.cert is None:
            raise ValueError(
                "TlsOptions.key was given without cert; pass the client certificate as cert= too"
            )
        if isinstance(self.alpn, str) or not isinstance(self.alpn, Iterable):
            raise TypeError('TlsOptions.alpn must be a sequence of protocol names, e.g. ("h2",)')
        alpn = tuple(self.alpn)
        if not all(isinstance(p, str) and 0 < len(p) < 256 for p in alpn):
            raise ValueError("TlsOptions.alpn entries must be non-empty strings under 256 bytes")
        object.__setattr__(self, "alpn", alpn)
        if self.server_hostname is not None and not isinstance(self.server_hostname, str):
            raise TypeError("TlsOptions.server_hostname must be a str")
        if not isinstance(self.verify, bool):
            raise TypeError("TlsOptions.verify must be a bool")


def client_context(tls: TlsOptions | ssl.SSLContext | None) -> ssl.SSLContext:
    """Return the client context for ``tls`` (a ready context is used as it is).

    Raises:
        ValueError: a CA, certificate or key could not be loaded; the message names which.
    """
    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls is None:
        return _cached_context(TlsOptions())
    if not isinstance(tls, TlsOptions):
        raise TypeError(f"tls must be a TlsOptions or an ssl.SSLContext, not {type(tls).__name__}")
    return _cached_context(tls)


@functools.lru_cache(maxsize=64)
def _cached_context(options: TlsOptions) -> ssl.SSLContext:
    try:
        if options.ca is None:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        elif _is_pem(options.ca):
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=str(options.ca))
        else:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=options.ca)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"TlsOptions.ca could not be loaded: {exc}") from exc
    if options.cert is not None:
        _load_client_cert(context, options.cert, options.key)
    if options.alpn:
        context.set_alpn_protocols(list(options.alpn))
    if not options.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _is_pem(value: PemOrPath) -> bool:
    return isinstance(value, str) and "-----BEGIN" in value


def _load_client_cert(context: ssl.SSLContext, cert: PemOrPath, key: PemOrPath | None) -> None:
    # load_cert_chain only reads files, so PEM text goes through private temporary files that
    # exist only for the duration of the call.
    with tempfile.TemporaryDirectory(prefix="tcpworkers-tls-") as tmp:
        cert_path = _as_file(cert, os.path.join(tmp, "cert.pem"))
        key_path = None if key is None else _as_file(key, os.path.join(tmp, "key.pem"))
        try:
            context.load_cert_chain(cert_path, key_path)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"TlsOptions.cert/key could not be loaded: {exc}") from exc


def _as_file(value: PemOrPath, path: str) -> PemOrPath:
    if not _is_pem(value):
        return value
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(str(value))
    return path
