"""``Request``: an incoming HTTP request as a worker sees it (the Fetch API shape, in Python).

The runtime builds one per ASGI request (``Request._from_asgi``), with a body that streams from
the ASGI ``receive`` channel; worker authors build them directly in tests
(``Request("http://localhost/path", method="POST", body=b"...")``).
"""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from typing import Any, Final, final
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from tcpworkers.errors import BodyTooLargeError
from tcpworkers.http._body import (
    DEFAULT_MAX_BODY_SIZE,
    Body,
    BodyInit,
    content_length,
    decode_json,
    decode_text,
)
from tcpworkers.http._headers import Headers, HeadersInit

__all__ = ["Request"]

# Method names the Fetch API normalises to upper case ("get" -> "GET"); others keep their case.
_NORMALISED_METHODS: Final = frozenset({"DELETE", "GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH"})
_NO_BODY_METHODS: Final = frozenset({"GET", "HEAD"})
# Makes an object without calling its class's __init__ (see _from_asgi); a global is found
# faster than ``cls.__new__``.
_new: Final = object.__new__


@final
class Request:
    """An HTTP request.

    Args:
        url: the absolute URL, e.g. ``"https://example.com/orders?id=7"``.
        method: the HTTP method; the common ones are upper-cased.
        headers: the header fields (see :class:`Headers`).
        body: ``None``, bytes, str, or an async iterable of bytes (streamed).

    Raises:
        ValueError: ``url`` is not an absolute http(s) URL, ``method`` is not a token, or a
            ``GET``/``HEAD`` request has a body.
        TypeError: an argument has the wrong type.

    Attributes:
        method: the HTTP method, e.g. ``"GET"``.
    """

    __slots__ = ("_body", "_headers", "_path", "_query", "_scope", "_stream", "_url", "method")

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        headers: HeadersInit | None = None,
        body: BodyInit = None,
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(
                f"url must be an absolute http:// or https:// URL such as "
                f"'http://localhost/path', got {url!r}"
            )
        method = _check_method(method)
        self.method = method
        self._url: str | None = url
        self._headers: Headers | None = Headers(headers)
        self._scope: Mapping[str, Any] | None = None
        self._path: str = unquote(parts.path) or "/"
        self._query: str | None = parts.query
        self._stream: AsyncIterable[bytes] | None = None
        self._body: Body | None
        self._body, is_text = Body.of(body, what="request")
        if method in _NO_BODY_METHODS and (body is not None):
            raise ValueError(f"a {method} request cannot have a body")
        if is_text and "content-type" not in self.headers:
            self.headers.set("content-type", "text/plain;charset=utf-8")

    @classmethod
    def _from_asgi(cls, scope: Mapping[str, Any], body: AsyncIterable[bytes]) -> Request:
        """Internal: the request of an ASGI HTTP ``scope``, its body streaming from ``body``."""
        # The URL, the headers and the body are built on first use: many handlers never look
        # at them.
        request = _new(cls)
        request._scope = scope
        request._url = None
        request._headers = None
        request.method = scope["method"]
        request._path = scope["path"]
        request._query = None
        request._body = None
        request._stream = body
        return request

    @property
    def headers(self) -> Headers:
        """The header fields."""
        if self._headers is None:
            assert self._scope is not None
            self._headers = Headers._from_raw(self._scope["headers"])
        return self._headers

    @property
    def url(self) -> str:
        """The full URL, e.g. ``"https://example.com/orders?id=7"``."""
        if self._url is None:
            assert self._scope is not None
            scope = self._scope
            scheme = scope.get("scheme", "http")
            host = self.headers.get("host")
            if not host:
                server = scope.get("server")
                host = f"{server[0]}:{server[1]}" if server else "localhost"
            raw_path = scope.get("raw_path")
            path = raw_path.decode("latin-1") if raw_path else quote(scope["path"])
            query = self._query_string()
            self._url = f"{scheme}://{host}{path}" + (f"?{query}" if query else "")
        return self._url

    @property
    def path(self) -> str:
        """The URL path, percent-decoded (``"/orders/7"``), without the query string."""
        return self._path

    @property
    def query(self) -> dict[str, str]:
        """The query parameters, percent-decoded; for a repeated name, its first value.

        Use :meth:`query_all` for every value of a repeated name.
        """
        params: dict[str, str] = {}
        for name, value in parse_qsl(self._query_string(), keep_blank_values=True):
            params.setdefault(name, value)
        return params

    def query_all(self, name: str) -> list[str]:
        """Every value of the query parameter ``name``, in order."""
        return [
            value
            for key, value in parse_qsl(self._query_string(), keep_blank_values=True)
            if key == name
        ]

    @property
    def body_used(self) -> bool:
        """True once the body was read (or started to be streamed)."""
        return self._body is not None and self._body.used

    async def bytes(self, *, max_size: int = DEFAULT_MAX_BODY_SIZE) -> builtins.bytes:
        """Read the whole body.

        Args:
            max_size: refuse a body larger than this many bytes (stream larger ones with
                ``async for chunk in request``).

        Raises:
            BodyTooLargeError: the body is larger than ``max_size`` (a 413 response if
                uncaught).
            BodyUsedError: the body was already read.
            ClientDisconnectedError: the client went away before sending all of it.
        """
        announced = content_length(self.headers)
        if announced is not None and announced > max_size:
            # Refuse before reading a byte of it.
            raise BodyTooLargeError(
                f"the request body is {announced} bytes (Content-Length), larger than "
                f"max_size={max_size}; stream it with `async for chunk in request` or pass a "
                "larger max_size",
                max_size,
            )
        return await self._the_body().read_all(max_size)

    async def text(self, *, max_size: int = DEFAULT_MAX_BODY_SIZE) -> str:
        """Read the whole body as text, in the ``Content-Type`` charset (default UTF-8).

        Undecodable bytes become U+FFFD. Raises what :meth:`bytes` raises.
        """
        return decode_text(await self.bytes(max_size=max_size), self.headers)

    async def json(self, *, max_size: int = DEFAULT_MAX_BODY_SIZE) -> Any:
        """Read the whole body and parse it as JSON.

        Raises:
            json.JSONDecodeError: the body is not JSON (a ``ValueError``).
            (and what :meth:`bytes` raises)
        """
        return decode_json(await self.bytes(max_size=max_size))

    def __aiter__(self) -> AsyncIterator[builtins.bytes]:
        """Stream the body, chunk by chunk, without a size limit (consumes it)."""
        return self._the_body().take()

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"

    def _query_string(self) -> str:
        query = self._query
        if query is None:  # an ASGI request's, decoded on first use
            assert self._scope is not None
            query = self._query = self._scope.get("query_string", b"").decode("latin-1")
        return query

    def _the_body(self) -> Body:
        body = self._body
        if body is None:
            assert self._stream is not None
            body = self._body = Body(None, self._stream, what="request")
        return body


def _check_method(method: object) -> str:
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, not {type(method).__name__}")
    if not method or not all(
        c.isascii() and (c.isalnum() or c in "!#$%&'*+-.^_`|~") for c in method
    ):
        raise ValueError(f"invalid HTTP method {method!r}: it must be a token such as 'POST'")
    upper = method.upper()
    return upper if upper in _NORMALISED_METHODS else method
