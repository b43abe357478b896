"""``WorkerApp``: the ASGI application that serves a worker, one request scope per request.

Theory of operation. For every HTTP request the app creates a ``RequestScope`` (egress policy,
socket limit, accounting) and makes it current for everything the request runs: the handler,
the streaming of its response body, and its ``ctx.wait_until`` tasks. A request goes through
three phases (``_Phase``):

    HANDLER    the worker's handler runs and returns a Response (or fails: 500/413/504);
    STREAMING  the response is sent; a streamed body is read one chunk at a time and the next
               chunk is read only after ``send`` returned (ASGI ``send`` waits while the
               server's transport is over its high-water mark), so a slow client slows the
               source and memory stays flat;
    DONE       the response is complete, or abandoned.

Then the app waits for the ``wait_until`` tasks, closes the scope (every socket the request
still owns is closed, which its peer sees), and reports a ``RequestRecord`` to the observers.

The client going away. The request body and the client's liveness arrive on one ASGI
``receive`` channel, which one small task per request, the pump (``_Inbound``), reads: it hands
body chunks to the handler (``await request.bytes()``) through a bounded buffer, then keeps
waiting for ``http.disconnect``. On a disconnect in the HANDLER or STREAMING phase it cancels the
request's task (as the Workers runtime cancels a request whose client left): the handler or the
copy loop stops, the socket being streamed is closed with the scope, and the request is recorded
as 499. ``wait_until`` tasks are separate tasks and keep running. (uvicorn's ``send`` returns
silently once the client is gone, so without the pump a stream would be copied into the void
until its source ended.) The pump's cancellation is told apart from a server's (shutdown) with
``Task.uncancel()``, as ``asyncio.timeout`` does.

Limits. ``limits.wall_time`` (default 30 s) is the deadline for the response: the HANDLER and
STREAMING phases run under ``asyncio.timeout_at`` (expiry: 504 if nothing was sent, else the
response is aborted). ``wait_until`` tasks then get ``limits.wait_until_time`` (default 30 s)
of their own, after which they are cancelled. Either expiry is logged once, naming where the
worker's code was waiting (``runtime/_running.py``).

Shutdown. A server that stops waiting for a request (uvicorn after ``shutdown_timeout``)
cancels its task. The request then ends like any other (scope closed, record reported), with
one log line for a response that was not complete and one per cancelled ``wait_until`` task,
and the cancellation is not re-raised: uvicorn would log it as "Exception in ASGI
application". The lifespan shutdown waits for such requests to finish ending, and flushes the
logs, so that nothing is logged after the server's last line.

ASGI-application workers (FastAPI, Starlette) are called unchanged inside the same kind of
scope, with ``env`` and ``ctx`` added to ``scope["state"]`` (``request.state.env``); their
lifespan events are passed through. Bindings start at lifespan startup (or on the first request
when the server sends no lifespan events) and stop at lifespan shutdown.
"""

from __future__ import annotations

import asyncio
import enum
import http
import logging
import reprlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any, Final, NamedTuple, final

from tcpworkers.errors import BodyTooLargeError, ClientDisconnectedError, ClientGone
from tcpworkers.http._request import Request
from tcpworkers.http._response import Response
from tcpworkers.runtime._context import ExecutionContext
from tcpworkers.runtime._deverror import dev_error_response
from tcpworkers.runtime._env import Binding, Env
from tcpworkers.runtime._logging import flush_logs
from tcpworkers.runtime._running import describe_traceback
from tcpworkers.runtime._settings import Limits, RequestObserver, RequestRecord, RuntimeSettings
from tcpworkers.runtime._worker import Worker
from tcpworkers.scope import RequestScope, use_scope
from tcpworkers.scope._trust import trusted_connections

__all__ = ["WorkerApp"]

