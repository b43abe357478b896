"""``Response(sock.readable)``: a response whose body is a socket, when the socket fails.

Two moments can fail. Before the status line goes out, the socket may never open (refused,
denied, no such name): the runtime waits for ``sock.opened`` first, so that failure becomes a
``502 Bad Gateway`` (with the reason in ``dev``) instead of a ``200`` with an empty, truncated
body. After the headers went out, the connection may break (a reset): the body is cut short
without HTTP/1.1's terminating chunk, so the client can tell the transfer is incomplete, and the
failure is logged once, naming the line of the worker that built the response.

uvicorn logs "ASGI callable returned without completing response" when an application returns
mid-body, which is how an ASGI application cuts a body short; for a failure already logged here,
that second line is dropped by :class:`_AlreadyReported`.
"""

from __future__ import annotations

import contextvars
import http
import logging
from typing import Final

from tcpworkers.errors import ConnectError, SocketError
from tcpworkers.http._response import Response
from tcpworkers.sockets import ReadableStream

__all__ = [
    "bad_gateway",
    "install_log_filter",
    "log_broken_stream",
    "open_failure",
]

logger = logging.getLogger("tcpworkers.runtime")

_UVICORN_INCOMPLETE: Final = "ASGI callable returned without completing response"
# Set in the task serving a request once its cut-short body was logged; uvicorn logs its own
# line about it in that same task, after the application returned.
_reported: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tcpworkers_stream_failure_reported", default=False
)


async def open_failure(stream: object) -> ConnectError | None:
    """If ``stream`` is a socket's readable: wait for the socket to open; its failure, if any."""
    if type(stream) is not ReadableStream:
        return None
    try:
        await stream._socket.opened
    except ConnectError as exc:
        return exc
    return None


def bad_gateway(exc: ConnectError, label: str, origin: str | None, *, dev: bool) -> Response:
    """The 502 for a streamed socket that never opened (logged here, once)."""
    where = f" (Response(sock.readable) at {origin})" if origin else ""
    logger.warning("%s: the socket streamed as the response%s never opened: %s", label, where, exc)
    status = http.HTTPStatus.BAD_GATEWAY
    text = f"{status.value} {status.phrase} in {label}\n\n{exc}\n" if dev else status.phrase
    return Response(
        text,
        status=status.value,
        headers={"content-type": "text/plain; charset=utf-8", "cache-control": "no-store"},
    )


def log_broken_stream(exc: BaseException, label: str, origin: str | None) -> bool:
    """Log a streamed socket that broke after the headers went out; False if ``exc`` is not that
    (the caller logs it its own way)."""
    if origin is None or not isinstance(exc, SocketError):
        return False
    logger.error(
        "%s: the socket streamed as the response (Response(sock.readable) at %s) failed after "
        "the headers were sent: %s; the body was cut short without its terminating chunk, so "
        "the client sees an incomplete response",
        label,
        origin,
        exc,
    )
    _reported.set(True)
    return True


class _AlreadyReported(logging.Filter):
    """Drops uvicorn's line about a response body cut short when we logged the reason."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (_reported.get() and record.getMessage().startswith(_UVICORN_INCOMPLETE))


_FILTER: Final = _AlreadyReported()


def install_log_filter() -> None:
    """Install the filter on uvicorn's error logger (idempotent)."""
    uvicorn_error = logging.getLogger("uvicorn.error")
    if _FILTER not in uvicorn_error.filters:
        uvicorn_error.addFilter(_FILTER)
