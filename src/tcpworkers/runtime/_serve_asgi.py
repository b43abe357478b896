"""Serving ASGI-application workers (FastAPI, Starlette): HTTP requests under the same kind
of scope and wall-time deadline as fetch workers, and WebSockets (see ``_app.py``)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from tcpworkers.errors import ClientGone
from tcpworkers.runtime._asgi import Message, Receive, Scope, Send
from tcpworkers.runtime._context import ExecutionContext
from tcpworkers.runtime._exchange import DONE, Exchange
from tcpworkers.runtime._respond import Responder, end_scope, timed_out
from tcpworkers.scope import RequestScope, use_scope

__all__ = ["AsgiServing"]

logger = logging.getLogger("tcpworkers.runtime")


class AsgiServing(Responder):
    """``WorkerApp``'s half that serves ASGI-application workers."""

    async def _serve_asgi(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        task: asyncio.Task[Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        app = self.worker.asgi_app
        assert app is not None
        now = loop.time()
        settings = self.settings
        exchange = Exchange(scope, send, None, settings.policy, settings.limits, task, now)
        ctx, label = exchange.ctx, exchange.label
        self._in_flight[task] = exchange.request_scope
        if self._starters:
            self._started(exchange.request_scope)
        state = dict(scope.get("state") or {})
        state["env"] = self.env
        state["ctx"] = ctx
        inner_scope = {**scope, "state": state}

        async def tracked_send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                exchange.status = message["status"]
                exchange.started = True
            elif kind == "http.response.body" and not message.get("more_body", False):
                exchange.complete = True
            await send(message)

        async def tracked_receive() -> Message:
            message = await receive()
            if message["type"] == "http.disconnect" and not exchange.complete:
                exchange.disconnected = True
            return message

        with use_scope(exchange.request_scope):
            responded = False
            try:
                try:
                    if not self._bindings_life.ready:
                        await self._bindings_life.ensure_started()
                    await self._call_app(
                        app, inner_scope, tracked_receive, tracked_send, exchange, loop
                    )
                except OSError as exc:
                    if not exchange.disconnected:  # else: the client left, nothing to report
                        await self._asgi_failed(exchange, exc, label)
                except Exception as exc:
                    await self._asgi_failed(exchange, exc, label)
                responded = True
                await self._drain(ctx, label)
            except asyncio.CancelledError as exc:  # the server's shutdown: see _app.py
                if not responded:
                    await self._cut_off(exchange, exc, label)
            finally:
                await end_scope(ctx, exchange.request_scope)
                if self._observers:
                    self._report(exchange)

    async def _call_app(
        self,
        app: Any,
        scope: Scope,
        receive: Receive,
        send: Send,
        exchange: Exchange,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        """The application, under the wall-time deadline as ``asyncio.timeout_at`` would run
        it, for less: the app's ``Watch`` arms the deadline only for a request still running
        after ``_PUMP_DELAY`` (see "Timers" in ``_app.py``). The deadline's expiry becomes a
        504 (or an aborted response) here; the app's own errors go to the caller."""
        task = exchange.task
        cancelling = task.cancelling() if task is not None else 0
        watch = self._watch
        watch.add(exchange, loop, loop.time())
        try:
            await app(scope, receive, send)
        except asyncio.CancelledError as exc:
            if not exchange.take_timeout_cancel(cancelling):
                raise  # not the deadline's: the server's (see "Shutdown" in _app.py)
            exchange.phase = DONE
            watch.leave(exchange, None)
            await self._wall_time_exceeded(exchange, timed_out(exc), exchange.label)
        finally:
            exchange.phase = DONE
            watch.leave(exchange, None)
            exchange.disarm()

    async def _asgi_failed(self, exchange: Exchange, exc: BaseException, label: str) -> None:
        # Logged here and not re-raised: the server would log it a second time. Starlette's
        # ServerErrorMiddleware has usually sent a 500 already; if nothing was sent, we do.
        exchange.error = exc
        logger.error("%s: %s failed", label, self.worker.name, exc_info=exc)
        if not exchange.started:
            exchange.status = 500
            response = self._error_response(exc, label)
            try:
                await self._send_response(response, exchange)
            except ClientGone:
                exchange.disconnected = True

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.worker.asgi_app
        if app is None:
            # fetch workers have no WebSocket API: refuse the handshake (the server sends 403).
            message = await receive()
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.close", "code": 1008})
            return
        if not self._bindings_life.ready:
            await self._bindings_life.ensure_started()
        path: str = scope["path"]
        limits = self.settings.limits
        # A WebSocket lives as long as it is open: its scope has no wall-time limit.
        request_scope = RequestScope(
            self.settings.policy,
            max_sockets=limits.max_sockets,
            slot_timeout=limits.slot_timeout,
            label=f"WebSocket {path}",
        )
        ctx = ExecutionContext(request_scope, f"WebSocket {path}")
        state = dict(scope.get("state") or {})
        state["env"] = self.env
        state["ctx"] = ctx
        with use_scope(request_scope):
            try:
                await app({**scope, "state": state}, receive, send)
                await ctx._drain(None)
            finally:
                await end_scope(ctx, request_scope)