logger = logging.getLogger("tcpworkers.runtime")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# nginx's code for "client closed the request": recorded when the client left before the
# response was complete.
CLIENT_CLOSED_REQUEST: Final = 499
# How long a handler runs before the request starts watching for the client going away (see
# _Inbound): long enough that a typical quick handler never pays for the watching task.
_PUMP_DELAY: Final = 0.05
# How long an ASGI application's lifespan call may take to return after its last event.
_LIFESPAN_END_TIMEOUT: Final = 5.0
# At lifespan shutdown, how long requests the server just cancelled get to finish ending
# (closing sockets, reporting); they only clean up, so this is rarely more than milliseconds.
_SETTLE_TIMEOUT: Final = 5.0
# Request body bytes the pump buffers ahead of the reader before it stops receiving (uvicorn
# buffers about as much again before it stops reading the socket).
_BODY_HIGH_WATER: Final = 64 * 1024


class _Phase(enum.Enum):
    HANDLER = enum.auto()
    STREAMING = enum.auto()
    DONE = enum.auto()


@final
class _Exchange:
    """One HTTP request's response side: what was sent, and the disconnect cancellation."""

    __slots__ = (
        "_cancel_requested",
        "_send",
        "complete",
        "disconnected",
        "error",
        "head",
        "phase",
        "started",
        "status",
        "task",
    )

    def __init__(self, send: Send, *, head: bool) -> None:
        self._send = send
        self.head = head
        self.task = asyncio.current_task()
        self.phase = _Phase.HANDLER
        self.status = 500
        self.started = False
        self.complete = False
        self.disconnected = False
        self.error: BaseException | None = None
        self._cancel_requested = False

    def client_gone(self) -> None:
        """The pump saw ``http.disconnect``: stop the handler or the stream."""
        self.disconnected = True
        if self.phase is not _Phase.DONE and not self._cancel_requested and self.task:
            self._cancel_requested = True
            self.task.cancel()

    def take_disconnect_cancel(self) -> bool:
        """True if a CancelledError is ours (client gone) and nobody else cancelled the task."""
        if not self._cancel_requested or self.task is None:
            return False
        self._cancel_requested = False
        return self.task.uncancel() == 0

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.started = True
        await self._send_message(
            {"type": "http.response.start", "status": status, "headers": headers}
        )

    async def body(self, chunk: bytes, *, more: bool) -> None:
        await self._send_message({"type": "http.response.body", "body": chunk, "more_body": more})
        if not more:
            self.complete = True

    async def _send_message(self, message: Message) -> None:
        try:
            await self._send(message)
        except OSError as exc:
            raise ClientGone from exc


