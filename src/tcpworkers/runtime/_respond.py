"""What serving fetch workers and ASGI workers share: sending a response, error responses,
the wall-time (504) handling, draining ``wait_until`` work, the end of a request's scope and the
report to the observers. ``Responder`` is the base of ``WorkerApp``'s two serving halves
(``_serve_fetch.py``, ``_serve_asgi.py``).
"""

from __future__ import annotations

import asyncio
import http
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from tcpworkers.errors import ClientGone
from tcpworkers.http._request import Request
from tcpworkers.http._response import TEXT_PLAIN, Response
from tcpworkers.runtime._context import ExecutionContext
from tcpworkers.runtime._deverror import dev_error_response
from tcpworkers.runtime._env import Env
from tcpworkers.runtime._exchange import DONE, Exchange
from tcpworkers.runtime._lifespan import Bindings
from tcpworkers.runtime._running import describe_traceback
from tcpworkers.runtime._settings import RequestObserver, RequestRecord, RuntimeSettings
from tcpworkers.runtime._watch import Watch
from tcpworkers.runtime._worker import Worker
from tcpworkers.scope import RequestScope

__all__ = [
    "CLIENT_CLOSED_REQUEST",
    "Responder",
    "end_scope",
    "plain_response",
    "raw_headers",
    "timed_out",
]

logger = logging.getLogger("tcpworkers.runtime")

# nginx's code for "client closed the request": recorded when the client left before the
# response was complete.
CLIENT_CLOSED_REQUEST: Final = 499
# The header fields of Response("text"), and the same as ASGI wants them.
_TEXT_PLAIN_FIELDS: Final = [TEXT_PLAIN]
_TEXT_PLAIN_RAW: Final = (TEXT_PLAIN[0].encode("latin-1"), TEXT_PLAIN[1].encode("latin-1"))
# Builds a RequestRecord from its fields (see _report).
_new_tuple: Final = tuple.__new__


class Responder:
    """The parts of ``WorkerApp`` both kinds of worker use (see the module docstring)."""

    worker: Worker
    settings: RuntimeSettings
    env: Env
    _bindings_life: Bindings
    _observers: tuple[RequestObserver, ...]
    _starters: tuple[Callable[[RequestScope], None], ...]
    _in_flight: dict[asyncio.Task[Any], RequestScope]
    _watch: Watch
    # The worker's handler, called with (request, env, ctx): fetch and entrypoint workers.
    _invoke: Callable[[Request, Env, ExecutionContext], Awaitable[object]]

    def _handler_failed(
        self, exchange: Exchange, exc: BaseException, label: str, request: Request | None = None
    ) -> Response:
        exchange.error = exc
        logger.error("%s: %s failed", label, self.worker.name, exc_info=exc)
        return self._error_response(exc, label, request)

    def _error_response(
        self, exc: BaseException, label: str, request: Request | None = None
    ) -> Response:
        status = http.HTTPStatus.INTERNAL_SERVER_ERROR
        if self.settings.mode != "dev":
            return plain_response(status, status.phrase)
        return dev_error_response(exc, label, request)

    async def _send_response(self, response: Response, exchange: Exchange) -> None:
        body = response._body
        data = body._data
        if data is not None:
            headers = raw_headers(response, data)
            if not exchange.head:  # the usual response: both messages in one step
                await exchange.whole(response._status, headers, data)
                return
        else:
            headers = response.headers._raw()
        await exchange.start(response._status, headers)
        if data is not None or exchange.head:
            if data is None:
                await _discard(body.stream)  # HEAD: the stream is never read
            await exchange.body(b"" if exchange.head or data is None else data, more=False)
            return
        exchange.watch_client()  # a stream may last: watch for the client leaving
        chunks = body.take()
        try:
            async for chunk in chunks:
                await exchange.body(chunk, more=True)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]  # an async generator
        await exchange.body(b"", more=False)

    async def _send_plain(self, exchange: Exchange, status: http.HTTPStatus, text: str) -> None:
        response = plain_response(status, text)
        try:
            await self._send_response(response, exchange)
        except ClientGone:
            exchange.disconnected = True

    async def _drain(self, ctx: ExecutionContext, label: str) -> None:
        """Wait for the ``wait_until`` tasks, up to ``limits.wait_until_time`` after the
        response; then cancel them, with one line naming each."""
        if not ctx.pending:
            ctx._end()  # later wait_until() calls are refused
            return
        limit = self.settings.limits.wait_until_time
        if not await ctx._drain(limit):
            count = len(ctx._cancelled)
            logger.warning(
                "%s: %d ctx.wait_until task%s still running past wait_until_time of %gs after "
                "the response; cancelled: %s",
                label,
                count,
                "s" * (count != 1),
                limit,
                ", ".join(ctx._cancelled),
            )

    async def _cut_off(self, exchange: Exchange, exc: BaseException, label: str) -> None:
        """The server cancelled a request whose response was not complete (its shutdown):
        one line saying where the worker's code was, and a 503 if nothing was sent yet."""
        logger.warning(
            "%s: cancelled by the server's shutdown before the response was complete; "
            "still running: %s",
            label,
            describe_traceback(exc.__traceback__),
        )
        exchange.phase = DONE
        if not exchange.started:  # the client gets an answer, not a dropped connection
            await self._send_plain(
                exchange, http.HTTPStatus.SERVICE_UNAVAILABLE, "the server is shutting down"
            )

    def _started(self, request_scope: RequestScope) -> None:
        """A request began: tell the observers that want to know (the caller checked that
        there are some, and counted the request in flight)."""
        for start in self._starters:
            try:
                start(request_scope)
            except Exception:
                logger.exception("request observer %r failed", start)

    def _report(self, exchange: Exchange, disconnected: bool = False) -> None:
        """Tell the observers about the request (the caller checked that there are some)."""
        status = exchange.status
        if (disconnected or exchange.disconnected) and not exchange.complete:
            status = CLIENT_CLOSED_REQUEST
        # RequestRecord(...) without the frame of the named tuple's generated __new__ (which
        # only passes its arguments on to tuple.__new__): 250 -> 150 ns, once per request.
        record: RequestRecord = _new_tuple(
            RequestRecord,
            (
                exchange.method,
                exchange.path,
                status,
                time.perf_counter() - exchange.started_at,
                exchange.request_scope.stats,
                exchange.error,
            ),
        )
        for observer in self._observers:
            try:
                observer.request_finished(record)
            except Exception:
                logger.exception("request observer %r failed", observer)

    async def _wall_time_exceeded(self, exchange: Exchange, exc: TimeoutError, label: str) -> None:
        """The request ran out of ``limits.wall_time``: 504 if nothing was sent yet, else the
        response is aborted (the server does that when the app returns without completing)."""
        wall_time = self.settings.limits.wall_time
        exchange.error = exc
        if not exchange.started:
            logger.warning(
                "%s exceeded its wall_time of %gs; still running: %s",
                label,
                wall_time,
                interrupted(exc),
            )
            await self._send_plain(
                exchange,
                http.HTTPStatus.GATEWAY_TIMEOUT,
                f"the request exceeded its wall-time limit of {wall_time:g}s",
            )
        else:
            logger.warning(
                "%s exceeded its wall_time of %gs while sending the response; aborted; "
                "still running: %s",
                label,
                wall_time,
                interrupted(exc),
            )


