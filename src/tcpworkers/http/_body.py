"""The body of a ``Request`` or ``Response``: bytes or a stream of chunks, readable once.

As in the Fetch API a body is consumed by reading it: ``bytes()``, ``text()``, ``json()`` or
``async for`` each take it, and a second attempt raises :class:`BodyUsedError`. The convenience
readers buffer the whole body and so refuse one larger than a limit (16 MiB by default); streaming
it with ``async for`` has no limit.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Final, TypeAlias, final

from tcpworkers.errors import BodyTooLargeError, BodyUsedError
from tcpworkers.http._headers import Headers

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "BodyInit",
]

# What bytes()/text()/json() buffer at most by default: generous for JSON and form posts, small
# enough that a handful of concurrent oversized uploads cannot exhaust a worker's memory.
DEFAULT_MAX_BODY_SIZE: Final = 16 * 1024 * 1024

BodyInit: TypeAlias = "bytes | bytearray | memoryview | str | AsyncIterable[bytes] | None"


@final
class Body:
    """Internal: one body, either bytes known up front or a stream read on demand."""

    __slots__ = ("_data", "_stream", "_used", "_what")

    def __init__(self, data: bytes | None, stream: AsyncIterable[bytes] | None, what: str) -> None:
        self._data = data
        self._stream = stream
        self._used = False
        self._what = what  # "request" or "response", for messages

    @classmethod
    def of(cls, body: object, *, what: str) -> tuple[Body, bool]:
        """Wrap a user-supplied body; the flag says it was ``str`` (so text/plain applies)."""
        if body is None:
            return cls(b"", None, what=what), False
        if isinstance(body, bytes):
            return cls(body, None, what=what), False
        if isinstance(body, bytearray | memoryview):
            return cls(bytes(body), None, what=what), False  # copy: the caller may reuse it
        if isinstance(body, str):
            return cls(body.encode(), None, what=what), True
        if hasattr(body, "__aiter__"):
            return cls(None, body, what=what), False
        hint = ""
        if isinstance(body, dict | int | float | bool):
            hint = "; for JSON use Response.json(data)"
        elif isinstance(body, list | tuple):
            hint = (
                "; for JSON use Response.json(data), to send chunks join them (b''.join(chunks)) "
                "or yield them from an async generator"
            )
        elif hasattr(body, "__iter__"):
            hint = "; join a sync iterable first (b''.join(chunks)) or use an async generator"
        raise TypeError(
            f"a {what} body must be None, bytes, bytearray, memoryview, str, an async iterable "
            f"of bytes or a socket's readable stream, not {type(body).__name__}{hint}"
        )

    @property
    def used(self) -> bool:
        return self._used

    @property
    def data(self) -> bytes | None:
        """The bytes, when the body is not a stream (``None`` for a stream)."""
        return self._data

    @property
    def is_stream(self) -> bool:
        return self._stream is not None

    @property
    def stream(self) -> AsyncIterable[bytes] | None:
        return self._stream

    def take(self) -> AsyncIterator[bytes]:
        """Consume the body: its chunks, as bytes."""
        self._mark_used()
        if self._stream is None:
            return _one(self._data or b"")
        return _checked(self._stream, self._what)

    async def read_all(self, max_size: int) -> bytes:
        """Consume the body and return it whole, refusing more than ``max_size`` bytes."""
        _check_max_size(max_size)
        if self._stream is None:
            self._mark_used()
            data = self._data or b""
            if len(data) > max_size:
                raise self._too_large(max_size)
            return data
        chunks: list[bytes] = []
        size = 0
        iterator = self.take()
        try:
            async for chunk in iterator:
                size += len(chunk)
                if size > max_size:
                    raise self._too_large(max_size)
                chunks.append(chunk)
        finally:
            aclose = getattr(iterator, "aclose", None)
            if aclose is not None:
                await aclose()
        return b"".join(chunks)

    def _mark_used(self) -> None:
        if self._used:
            raise BodyUsedError(
                f"the {self._what} body was already read; a body can be read once (keep the "
                "bytes from the first bytes()/text()/json() if you need them again)"
            )
        self._used = True

    def _too_large(self, max_size: int) -> BodyTooLargeError:
        return BodyTooLargeError(
            f"the {self._what} body is larger than max_size={max_size} bytes; stream it with "
            f"`async for chunk in {self._what}` or pass a larger max_size",
            max_size,
        )


async def _one(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


async def _checked(stream: AsyncIterable[bytes], what: str) -> AsyncIterator[bytes]:
    iterator = aiter(stream)
    try:
        async for chunk in iterator:
            if type(chunk) is not bytes:
                if isinstance(chunk, bytearray | memoryview):
                    chunk = bytes(chunk)
                else:
                    raise TypeError(
                        f"the {what} body stream yielded {type(chunk).__name__}; a body stream "
                        "must yield bytes (encode text first)"
                    )
            if chunk:
                yield chunk
    finally:
        # Run the source's clean-up now (an async generator's finally), not when it is collected.
        aclose = getattr(iterator, "aclose", None)
        if aclose is not None:
            await aclose()


def _check_max_size(max_size: object) -> None:
    if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 0:
        raise ValueError(f"max_size must be a non-negative int, got {max_size!r}")


def content_length(headers: Headers) -> int | None:
    """The ``Content-Length`` the headers announce, if it is a valid number."""
    value = headers.get("content-length")
    if value is None or not value.isdigit():
        return None
    return int(value)


def charset_of(headers: Headers) -> str:
    """The ``charset`` parameter of ``Content-Type`` if Python knows it, else ``"utf-8"``."""
    content_type = headers.get("content-type") or ""
    for param in content_type.split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            charset = value.strip().strip('"')
            try:
                return codecs.lookup(charset).name
            except LookupError:
                return "utf-8"
    return "utf-8"


def decode_text(data: bytes, headers: Headers) -> str:
    # Undecodable bytes become U+FFFD, as the Fetch API's text() does: a handler should not
    # fail on a client's malformed text.
    return data.decode(charset_of(headers), errors="replace")


def decode_json(data: bytes) -> Any:
    return json.loads(data)