@final
class _Inbound:
    """The request body and the client's liveness, from one ASGI ``receive`` channel.

    One task, the pump, is the only caller of ``receive``: it hands body chunks to the reader
    (``request.bytes()``, ``async for chunk in request``) through a small buffer, and stops
    receiving while the buffer is over ``_BODY_HIGH_WATER`` (backpressure: the server stops
    reading the upload). Once the body is complete it goes on waiting for ``http.disconnect``.
    Nothing of the body is ever discarded, so a body can be read at any time (even by a
    streamed response: ``Response(request)`` echoes it). The price: while a large body sits
    unread (buffer full, the client still uploading) a disconnect is noticed only by the server.

    The pump costs a task, so it starts only when it has work: when the handler reads the body,
    when a streamed response body starts, or when the handler has been running for
    ``_PUMP_DELAY`` (a quick handler finishes before a disconnect could matter). The timer is
    not used when the client sent ``Expect: 100-continue``: the first ``receive`` makes uvicorn
    answer "100 Continue", inviting the upload, which a handler that refuses the request
    without reading its body should spare the client.
    """

    __slots__ = (
        "_buffered",
        "_chunks",
        "_eof",
        "_on_disconnect",
        "_pump_waiter",
        "_reader_waiter",
        "_receive",
        "_timer",
        "disconnected",
        "task",
    )

    def __init__(self, receive: Receive, *, on_disconnect: Callable[[], None]) -> None:
        self._receive = receive
        self._on_disconnect = on_disconnect
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._reader_waiter: asyncio.Future[None] | None = None
        self._pump_waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None

    def start_later(self, scope: Scope) -> None:
        """Start the pump if the handler is still running after ``_PUMP_DELAY``."""
        if not any(name == b"expect" for name, _ in scope["headers"]):
            self._timer = asyncio.get_running_loop().call_later(_PUMP_DELAY, self.start)

    def start(self) -> None:
        """Start the pump now (idempotent)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._pump())

    def handler_returned(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def stop(self) -> None:
        self.handler_returned()
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def body(self) -> AsyncIterator[bytes]:
        """The body's chunks (the request's body stream; consumed once, see ``Body``)."""
        self.start()
        while True:
            if self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                _wake(self._pump_waiter)
                yield chunk
            elif self._eof:
                return
            elif self.disconnected:
                raise ClientDisconnectedError(
                    "the client closed the connection before sending the whole request body"
                )
            else:
                self._reader_waiter = asyncio.get_running_loop().create_future()
                await self._reader_waiter

    async def _pump(self) -> None:
        """Receive until ``http.disconnect``; report it (``on_disconnect``) and stop."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                message = await self._receive()
                kind = message["type"]
                if kind == "http.disconnect":
                    self.disconnected = True
                    _wake(self._reader_waiter)
                    self._on_disconnect()
                    return
                if kind != "http.request" or self._eof:
                    continue
                chunk = message.get("body", b"")
                if chunk:
                    self._chunks.append(chunk)
                    self._buffered += len(chunk)
                if not message.get("more_body", False):
                    self._eof = True
                _wake(self._reader_waiter)
                while self._buffered > _BODY_HIGH_WATER:
                    self._pump_waiter = loop.create_future()
                    await self._pump_waiter
        except Exception:  # a broken server channel must not become an unhandled task error
            logger.debug("the request's receive pump stopped", exc_info=True)


def _wake(waiter: asyncio.Future[None] | None) -> None:
    if waiter is not None and not waiter.done():
        waiter.set_result(None)


@final
class _InnerLifespan:
    """Runs an ASGI-application worker's own lifespan protocol inside ours."""

    def __init__(self, app: ASGIApp, scope: Scope) -> None:
        self._app = app
        self._scope = scope
        self._inbox: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: asyncio.Queue[Message] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._supported = True

    async def startup(self) -> None:
        reply = await self._exchange("lifespan.startup")
        if reply is not None and reply["type"] == "lifespan.startup.failed":
            await self._end()
            raise RuntimeError(f"the application's startup failed: {reply.get('message', '')}")

    async def shutdown(self) -> None:
        if self._task is None or not self._supported:
            return
        reply = await self._exchange("lifespan.shutdown")
        await self._end()
        if reply is not None and reply["type"] == "lifespan.shutdown.failed":
            raise RuntimeError(f"the application's shutdown failed: {reply.get('message', '')}")

    async def _end(self) -> None:
        """Let the application's lifespan call return (cancel it if it does not, promptly)."""
        if self._task is not None and not self._task.done():
            await asyncio.wait([self._task], timeout=_LIFESPAN_END_TIMEOUT)
            self._task.cancel()

    async def _run(self) -> None:
        await self._app(self._scope, self._inbox.get, self._outbox.put)

    @staticmethod
    def _finished(task: asyncio.Task[None]) -> None:
        # Starlette re-raises a lifespan failure after reporting it: already logged by us.
        if not task.cancelled() and task.exception() is not None:
            logger.debug("the application's lifespan ended with %r", task.exception())

    async def _exchange(self, message_type: str) -> Message | None:
        if not self._supported:
            return None
        if self._task is None:
            self._task = asyncio.create_task(self._run())
            self._task.add_done_callback(self._finished)
        await self._inbox.put({"type": message_type})
        getter = asyncio.ensure_future(self._outbox.get())
        await asyncio.wait([getter, self._task], return_when=asyncio.FIRST_COMPLETED)
        if getter.done():
            return getter.result()
        getter.cancel()
        # The application ended without answering: it does not do lifespan (uvicorn's "auto").
        self._supported = False
        logger.debug("the application does not handle lifespan events")
        return None


