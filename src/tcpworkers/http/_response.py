"""``Response``: what a worker returns (the Fetch API shape, in Python).

The body may be bytes, str, an async iterable of bytes, or a socket's ``readable`` stream, which
the runtime copies to the client chunk by chunk, reading the next chunk only after the previous
one was handed to the server (so a slow client slows the socket, and memory stays flat).

``Response.json`` is both a constructor (``Response.json({"ok": True})``, as in the Fetch API and
Cloudflare's Python Workers) and, on an instance, the body reader (``await response.json()``).
"""

from __future__ import annotations

import builtins
import functools
import json
import sys
from collections.abc import AsyncIterator, Coroutine
from typing import Any, Final, Protocol, final, overload

from tcpworkers.http._body import DEFAULT_MAX_BODY_SIZE, Body, BodyInit, decode_json, decode_text
from tcpworkers.http._headers import Headers, HeadersInit
from tcpworkers.sockets import ReadableStream

__all__ = ["Response"]

# RFC 9110 section 15.4: the statuses Response.redirect() may use (as in the Fetch API).
REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
# RFC 9110 sections 15.3.5, 15.3.6 and 15.4.5: responses that never have content.
NULL_BODY_STATUSES: Final = frozenset({204, 205, 304})
# The header field of a str body (``Response("text")``); the runtime recognises it.
TEXT_PLAIN: Final = ("content-type", "text/plain; charset=utf-8")
# Makes an object without calling its class's __init__ (see Response.__init__); a global is
# found faster than ``Headers.__new__``.
_new: Final = object.__new__


class _JsonFactory(Protocol):
    def __call__(
        self, data: object, *, status: int = 200, headers: HeadersInit | None = None
    ) -> Response: ...


class _JsonReader(Protocol):
    def __call__(self, *, max_size: int = DEFAULT_MAX_BODY_SIZE) -> Coroutine[Any, Any, Any]: ...


class _JsonMethod:
    """On the class: build a JSON response. On an instance: read the body as JSON."""

    @overload
    def __get__(self, obj: None, owner: type[Response]) -> _JsonFactory: ...
    @overload
    def __get__(self, obj: Response, owner: type[Response] | None = None) -> _JsonReader: ...
    def __get__(self, obj: Response | None, owner: type[Response] | None = None) -> object:
        if obj is None:
            return _json_response
        return functools.partial(_read_json, obj)


def _json_response(
    data: object, *, status: int = 200, headers: HeadersInit | None = None
) -> Response:
    """``Response.json(data, *, status=200, headers=None)``: ``data`` as a JSON response.

    Raises:
        TypeError: ``data`` is not JSON-serialisable.
        ValueError: ``data`` contains NaN or infinity (not JSON), or a bad status.
    """
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError as exc:
        raise ValueError(f"Response.json(): {exc} (JSON has no NaN or Infinity)") from None
    merged = Headers(headers)
    if "content-type" not in merged:
        merged.set("content-type", "application/json")
    return Response(text.encode(), status=status, headers=merged)


async def _read_json(response: Response, *, max_size: int = DEFAULT_MAX_BODY_SIZE) -> Any:
    return decode_json(await response.bytes(max_size=max_size))