def interrupted(timeout: BaseException) -> str:
    """Where the worker's code was when a timeout cancelled it: the cancellation that
    ``asyncio.timeout`` turned into ``TimeoutError`` carries the frames it unwound."""
    return describe_traceback((timeout.__cause__ or timeout).__traceback__)


def timed_out(cancelled: asyncio.CancelledError) -> TimeoutError:
    """The ``TimeoutError`` ``asyncio.timeout`` would raise: its cause carries the frames the
    cancellation unwound (where the worker's code was, for the log)."""
    error = TimeoutError()
    error.__cause__ = cancelled
    return error


def plain_response(status: http.HTTPStatus, text: str) -> Response:
    return Response(
        text,
        status=status.value,
        headers={"content-type": "text/plain; charset=utf-8", "cache-control": "no-store"},
    )


async def end_scope(ctx: ExecutionContext, request_scope: RequestScope) -> None:
    """The end of a request, whatever happened: no wait_until task and no socket outlives it.

    Shielded, so a server cancelling the request cannot cut the clean-up short; skipped when
    there is nothing to clean up (the common case: a shield costs a task).
    """
    if ctx.pending:  # the request was cut off: take its wait_until tasks along
        await asyncio.shield(ctx._drain(0))
        for where in ctx._cancelled:
            logger.warning(
                "%s: ctx.wait_until work cancelled with its request: %s", ctx._label, where
            )
    ctx._end()
    if request_scope.stats.sockets_opened and request_scope.open_resources:
        await asyncio.shield(request_scope.aclose())
    else:
        await request_scope.aclose()  # marks it closed; finishes without suspending


def raw_headers(response: Response, data: bytes) -> list[tuple[bytes, bytes]]:
    """The header fields of a response whose body is ``data``, as ASGI wants them, with a
    Content-Length unless the worker set it (or Transfer-Encoding)."""
    fields = response.headers._fields
    if fields == _TEXT_PLAIN_FIELDS:  # Response("text"), the most common: nothing to encode
        return [_TEXT_PLAIN_RAW, (b"content-length", b"%d" % len(data))]
    headers = response.headers._raw()
    for name, _ in fields:
        if name == "content-length" or name == "transfer-encoding":
            return headers
    headers.append((b"content-length", b"%d" % len(data)))
    return headers


async def _discard(stream: object) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
