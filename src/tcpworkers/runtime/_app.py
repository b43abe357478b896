"""``WorkerApp``: the ASGI application that serves a worker, one request scope per request.

Theory of operation. For every HTTP request the app creates a ``RequestScope`` (egress policy,
socket limit, accounting) and makes it current for everything the request runs: the handler,
the streaming of its response body, and its ``ctx.wait_until`` tasks. A request goes through
three phases (``Phase``, in ``_exchange.py``):

    HANDLER    the worker's handler runs and returns a Response (or fails: 500/413/504);
    STREAMING  the response is sent; a streamed body is read one chunk at a time and the next
               chunk is read only after ``send`` returned (ASGI ``send`` waits while the
               server's transport is over its high-water mark), so a slow client slows the
               source and memory stays flat;
    DONE       the response is complete, or abandoned.

Then the app waits for the ``wait_until`` tasks, closes the scope (every socket the request
still owns is closed, which its peer sees), and reports a ``RequestRecord`` to the observers.

The client going away. The request body and the client's liveness arrive on one ASGI
``receive`` channel, which one small task per request, the pump, reads (``Inbound``): it hands
body chunks to the handler (``await request.bytes()``) through a bounded buffer, then keeps
waiting for ``http.disconnect``. On a disconnect in the HANDLER or STREAMING phase it cancels the
request's task (as the Workers runtime cancels a request whose client left): the handler or the
copy loop stops, the socket being streamed is closed with the scope, and the request is recorded
as 499. ``wait_until`` tasks are separate tasks and keep running. (uvicorn's ``send`` returns
silently once the client is gone, so without the pump a stream would be copied into the void
until its source ended.) The pump's cancellation is told apart from a server's (shutdown) with
``Task.uncancel()``, as ``asyncio.timeout`` does.

Limits. ``limits.wall_time`` (default 30 s) is the deadline for the response: the HANDLER and
STREAMING phases run under it (expiry: 504 if nothing was sent, else the response is aborted).
``wait_until`` tasks then get ``limits.wait_until_time`` (default 30 s) of their own, after
which they are cancelled. Either expiry is logged once, naming where the worker's code was
waiting (``_running.py``).

Timers. Most requests end within milliseconds, and two loop timers per request (the pump's
delay, the deadline's ``asyncio.timeout_at``) cost about a third of serving one. So one timer
per application (``Watch``) serves every request: requests join its queue in start order and
leave it when their response is done; a request still there ``_PUMP_DELAY`` after its start
gets its pump started (if the handler is still running) and a deadline timer of its own. The
deadline cancels the task as ``asyncio.timeout`` does and is told apart from other
cancellations the same way (``Task.uncancel()``, ``Exchange.take_timeout_cancel``); fetch
workers and ASGI-application workers both use this.

Shutdown. A server that stops waiting for a request (uvicorn after ``shutdown_timeout``)
cancels its task. The request then ends like any other (scope closed, record reported), with
one log line for a response that was not complete (and a 503 if nothing was sent) and one per
cancelled ``wait_until`` task, and the cancellation is not re-raised: uvicorn would log it as
"Exception in ASGI application". The lifespan shutdown waits for such requests to finish
ending, and flushes the logs, so that nothing is logged after the server's last line.

ASGI-application workers (FastAPI, Starlette) are called unchanged inside the same kind of
scope, with ``env`` and ``ctx`` added to ``scope["state"]`` (``request.state.env``); their
lifespan events are passed through. Bindings start at lifespan startup (or on the first request
when the server sends no lifespan events) and stop at lifespan shutdown.

Layout: this module is the application object and its dispatch of lifespan and WebSocket
scopes; a request's objects are in ``_exchange.py`` (the timer they share in ``_watch.py``),
bindings and lifespan in ``_lifespan.py``, fetch-handler serving (and the ASGI entry point
itself, ``__call__``) in ``_serve_fetch.py``, ASGI-application serving in ``_serve_asgi.py``
and what both share (the response, errors, the one wall-time/504 handling, the report) in
``_respond.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any, Final, final

from tcpworkers.runtime._asgi import Message, Receive, Scope, Send
from tcpworkers.runtime._env import Binding, Env
from tcpworkers.runtime._lifespan import Bindings, serve_lifespan
from tcpworkers.runtime._logging import flush_logs
from tcpworkers.runtime._respond import CLIENT_CLOSED_REQUEST
from tcpworkers.runtime._serve_asgi import AsgiServing
from tcpworkers.runtime._serve_fetch import FetchServing
from tcpworkers.runtime._settings import RequestObserver, RuntimeSettings
from tcpworkers.runtime._socket_body import install_log_filter
from tcpworkers.runtime._watch import Watch
from tcpworkers.runtime._worker import Worker
from tcpworkers.scope import RequestScope

__all__ = ["CLIENT_CLOSED_REQUEST", "WorkerApp"]

# At lifespan shutdown, how long requests the server just cancelled get to finish ending
# (closing sockets, reporting); they only clean up, so this is rarely more than milliseconds.
_SETTLE_TIMEOUT: Final = 5.0


@final
class WorkerApp(FetchServing, AsgiServing):
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
        self._bindings_life = Bindings(bindings)
        self._observers = tuple(observers)
        # HTTP requests being served, and each one's scope.
        self._in_flight: dict[asyncio.Task[Any], RequestScope] = {}
        # Observers that want the requests in flight (metrics: their open sockets) are shown
        # them once; others that want to know when a request starts are told per request.
        starters = []
        for observer in self._observers:
            if (watch := getattr(observer, "watch_requests", None)) is not None:
                watch(self._scopes_in_flight)
            elif (start := getattr(observer, "request_started", None)) is not None:
                starters.append(start)
        self._starters = tuple(starters)
        self._watch = Watch(settings.limits.wall_time)  # one timer for all requests
        # Decided once per worker, not per request: how an HTTP request is served, and the
        # handler a fetch worker's requests call (without Worker._handle's frame).
        if worker.kind == "asgi":
            self._serve_asgi_http = self._serve_asgi
        else:
            self._serve_asgi_http = None
            assert worker._invoke is not None
            self._invoke = worker._invoke
        install_log_filter()  # uvicorn's duplicate line for a streamed socket that broke

    # Read by MetricsEndpoint: this app shows its observers each request from its start, so
    # the middleware need not watch every response start for it.
    reports_request_start: Final = True

    def _scopes_in_flight(self) -> list[RequestScope]:
        return list(self._in_flight.values())

    # The ASGI entry point (``async def``: servers tell an ASGI 3 application by that) is the
    # coroutine that serves a fetch worker's request: every resumption of a handler passes
    # through each coroutine between it and its task, so this one less counts on every
    # request. It hands what is not a fetch worker's HTTP request to _serve_asgi (HTTP) and
    # _serve_other (lifespan, WebSocket).
    __call__ = FetchServing._serve

    async def _serve_other(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
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
        await self._bindings_life.startup()

    async def shutdown(self) -> None:
        """Stop every started binding, in reverse order (idempotent); failures are logged."""
        await self._bindings_life.shutdown()

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def receive_settled() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and self._in_flight:
                # Requests the server just cancelled finish ending (closing sockets,
                # reporting) before the bindings stop and the server says its last word.
                await asyncio.wait(set(self._in_flight), timeout=_SETTLE_TIMEOUT)
            return message

        async def send_flushed(message: Message) -> None:
            if message["type"].startswith("lifespan.shutdown."):
                flush_logs()  # the access lines of the last requests, before the server's
            await send(message)

        await serve_lifespan(
            self._bindings_life,
            self.worker.asgi_app,
            self.worker.name,
            scope,
            receive_settled,
            send_flushed,
        )
