"""``fetch()``: outbound HTTP for workers, through the same gate as ``connect()``.

``await fetch(url, method=..., headers=..., body=...)`` returns a :class:`tcpworkers.Response`
whose body streams from the connection (``await resp.text()``, ``async for chunk in resp``, or
``return resp`` from a handler to proxy it). The HTTP work is done by httpx; every connection it
makes is a ``tcpworkers.connect()`` socket (see :mod:`tcpworkers.http._client` for how), so the
egress policy decides on the host name and its resolved addresses, the connection takes a slot
in the current request scope, its bytes are counted, and it is closed when the request ends.

Decisions (each one is tested):

- **A connection per fetch() call.** Each call uses its own short-lived client; its connection
  closes as soon as the body has been read to the end (or the reading stopped), and the request
  scope closes it at the latest. Connections are never kept alive across calls: an idle pooled
  connection would hold one of the request's socket slots (six by default), and a client shared
  across requests would use one request's socket from another (``CrossRequestError``).
- **No decompression.** fetch() sends no ``Accept-Encoding`` of its own and never decodes: the
  body is the bytes the server sent, and ``Content-Encoding``/``Content-Length`` still describe
  them, so returning the response from a handler (a proxy) is always correct. Set
  ``Accept-Encoding`` yourself to ask for a compressed body.
- **Hop-by-hop headers are dropped** from the response (``Connection``, ``Keep-Alive``,
  ``Transfer-Encoding``, ... and the names ``Connection`` lists, RFC 9110 section 7.6.1): they
  described the connection to the server, not the message.
- **Redirects are followed** (up to 20), as the Fetch API does by default; every hop goes
  through the gate again. ``redirect="manual"`` returns the 3xx response instead.
- **Timeouts are per operation**, as in httpx: ``timeout`` bounds connecting (DNS, TCP and TLS
  together) and each read or write of the exchange, not the whole transfer, so a long download
  that keeps making progress is never cut off. For one deadline, wrap the call (and the body
  reading) in ``asyncio.timeout()``.
- **A failed, timed-out or cancelled exchange drops its connection at once** (abort, not a
  graceful close that would wait for unsent data to reach a server that stopped reading).
"""

from __future__ import annotations

import math
import re
import ssl
from collections.abc import AsyncIterator
from typing import Final, Literal, get_args
from urllib.parse import urlsplit

from tcpworkers.errors import FetchError, FetchTimeoutError
from tcpworkers.http._body import Body, BodyInit
from tcpworkers.http._headers import Headers, HeadersInit
from tcpworkers.http._limits import MAX_REDIRECTS
from tcpworkers.http._response import Response
from tcpworkers.sockets import DEFAULT_CONNECT_TIMEOUT, TlsOptions, parse_address
from tcpworkers.sockets._connect import check_seconds

__all__ = ["DEFAULT_TIMEOUT", "MAX_REDIRECTS", "FetchError", "FetchTimeoutError", "fetch"]

RedirectMode = Literal["follow", "manual"]

# fetch()'s default timeout per operation; the same 30 s connect() uses for connecting.
DEFAULT_TIMEOUT: Final = DEFAULT_CONNECT_TIMEOUT
# RFC 9110 section 9.1: a method is a token.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Forbidden by the Fetch standard; CONNECT would also open a tunnel the gate never sees.
_FORBIDDEN_METHODS: Final = frozenset({"CONNECT", "TRACE", "TRACK"})


