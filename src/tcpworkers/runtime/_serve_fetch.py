"""Serving fetch-handler workers (``fetch``, ``on_fetch``, ``WorkerEntrypoint``): the HANDLER
and STREAMING phases of a request, under its wall-time deadline (see ``_app.py``).

``FetchServing._serve`` is also ``WorkerApp.__call__``, the ASGI entry point: a fetch worker's
request is served in that one coroutine, and everything else is handed on from there."""

from __future__ import annotations

import asyncio
import http
import logging
import reprlib
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Final

from tcpworkers.errors import BodyTooLargeError, ClientDisconnectedError, ClientGone
from tcpworkers.http._request import Request
from tcpworkers.http._response import Response
from tcpworkers.runtime._asgi import Receive, Scope, Send
from tcpworkers.runtime._exchange import DONE, STREAMING, Exchange
from tcpworkers.runtime._respond import (
    Responder,
    end_scope,
    plain_response,
    timed_out,
)
from tcpworkers.runtime._socket_body import bad_gateway, log_broken_stream, open_failure
from tcpworkers.scope._current import enter_scope, leave_scope

__all__ = ["FetchServing"]

logger = logging.getLogger("tcpworkers.runtime")

# Makes an object without calling its class's __init__.
_new: Final = object.__new__
# The task running in a loop. On Python 3.11 ``asyncio.current_task`` is a Python function
# (one frame, ~700 instructions per request) around this C dict's ``get``, which the C task
# implementation keeps up to date; from 3.12 on it is itself written in C.
_current_task: Final[Callable[[asyncio.AbstractEventLoop], asyncio.Task[Any] | None]] = (
    asyncio.tasks._current_tasks.get  # type: ignore[attr-defined]
    if sys.version_info < (3, 12)
    else asyncio.current_task
)


