"""Serving fetch-handler workers (``fetch``, ``on_fetch``, ``WorkerEntrypoint``): the HANDLER
and STREAMING phases of a request, under its wall-time deadline (see ``_app.py``)."""

from __future__ import annotations

import asyncio
import http
import logging
import reprlib
from typing import Any

from tcpworkers.errors import BodyTooLargeError, ClientDisconnectedError, ClientGone
from tcpworkers.http._request import Request
from tcpworkers.http._response import Response
from tcpworkers.runtime._asgi import Receive, Scope, Send
from tcpworkers.runtime._exchange import Exchange, Inbound, Phase, RequestRun
from tcpworkers.runtime._respond import Responder, end_scope, plain_response, timed_out
from tcpworkers.runtime._socket_body import bad_gateway, log_broken_stream, open_failure
from tcpworkers.scope._current import enter_scope, leave_scope

__all__ = ["FetchServing"]

logger = logging.getLogger("tcpworkers.runtime")


class FetchServing(Responder):
    """``WorkerApp``'s half that serves fetch-handler workers."""

    async def _serve_fetch(
        self, scope: Scope, receive: Receive, send: Send, task: asyncio.Task[Any] | None
    ) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        settings = self.settings
        run = RequestRun.begin(
            scope, send, policy=settings.policy, limits=settings.limits, task=task, now=now
        )
        exchange, ctx, request_scope = run.exchange, run.ctx, run.request_scope
        self._started(run, task)
        inbound = run.inbound = Inbound(receive, on_disconnect=exchange.client_gone)
        run.headers = scope["headers"]
        token = enter_scope(request_scope)
        responded = False
        try:
            request = Request._from_asgi(scope, inbound)
            await self._respond(request, run, loop, now)
            responded = True
            if ctx.pending:
                await self._drain(ctx, run.label)
            else:
                ctx._end()  # later wait_until() calls are refused
        except asyncio.CancelledError as exc:
            # Only the server cancels from outside (a client leaving is handled in
            # _respond): see "Shutdown" in _app.py. Not re-raised: uvicorn would log it
            # as "Exception in ASGI application".
            if not responded:
                await self._cut_off(exchange, exc, run.label)
        finally:
            try:
                exchange.phase = Phase.DONE
                inbound.stop()
                if ctx.pending or not request_scope.close_if_idle():
                    await end_scope(ctx, request_scope)
                else:
                    ctx._end()
                self._report(run, inbound.disconnected)
            finally:
                leave_scope(token)

    async def _respond(
        self, request: Request, run: RequestRun, loop: asyncio.AbstractEventLoop, now: float
    ) -> None:
        """The HANDLER and STREAMING phases, under the wall-time deadline (see "Timers" in
        ``_app.py``: the deadline's timer is armed only for a request still running after
        ``_PUMP_DELAY``)."""
        exchange = run.exchange
        task = exchange.task
        cancelling = task.cancelling() if task is not None else 0
        watch = self._watch
        watch.add(run, loop, now)
        label = run.label
        response: Response | None
        try:
            # The handler, then its response, in this one coroutine: every time the handler
            # waits for I/O, its resumption passes through each coroutine between it and the
            # task, so the runtime keeps that chain short.
            try:
                if not self._bindings_life.ready:
                    await self._bindings_life.ensure_started()
                result = await self.worker._handle(request, self.env, run.ctx)
            except asyncio.CancelledError as exc:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being cancelled (client gone, wall time, server shutdown)
                response = self._handler_failed(exchange, exc, label, request)  # its own
            except Exception as exc:
                response = self._handler_error(request, exchange, exc, label)
            else:
                response = self._handler_result(request, exchange, result, label)
            if response is not None:  # None: the client left while the handler failed
                exchange.phase = Phase.STREAMING
                if response._origin is not None:
                    response = await self._opened_origin(response, exchange, label)
                await self._send_response(response, exchange, run.inbound)
                exchange.phase = Phase.DONE
        except asyncio.CancelledError as exc:
            if exchange.take_timeout_cancel(cancelling):
                exchange.phase = Phase.DONE
                watch.discard(run)
                await self._wall_time_exceeded(exchange, timed_out(exc), label)
            elif not exchange.take_disconnect_cancel():
                raise
        except ClientGone:
            exchange.disconnected = True
        except Exception as exc:  # a TimeoutError here is the worker's own, not the deadline's
            self._stream_failed(exchange, exc, label)
        finally:
            exchange.phase = Phase.DONE
            watch.discard(run)
            exchange.disarm()
        if exchange._cancel_requested:
            # The handler swallowed our cancellation; the client is gone all the same.
            exchange.take_disconnect_cancel()

    async def _opened_origin(self, response: Response, exchange: Exchange, label: str) -> Response:
        """``Response(sock.readable)``: no status line before the socket opened (a 502 if it
        does not)."""
        origin = exchange.origin = response._origin
        assert origin is not None
        failure = await open_failure(response._body.stream)
        if failure is None:
            return response
        exchange.error = failure
        return bad_gateway(failure, label, origin, dev=self.settings.mode == "dev")

    def _stream_failed(self, exchange: Exchange, exc: BaseException, label: str) -> None:
        # The response had started (errors before that became a 500 in _call_handler): all we
        # can do is abort it, which the server does when the app returns without completing.
        exchange.error = exc
        if log_broken_stream(exc, label, exchange.origin):
            return
        logger.error("%s: the response body failed while being sent; aborted", label, exc_info=exc)

    def _handler_error(
        self, request: Request, exchange: Exchange, exc: Exception, label: str
    ) -> Response | None:
        """The response to a handler's exception (None: the client is gone)."""
        if isinstance(exc, BodyTooLargeError):
            exchange.error = exc
            logger.info("%s: %s", label, exc)
            return plain_response(http.HTTPStatus(BodyTooLargeError.status), str(exc))
        if isinstance(exc, ClientDisconnectedError):
            exchange.disconnected = True
            return None
        return self._handler_failed(exchange, exc, label, request)

    def _handler_result(
        self, request: Request, exchange: Exchange, result: object, label: str
    ) -> Response:
        """The handler's response, or a 500 when it returned something else."""
        if isinstance(result, Response):
            return result
        error = TypeError(
            f"{self.worker.name} returned {type(result).__name__} ({reprlib.repr(result)}); "
            "a handler must return a tcpworkers.Response, e.g. Response('text') or "
            "Response.json(data)"
        )
        return self._handler_failed(exchange, error, label, request)