@final
class Response:
    """An HTTP response.

    Args:
        body: ``None`` (empty), ``bytes``/``bytearray``/``memoryview``, ``str`` (sent as UTF-8,
            with ``Content-Type: text/plain; charset=utf-8`` unless set), an async iterable of
            bytes, or a socket's ``readable`` (``Response(sock.readable)`` streams the socket
            to the client with backpressure both ways).
        status: the HTTP status, 200 to 599.
        headers: the header fields (see :class:`Headers`).

    Raises:
        TypeError: ``status`` is not an int, or the body or headers have an unsupported type.
        ValueError: ``status`` is outside 200-599, or a 204/205/304 response has a body.

    Attributes:
        headers: the header fields (mutable until the runtime sends the response).
    """

    __slots__ = ("_body", "_origin", "_status", "headers")

    json: Final = _JsonMethod()
    """``Response.json(data, *, status=200, headers=None)`` builds a JSON response;
    ``await response.json(max_size=...)`` parses a response's body."""

    def __init__(
        self,
        body: BodyInit = None,
        *,
        status: int = 200,
        headers: HeadersInit | None = None,
    ) -> None:
        self._status = (
            status if type(status) is int and 200 <= status <= 599 else _check_status(status)
        )
        if headers is None and type(body) is str and self._status not in NULL_BODY_STATUSES:
            # The most common response, built without re-validating constant header fields.
            # Headers._trusted([TEXT_PLAIN]), without its call.
            headers = self.headers = _new(Headers)
            headers._fields = [TEXT_PLAIN]
            # Body(body.encode(), None, "response"), without the frame of its __init__.
            self._body = data = _new(Body)
            data._data = body.encode()
            data._stream = None
            data._used = False
            data._what = "response"
            self._origin: str | None = None
            return
        self.headers = Headers(headers)
        if body is not None and self._status in NULL_BODY_STATUSES:
            raise ValueError(
                f"a {self._status} response cannot have a body; pass body=None (or use 200)"
            )
        self._body, is_text = Body.of(body, what="response")
        # Where the worker streamed a socket into this response: named if the socket fails.
        self._origin = _caller() if type(body) is ReadableStream else None
        if is_text and "content-type" not in self.headers:
            self.headers.append(*TEXT_PLAIN)

    @classmethod
    def redirect(cls, url: str, status: int = 302) -> Response:
        """A redirect to ``url``.

        Args:
            url: where to send the client (the ``Location`` header).
            status: 301, 302 (default), 303, 307 or 308.

        Raises:
            ValueError: ``status`` is not a redirect status, or ``url`` is empty or contains
                a line break.
        """
        if not isinstance(url, str):
            raise TypeError(f"url must be a str, not {type(url).__name__}")
        if not url:
            raise ValueError("Response.redirect() needs a non-empty url")
        if not _is_int(status) or status not in REDIRECT_STATUSES:
            raise ValueError(
                f"Response.redirect() status must be one of 301, 302, 303, 307, 308, got {status!r}"
            )
        return cls(None, status=int(status), headers={"location": url})

    @property
    def status(self) -> int:
        """The HTTP status code."""
        return self._status

    @property
    def ok(self) -> bool:
        """True for a 2xx status."""
        return 200 <= self._status < 300

    @property
    def body_used(self) -> bool:
        """True once the body was read (or started to be streamed)."""
        return self._body.used

    async def bytes(self, *, max_size: int = DEFAULT_MAX_BODY_SIZE) -> builtins.bytes:
        """Read the whole body.

        Raises:
            BodyTooLargeError: the body is larger than ``max_size`` bytes.
            BodyUsedError: the body was already read.
        """
        return await self._body.read_all(max_size)

    async def text(self, *, max_size: int = DEFAULT_MAX_BODY_SIZE) -> str:
        """Read the whole body as text, in the ``Content-Type`` charset (default UTF-8)."""
        return decode_text(await self.bytes(max_size=max_size), self.headers)

    def __aiter__(self) -> AsyncIterator[builtins.bytes]:
        """Stream the body chunk by chunk (consumes it)."""
        return self._body.take()

    def __repr__(self) -> str:
        content_type = self.headers.get("content-type")
        kind = " stream" if self._body.is_stream else ""
        return f"<Response {self._status}{f' {content_type}' if content_type else ''}{kind}>"


def _caller() -> str:
    frame = sys._getframe(2)  # Response.__init__'s caller
    return f"{frame.f_code.co_filename}:{frame.f_lineno} in {frame.f_code.co_name}"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_status(status: object) -> int:
    # int subclasses (http.HTTPStatus) are welcome; bool is not a status.
    if not isinstance(status, int) or isinstance(status, bool):
        raise TypeError(f"status must be an int such as 200, not {type(status).__name__}")
    status = int(status)
    if not 200 <= status <= 599:
        hint = " (1xx are interim responses the server sends itself)" if 100 <= status < 200 else ""
        raise ValueError(f"status must be between 200 and 599, got {status}{hint}")
    return status