async def fetch(
    url: str,
    *,
    method: str = "GET",
    headers: HeadersInit | None = None,
    body: BodyInit = None,
    # Per operation (connect, each read and write), as httpx's timeouts, not one deadline for
    # the call: asyncio.timeout() around fetch() would also cut off a streaming body's reads.
    timeout: float | None = DEFAULT_TIMEOUT,  # noqa: ASYNC109
    redirect: RedirectMode = "follow",
    tls: TlsOptions | ssl.SSLContext | None = None,
) -> Response:
    """Send an HTTP request and return the response, its body still streaming.

    Works inside a request handler (the connection belongs to the request: policy-checked,
    counted, closed when the request ends) and in any asyncio program (the process-wide
    default egress policy applies).

    Args:
        url: an absolute ``http://`` or ``https://`` URL.
        method: the HTTP method (sent upper-cased).
        headers: request header fields (a mapping, ``(name, value)`` pairs or ``Headers``).
        body: ``None``, bytes, str (sent as UTF-8 with ``Content-Type: text/plain;
            charset=utf-8`` unless set), or an async iterable of bytes (sent chunked; a
            ``Request`` can be passed to forward its body).
        timeout: seconds for connecting and for each read or write to make progress; ``None``
            for no limit on reads and writes (connecting is still bounded by 30 s).
        redirect: ``"follow"`` (up to 20 redirects) or ``"manual"`` (return the 3xx response).
        tls: for https: ``TlsOptions`` (a private CA, a client certificate, the expected host
            name) or a client ``ssl.SSLContext`` (httpcore sets its ALPN protocols to
            ``http/1.1``, the only protocol offered). Certificates and host names are verified
            by default.

    Returns:
        The response. Its body is the bytes the server sent (see the module docstring); read it
        or iterate it to the end to release the connection early.

    Raises:
        TypeError: an argument has the wrong type.
        ValueError: a malformed URL, method, header or timeout; a body with GET or HEAD.
        ConnectError: the connection could not be opened; the subclasses say why:
            ``EgressDeniedError`` (the egress policy), ``ConnectTimeoutError``,
            ``TLSHandshakeError``, ``SocketLimitError``, ``ScopeClosedError``.
        SocketBrokenError: the connection broke mid-exchange (reading the body raises it too).
        FetchTimeoutError: a read or write made no progress within ``timeout``.
        FetchError: the exchange failed at the HTTP level (see :class:`FetchError`).
        ConnectNotAllowedError: called where connections are not allowed (a worker module
            being imported).
    """
    checked_url = _check_url(url)
    checked_method = _check_method(method)
    seconds = _check_timeout(timeout)
    if redirect not in get_args(RedirectMode):
        raise ValueError(f"redirect must be 'follow' or 'manual', not {redirect!r}")
    if tls is not None and not isinstance(tls, TlsOptions | ssl.SSLContext):
        raise TypeError(f"tls must be a TlsOptions or an ssl.SSLContext, not {type(tls).__name__}")
    request_headers = Headers(headers)
    if body is not None and checked_method in ("GET", "HEAD"):
        raise ValueError(
            f"a {checked_method} request cannot have a body (the Fetch API refuses it too); "
            "use POST or PUT, or pass body=None"
        )
    request_body, is_text = Body.of(body, what="request")
    if is_text and "content-type" not in request_headers:
        request_headers.set("content-type", "text/plain; charset=utf-8")
    content: bytes | AsyncIterator[bytes] | None = None
    if request_body.is_stream:
        content = request_body.take()
    elif body is not None:
        content = request_body.data
    # Imported on first use: httpx costs ~25 ms to import, which `import tcpworkers` (the
    # socket library, in programs that never call fetch()) should not pay.
    try:
        from tcpworkers.http import _client
    except ImportError as exc:  # pragma: no cover - httpx is a dependency of the runtime
        raise ImportError(
            f"tcpworkers.fetch() needs httpx ({exc}); install it: pip install 'httpx>=0.28,<0.29'"
        ) from exc
    return await _client.send(
        checked_method,
        checked_url,
        headers=request_headers.items(),
        content=content,
        timeout=seconds,
        follow_redirects=redirect == "follow",
        tls=tls,
    )


def _check_url(url: object) -> str:
    if not isinstance(url, str):
        raise TypeError(f"url must be a str, not {type(url).__name__}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise ValueError(f"invalid url {url!r}: {exc}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"url must be an absolute http:// or https:// URL such as "
            f"'https://api.example.com/items', got {url!r}"
        )
    # The host must be one connect() accepts; say so in terms of the URL, before any work.
    # (httpx sends international names in their IDNA form, so check that form.)
    hostname = parts.hostname
    try:
        ascii_name = hostname if hostname.isascii() else hostname.encode("idna").decode("ascii")
        parse_address((ascii_name, 1))
    except (UnicodeError, ValueError):
        raise ValueError(
            f"invalid url {url!r}: {hostname!r} is not a host name or IP address"
        ) from None
    return url


def _check_method(method: object) -> str:
    if not isinstance(method, str):
        raise TypeError(f"method must be a str such as 'GET', not {type(method).__name__}")
    if not _TOKEN.fullmatch(method):
        raise ValueError(f"invalid method {method!r}: a method is a token such as 'GET'")
    upper = method.upper()
    if upper in _FORBIDDEN_METHODS:
        raise ValueError(
            f"fetch() does not send {upper} requests (the Fetch API forbids them); to open a "
            "tunnel to a host, use tcpworkers.connect()"
        )
    # The Fetch API upper-cases only DELETE GET HEAD OPTIONS POST PUT; httpx upper-cases every
    # method, and no server should tell "Purge" from "PURGE".
    return upper


def _check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    seconds = check_seconds(timeout, "timeout")
    return None if math.isinf(seconds) else seconds