class FetchServing(Responder):
    """``WorkerApp``'s half that serves fetch-handler workers."""

    # Set by WorkerApp: how it serves what is not a fetch worker's HTTP request (see _serve).
    _serve_asgi_http: (
        Callable[
            [Scope, Receive, Send, asyncio.Task[Any], asyncio.AbstractEventLoop], Awaitable[None]
        ]
        | None
    )
    _serve_other: Callable[[Scope, Receive, Send], Awaitable[None]]

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``WorkerApp.__call__``, the ASGI entry point; for a fetch worker's HTTP request, the
        request from its scope's start to its report: the HANDLER and STREAMING phases under
        the wall-time deadline (see "Timers" in ``_app.py``: the deadline's timer is armed
        only for a request still running after ``_PUMP_DELAY``), then its ``wait_until`` work
        and the end of its scope. Anything else goes on to ``_serve_asgi_http`` (an ASGI
        worker's HTTP request) or ``_serve_other`` (lifespan, WebSocket).

        The entry point, the handler and its response run in this one coroutine, on purpose:
        every time the handler waits for I/O, its resumption passes through each coroutine
        between it and the task, and every coroutine costs instructions on every request, so
        the runtime keeps that chain short. The common path calls no other coroutine of the
        runtime.
        """
        if scope["type"] != "http":
            await self._serve_other(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        task = _current_task(loop)
        assert task is not None
        # The request is counted in flight (``_in_flight``) with its scope, and leaves at the end.
        if self._serve_asgi_http is not None:
            try:
                await self._serve_asgi_http(scope, receive, send, task, loop)
            finally:
                self._in_flight.pop(task, None)
            return
        now = loop.time()
        settings = self.settings
        # Exchange(...), without the slower class call (see Exchange._begin).
        exchange = _new(Exchange)._begin(
            scope, send, receive, settings.policy, settings.limits, task, now
        )
        ctx, request_scope = exchange.ctx, exchange.request_scope
        self._in_flight[task] = request_scope
        if self._starters:
            self._started(request_scope)
        token = enter_scope(request_scope)
        watch = self._watch
        responded = False
        try:
            request = Request._from_asgi(scope, exchange)  # the exchange is its body stream
            cancelling = task.cancelling()
            watch.add(exchange, loop, now)
            response: Response | None
            try:
                try:
                    if not self._bindings_life.ready:
                        await self._bindings_life.ensure_started()
                    result = await self._invoke(request, self.env, ctx)
                except asyncio.CancelledError as exc:
                    current = asyncio.current_task()
                    if current is not None and current.cancelling():
                        raise  # we are being cancelled (client gone, wall time, shutdown)
                    response = self._handler_failed(exchange, exc, exchange.label, request)
                except Exception as exc:
                    response = self._handler_error(request, exchange, exc)
                else:
                    response = (
                        result
                        if type(result) is Response
                        else self._handler_result(request, exchange, result)
                    )
                if response is not None:  # None: the client left while the handler failed
                    exchange.phase = STREAMING
                    if response._origin is not None:
                        response = await self._opened_origin(response, exchange)
                    await self._send_response(response, exchange)
                    exchange.phase = DONE
            except asyncio.CancelledError as exc:
                if exchange.take_timeout_cancel(cancelling):
                    exchange.phase = DONE
                    watch.leave(exchange, None)
                    await self._wall_time_exceeded(exchange, timed_out(exc), exchange.label)
                elif not exchange.take_disconnect_cancel():
                    raise
            except ClientGone:
                exchange.disconnected = True
            except Exception as exc:  # a TimeoutError here is the worker's, not the deadline's
                self._stream_failed(exchange, exc)
            finally:
                exchange.phase = DONE
                watch.leave(exchange, None)
                if exchange._deadline_timer is not None or exchange._expiring:
                    exchange.disarm()
            if exchange._cancel_requested:
                # The handler swallowed our cancellation; the client is gone all the same.
                exchange.take_disconnect_cancel()
            responded = True
            if ctx._tasks:
                await self._drain(ctx, exchange.label)
        except asyncio.CancelledError as exc:
            # Only the server cancels from outside (a client leaving is handled above): see
            # "Shutdown" in _app.py. Not re-raised: uvicorn would log it as "Exception in ASGI
            # application".
            if not responded:
                await self._cut_off(exchange, exc, exchange.label)
        finally:
            try:
                exchange.phase = DONE
                inbound = exchange.inbound
                if inbound is not None:
                    inbound.stop()
                # Later wait_until() calls are refused from here on: end_scope ends ctx, or
                # this does, before anything else can run.
                if ctx._tasks or not request_scope.close_if_idle():
                    await end_scope(ctx, request_scope)
                else:
                    ctx._ended = True
                if self._observers:
                    self._report(exchange, inbound is not None and inbound.disconnected)
            finally:
                leave_scope(token)
                self._in_flight.pop(task, None)

    async def _opened_origin(self, response: Response, exchange: Exchange) -> Response:
        """``Response(sock.readable)``: no status line before the socket opened (a 502 if it
        does not)."""
        origin = exchange.origin = response._origin
        assert origin is not None
        failure = await open_failure(response._body.stream)
        if failure is None:
            return response
        exchange.error = failure
        return bad_gateway(failure, exchange.label, origin, dev=self.settings.mode == "dev")

    def _stream_failed(self, exchange: Exchange, exc: BaseException) -> None:
        # The response had started (errors before that became a 500 in _call_handler): all we
        # can do is abort it, which the server does when the app returns without completing.
        exchange.error = exc
        label = exchange.label
        if log_broken_stream(exc, label, exchange.origin):
            return
        logger.error("%s: the response body failed while being sent; aborted", label, exc_info=exc)

    def _handler_error(
        self, request: Request, exchange: Exchange, exc: Exception
    ) -> Response | None:
        """The response to a handler's exception (None: the client is gone)."""
        label = exchange.label
        if isinstance(exc, BodyTooLargeError):
            exchange.error = exc
            logger.info("%s: %s", label, exc)
            return plain_response(http.HTTPStatus(BodyTooLargeError.status), str(exc))
        if isinstance(exc, ClientDisconnectedError):
            exchange.disconnected = True
            return None
        return self._handler_failed(exchange, exc, label, request)

    def _handler_result(self, request: Request, exchange: Exchange, result: object) -> Response:
        """The handler's response, or a 500 when it returned something else (the caller took
        the common case, ``type(result) is Response``, without a call)."""
        if isinstance(result, Response):
            return result
        error = TypeError(
            f"{self.worker.name} returned {type(result).__name__} ({reprlib.repr(result)}); "
            "a handler must return a tcpworkers.Response, e.g. Response('text') or "
            "Response.json(data)"
        )
        return self._handler_failed(exchange, error, exchange.label, request)