class _Begun(NamedTuple):
    method: str
    path: str
    label: str
    limits: Limits
    request_scope: RequestScope
    ctx: ExecutionContext
    exchange: _Exchange


@final
class WorkerApp:
    """The ASGI 3 application that serves ``worker``.

    Args:
        worker: the worker to serve (see :func:`load_worker`).
        settings: mode, egress policy, limits, vars and secrets.
        bindings: binding objects by name, exposed on ``env``; started before the first
            request and stopped at shutdown.
        observers: told about every finished request (logging, metrics).

    Attributes:
        worker: the worker served.
        settings: the settings in force.
        env: the ``env`` every request of this worker gets.
    """

    def __init__(
        self,
        worker: Worker,
        settings: RuntimeSettings,
        *,
        bindings: Mapping[str, Binding] | None = None,
        observers: Sequence[RequestObserver] = (),
    ) -> None:
        if not isinstance(worker, Worker):
            raise TypeError(
                f"worker must be a Worker (from load_worker() or Worker.from_object()), not "
                f"{type(worker).__name__}"
            )
        if not isinstance(settings, RuntimeSettings):
            raise TypeError(f"settings must be RuntimeSettings, not {type(settings).__name__}")
        bindings = dict(bindings or {})
        for name, binding in bindings.items():
            if not isinstance(binding, Binding):
                raise TypeError(
                    f"binding {name!r} ({type(binding).__name__}) needs async start() and "
                    "stop() methods (the Binding protocol)"
                )
        self.worker = worker
        self.settings = settings
        self.env = Env(settings.vars, settings.secrets, bindings)
        self._bindings = bindings
        self._observers = tuple(observers)
        self._started: list[str] = []  # bindings started, in order
        self._ready = not bindings  # every binding started
        self._starting: asyncio.Task[None] | None = None
        self._lifespan_lock = asyncio.Lock()
        self._in_flight: set[asyncio.Task[Any]] = set()  # HTTP requests being served

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            task = asyncio.current_task()
            assert task is not None
            self._in_flight.add(task)
            try:
                if self.worker.kind == "asgi":
                    await self._serve_asgi(scope, receive, send)
                else:
                    await self._serve_fetch(scope, receive, send)
            finally:
                self._in_flight.discard(task)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            raise ValueError(f"unsupported ASGI scope type {kind!r}")

    # -- bindings ---------------------------------------------------------------------------

    async def startup(self) -> None:
        """Start every binding not started yet, in order (idempotent).

        On failure the bindings already started are stopped again and the error is raised.
        """
        async with self._lifespan_lock:
            if self._ready:
                return
            try:
                for name, binding in self._bindings.items():
                    if name not in self._started:
                        await binding.start()
                        self._started.append(name)
            except BaseException:
                await self._stop_started()
                raise
            self._ready = True

    async def shutdown(self) -> None:
        """Stop every started binding, in reverse order (idempotent); failures are logged."""
        async with self._lifespan_lock:
            await self._stop_started()
            self._ready = not self._bindings

    async def _stop_started(self) -> None:
        while self._started:
            name = self._started.pop()
            try:
                await self._bindings[name].stop()
            except Exception:
                logger.exception("binding %r failed to stop", name)

    async def _ensure_started(self) -> None:
        # No lifespan from the server: start on the first request, outside its scope (a
        # binding's connections are its own, not the request's) and shielded from its
        # cancellation (a client leaving must not abort a pool's start-up for everyone).
        if self._starting is None or self._starting.done():
            with trusted_connections():
                self._starting = asyncio.create_task(self.startup())
        await asyncio.shield(self._starting)

    # -- fetch workers ----------------------------------------------------------------------

    def _begin(self, scope: Scope, send: Send) -> _Begun:
        """What every HTTP request starts with: its scope, its ctx and its exchange."""
        method: str = scope["method"]
        path: str = scope["path"]
        label = f"{method} {path}"
        limits = self.settings.limits
        request_scope = RequestScope(
            self.settings.policy,
            max_sockets=limits.max_sockets,
            slot_timeout=limits.slot_timeout,
            label=label,
        )
        ctx = ExecutionContext(request_scope, label=label)
        exchange = _Exchange(send, head=method == "HEAD")
        return _Begun(method, path, label, limits, request_scope, ctx, exchange)

    async def _serve_fetch(self, scope: Scope, receive: Receive, send: Send) -> None:
        started_at = time.perf_counter()
        method, path, label, limits, request_scope, ctx, exchange = self._begin(scope, send)
        inbound = _Inbound(receive, on_disconnect=exchange.client_gone)
        loop = asyncio.get_running_loop()
        deadline = None if limits.wall_time is None else loop.time() + limits.wall_time
        with use_scope(request_scope):
            inbound.start_later(scope)
            responded = False
            try:
                request = Request._from_asgi(scope, inbound.body())
                await self._respond(request, ctx, exchange, inbound, deadline, label)
                responded = True
                await self._drain(ctx, label)
            except asyncio.CancelledError as exc:
                # Only the server cancels from outside (a client leaving is handled in
                # _respond): see "Shutdown" in the module docstring.
                if not responded:
                    await self._cut_off(exchange, exc, label)
            finally:
                exchange.phase = _Phase.DONE
                inbound.stop()
                await _end_scope(ctx, request_scope)
                self._report(
                    method, path, exchange, inbound.disconnected, started_at, request_scope
                )

    async def _respond(
        self,
        request: Request,
        ctx: ExecutionContext,
        exchange: _Exchange,
        inbound: _Inbound,
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
            exchange.phase = _Phase.DONE
            exchange.error = exc
            if not exchange.started:
                logger.warning(
                    "%s exceeded its wall_time of %gs; still running: %s",
                    label,
                    self.settings.limits.wall_time,
                    _interrupted(exc),
                )
                await self._send_plain(
                    exchange,
                    http.HTTPStatus.GATEWAY_TIMEOUT,
                    f"the request exceeded its wall-time limit of "
                    f"{self.settings.limits.wall_time:g}s",
                )
            else:
                logger.warning(
                    "%s exceeded its wall_time of %gs while sending the response; aborted; "
                    "still running: %s",
                    label,
                    self.settings.limits.wall_time,
                    _interrupted(exc),
                )
        except Exception as exc:
            self._stream_failed(exchange, exc, label)
        finally:
            exchange.phase = _Phase.DONE
        if exchange._cancel_requested:
            # The handler swallowed our cancellation; the client is gone all the same.
            exchange.take_disconnect_cancel()

    async def _handle_and_send(
        self,
        request: Request,
        ctx: ExecutionContext,
        exchange: _Exchange,
        inbound: _Inbound,
        label: str,
    ) -> None:
        response = await self._call_handler(request, ctx, exchange, label)
        inbound.handler_returned()
        if response is None:  # the client left while the handler failed
            return
        exchange.phase = _Phase.STREAMING
        await self._send_response(response, exchange, inbound)
        exchange.phase = _Phase.DONE

    def _stream_failed(self, exchange: _Exchange, exc: BaseException, label: str) -> None:
        # The response had started (errors before that became a 500 in _call_handler): all we
        # can do is abort it, which the server does when the app returns without completing.
        exchange.error = exc
        logger.error("%s: the response body failed while being sent; aborted", label, exc_info=exc)

    async def _call_handler(
        self, request: Request, ctx: ExecutionContext, exchange: _Exchange, label: str
    ) -> Response | None:
        """Run the handler; any failure becomes an error response (or None: client gone)."""
        try:
            if not self._ready:
                await self._ensure_started()
            result = await self.worker._handle(request, self.env, ctx)
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are being cancelled (client gone, wall time, server shutdown)
            return self._handler_failed(exchange, exc, label, request)  # its own CancelledError
        except BodyTooLargeError as exc:
            exchange.error = exc
            logger.info("%s: %s", label, exc)
            return _plain(http.HTTPStatus(BodyTooLargeError.status), str(exc))
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

    def _handler_failed(
        self, exchange: _Exchange, exc: BaseException, label: str, request: Request | None = None
    ) -> Response:
        exchange.error = exc
        logger.error("%s: %s failed", label, self.worker.name, exc_info=exc)
        return self._error_response(exc, label, request)

    def _error_response(
        self, exc: BaseException, label: str, request: Request | None = None
    ) -> Response:
        status = http.HTTPStatus.INTERNAL_SERVER_ERROR
        if self.settings.mode != "dev":
            return _plain(status, status.phrase)
        return dev_error_response(exc, label, request)

    async def _send_response(
        self, response: Response, exchange: _Exchange, inbound: _Inbound | None = None
    ) -> None:
        body = response._body
        headers = response.headers._raw()
        data = body.data
        if (
            data is not None
            and "content-length" not in response.headers
            and "transfer-encoding" not in response.headers
        ):
            headers.append((b"content-length", str(len(data)).encode()))
        await exchange.start(response.status, headers)
        if data is not None or exchange.head:
            if data is None:
                await _discard(body.stream)  # HEAD: the stream is never read
            await exchange.body(b"" if exchange.head or data is None else data, more=False)
            return
        if inbound is not None:
            inbound.start()  # a stream may last: watch for the client leaving
        chunks = body.take()
        try:
            async for chunk in chunks:
                await exchange.body(chunk, more=True)
        finally:
            await chunks.aclose()  # type: ignore[attr-defined]  # an async generator
        await exchange.body(b"", more=False)

    async def _send_plain(self, exchange: _Exchange, status: http.HTTPStatus, text: str) -> None:
        response = _plain(status, text)
        try:
            await self._send_response(response, exchange)
        except ClientGone:
            exchange.disconnected = True

    async def _drain(self, ctx: ExecutionContext, label: str) -> None:
        """Wait for the ``wait_until`` tasks, up to ``limits.wait_until_time``."""
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

    async def _cut_off(self, exchange: _Exchange, exc: BaseException, label: str) -> None:
        """The server cancelled a request whose response was not complete (shutdown)."""
        logger.warning(
            "%s: cancelled by the server's shutdown before the response was complete; "
            "still running: %s",
            label,
            describe_traceback(exc.__traceback__),
        )
        exchange.phase = _Phase.DONE
        if not exchange.started:  # the client gets an answer, not a dropped connection
            await self._send_plain(
                exchange, http.HTTPStatus.SERVICE_UNAVAILABLE, "the server is shutting down"
            )

    def _report(
        self,
        method: str,
        path: str,
        exchange: _Exchange,
        disconnected: bool,
        started_at: float,
        request_scope: RequestScope,
    ) -> None:
        if not self._observers:
            return
        status = exchange.status
        if (disconnected or exchange.disconnected) and not exchange.complete:
            status = CLIENT_CLOSED_REQUEST
        record = RequestRecord(
            method=method,
            path=path,
            status=status,
            duration=time.perf_counter() - started_at,
            stats=request_scope.stats,
            error=exchange.error,
        )
        for observer in self._observers:
            try:
                observer.request_finished(record)
            except Exception:
                logger.exception("request observer %r failed", observer)

    # -- ASGI-application workers -----------------------------------------------------------

    async def _serve_asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.worker.asgi_app
        assert app is not None
        started_at = time.perf_counter()
        method, path, label, limits, request_scope, ctx, exchange = self._begin(scope, send)
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

        loop = asyncio.get_running_loop()
        deadline = None if limits.wall_time is None else loop.time() + limits.wall_time
        with use_scope(request_scope):
            responded = False
            try:
                timeout = asyncio.timeout_at(deadline)
                try:
                    if not self._ready:
                        await self._ensure_started()
                    async with timeout:
                        await app(inner_scope, tracked_receive, tracked_send)
                except TimeoutError as exc:
                    if not timeout.expired():
                        await self._asgi_failed(exchange, exc, label)
                    else:
                        exchange.error = exc
                        logger.warning(
                            "%s exceeded its wall_time of %gs; still running: %s",
                            label,
                            limits.wall_time,
                            _interrupted(exc),
                        )
                        if not exchange.started:
                            await self._send_plain(
                                exchange,
                                http.HTTPStatus.GATEWAY_TIMEOUT,
                                "the request exceeded its wall-time limit of "
                                f"{limits.wall_time:g}s",
                            )
                except OSError as exc:
                    if not exchange.disconnected:  # else: the client left, nothing to report
                        await self._asgi_failed(exchange, exc, label)
                except Exception as exc:
                    await self._asgi_failed(exchange, exc, label)
                responded = True
                await self._drain(ctx, label)
            except asyncio.CancelledError as exc:  # the server's shutdown: see the docstring
                if not responded:
                    await self._cut_off(exchange, exc, label)
            finally:
                await _end_scope(ctx, request_scope)
                self._report(method, path, exchange, False, started_at, request_scope)

    async def _asgi_failed(self, exchange: _Exchange, exc: BaseException, label: str) -> None:
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
        if not self._ready:
            await self._ensure_started()
        path: str = scope["path"]
        limits = self.settings.limits
        # A WebSocket lives as long as it is open: its scope has no wall-time limit.
        request_scope = RequestScope(
            self.settings.policy,
            max_sockets=limits.max_sockets,
            slot_timeout=limits.slot_timeout,
            label=f"WebSocket {path}",
        )
        ctx = ExecutionContext(request_scope, label=f"WebSocket {path}")
        state = dict(scope.get("state") or {})
        state["env"] = self.env
        state["ctx"] = ctx
        with use_scope(request_scope):
            try:
                await app({**scope, "state": state}, receive, send)
                await ctx._drain(None)
            finally:
                await _end_scope(ctx, request_scope)

    # -- lifespan ---------------------------------------------------------------------------

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = self.worker.asgi_app
        inner = _InnerLifespan(app, scope) if app is not None else None
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "lifespan.startup":
                try:
                    await self.startup()
                    if inner is not None:
                        await inner.startup()
                except Exception as exc:
                    logger.exception("%s failed to start", self.worker.name)
                    await self.shutdown()
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif kind == "lifespan.shutdown":
                await self._settle_requests()
                failure = None
                if inner is not None:
                    try:
                        await inner.shutdown()
                    except Exception as exc:
                        logger.exception("%s failed to shut down", self.worker.name)
                        failure = str(exc)
                await self.shutdown()
                flush_logs()  # the access lines of the last requests, before the server's
                if failure is None:
                    await send({"type": "lifespan.shutdown.complete"})
                else:
                    await send({"type": "lifespan.shutdown.failed", "message": failure})
                return

    async def _settle_requests(self) -> None:
        """Let requests the server cancelled at shutdown finish ending (bounded)."""
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=_SETTLE_TIMEOUT)


def _plain(status: http.HTTPStatus, text: str) -> Response:
    return Response(
        text,
        status=status.value,
        headers={"content-type": "text/plain; charset=utf-8", "cache-control": "no-store"},
    )


def _interrupted(timeout: BaseException) -> str:
    """Where the worker's code was when a timeout cancelled it: the cancellation that
    ``asyncio.timeout`` turned into ``TimeoutError`` carries the frames it unwound."""
    return describe_traceback((timeout.__cause__ or timeout).__traceback__)


async def _end_scope(ctx: ExecutionContext, request_scope: RequestScope) -> None:
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


async def _discard(stream: object) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
