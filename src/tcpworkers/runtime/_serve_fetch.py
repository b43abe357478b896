"""Serving fetch-handler workers (``fetch``, ``on_fetch``, ``WorkerEntrypoint``): the HANDLER
and STREAMING phases of a request, under its wall-time deadline (see ``_app.py``)."""

from __future__ import annotations

import asyncio
import http
import logging
import reprlib

from tcpworkers.errors import BodyTooLargeError, ClientDisconnectedError, ClientGone
from tcpworkers.http._request import Request
from tcpworkers.http._response import Response
from tcpworkers.runtime._asgi import Receive, Scope, Send
from tcpworkers.runtime._context import ExecutionContext
from tcpworkers.runtime._exchange import Exchange, Inbound, Phase, RequestRun
from tcpworkers.runtime._respond import Responder, end_scope, plain_response
from tcpworkers.runtime._socket_body import bad_gateway, log_broken_stream, open_failure
from tcpworkers.scope import use_scope

__all__ = ["FetchServing"]

logger = logging.getLogger("tcpworkers.runtime")


class FetchServing(Responder):
    """``WorkerApp``'s half that serves fetch-handler workers."""

    async def _serve_fetch(self, scope: Scope, receive: Receive, send: Send) -> None:
        run = RequestRun.begin(
            scope, send, policy=self.settings.policy, limits=self.settings.limits
        )
        exchange, ctx, label = run.exchange, run.ctx, run.label
        inbound = Inbound(receive, on_disconnect=exchange.client_gone)
        with use_scope(run.request_scope):
            inbound.start_later(scope)
            responded = False
            try:
                request = Request._from_asgi(scope, inbound.body())
                await self._respond(request, ctx, exchange, inbound, run.deadline, label)
                responded = True
                await self._drain(ctx, label)
            except asyncio.CancelledError as exc:
                # Only the server cancels from outside (a client leaving is handled in
                # _respond): see "Shutdown" in _app.py. Not re-raised: uvicorn would log it
                # as "Exception in ASGI application".
                if not responded:
                    await self._cut_off(exchange, exc, label)
            finally:
                exchange.phase = Phase.DONE
                inbound.stop()
                await end_scope(ctx, run.request_scope)
                self._report(run, inbound.disconnected)

    async def _respond(
        self,
        request: Request,
        ctx: ExecutionContext,
        exchange: Exchange,
        inbound: Inbound,
        deadline: float | None,
        label: str,
    ) -> None:
        """The HANDLER and STREAMING phases, under the wall-time deadline."""
        timeout = None if deadline is None else asyncio.timeout_at(deadline)
        try:
            if timeout is None:
                await self._handle_and_send(request, ctx, exchange, inbound, label)
            else:
                async with timeout:
                    await self._handle_and_send(request, ctx, exchange, inbound, label)
        except asyncio.CancelledError:
            if not exchange.take_disconnect_cancel():
                raise
        except ClientGone:
            exchange.disconnected = True
        except TimeoutError as exc:
            if timeout is None or not timeout.expired():
                self._stream_failed(exchange, exc, label)
                return
            exchange.phase = Phase.DONE
            await self._wall_time_exceeded(exchange, exc, label)
        except Exception as exc:
            self._stream_failed(exchange, exc, label)
        finally:
            exchange.phase = Phase.DONE
        if exchange._cancel_requested:
            # The handler swallowed our cancellation; the client is gone all the same.
            exchange.take_disconnect_cancel()

    async def _handle_and_send(
        self,
        request: Request,
        ctx: ExecutionContext,
        exchange: Exchange,
        inbound: Inbound,
        label: str,
    ) -> None:
        response = await self._call_handler(request, ctx, exchange, label)
        inbound.handler_returned()
        if response is None:  # the client left while the handler failed
            return
        exchange.phase = Phase.STREAMING
        if response._origin is not None:
            # Response(sock.readable): no status line before the socket opened (a 502 if not).
            exchange.origin = response._origin
            failure = await open_failure(response._body.stream)
            if failure is not None:
                exchange.error = failure
                dev = self.settings.mode == "dev"
                response = bad_gateway(failure, label, response._origin, dev=dev)
        await self._send_response(response, exchange, inbound)
        exchange.phase = Phase.DONE

    def _stream_failed(self, exchange: Exchange, exc: BaseException, label: str) -> None:
        # The response had started (errors before that became a 500 in _call_handler): all we
        # can do is abort it, which the server does when the app returns without completing.
        exchange.error = exc
        if log_broken_stream(exc, label, exchange.origin):
            return
        logger.error("%s: the response body failed while being sent; aborted", label, exc_info=exc)

    async def _call_handler(
        self, request: Request, ctx: ExecutionContext, exchange: Exchange, label: str
    ) -> Response | None:
        """Run the handler; any failure becomes an error response (or None: client gone)."""
        try:
            if not self._bindings_life.ready:
                await self._bindings_life.ensure_started()
            result = await self.worker._handle(request, self.env, ctx)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled (client gone, wall time, server shutdown)
            return self._handler_failed(exchange, exc, label, request)  # its own CancelledError
        except BodyTooLargeError as exc:
            exchange.error = exc
            logger.info("%s: %s", label, exc)
            return plain_response(http.HTTPStatus(BodyTooLargeError.status), str(exc))
        except Exception as exc:
            if isinstance(exc, ClientDisconnectedError):
                exchange.disconnected = True
                return None
            return self._handler_failed(exchange, exc, label, request)
        if isinstance(result, Response):
            return result
        error = TypeError(
            f"{self.worker.name} returned {type(result).__name__} ({reprlib.repr(result)}); "
            "a handler must return a tcpworkers.Response, e.g. Response('text') or "
            "Response.json(data)"
        )
        return self._handler_failed(exchange, error, label, request)
