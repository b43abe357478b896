"""One HTTP request as the app serves it.

- :class:`Exchange` is the request: its label, scope, ``ctx`` and wall-time deadline, what was
  sent (status, started, complete), the phase it is in (``Phase``), and the cancellations: when
  the client leaves, and when the request runs out of wall time.
- :class:`Inbound` is the request body and the client's liveness, read by one pump task.
- :class:`Watch` (in ``_watch.py``) is one timer per application for all of its requests (see
  "Timers" in ``_app.py``).

See ``_app.py`` for the theory of operation.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, final

from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import ClientDisconnectedError, ClientGone
from tcpworkers.runtime._asgi import Receive, Scope, Send
from tcpworkers.runtime._context import NO_TASKS, ExecutionContext
from tcpworkers.runtime._settings import Limits
from tcpworkers.scope._scope import new_scope

__all__ = ["DONE", "HANDLER", "STREAMING", "Exchange", "Inbound", "Phase"]

logger = logging.getLogger("tcpworkers.runtime")

# How long a handler runs before the request starts watching for the client going away (see
# Inbound) and gets a timer for its wall-time deadline (see Watch): long enough that a typical
# quick request never pays for either.
_PUMP_DELAY: Final = 0.05
# Request body bytes the pump buffers ahead of the reader before it stops receiving (uvicorn
# buffers about as much again before it stops reading the socket).
_BODY_HIGH_WATER: Final = 64 * 1024
# Makes an object without calling its class's __init__ (see Exchange.__init__).
_new: Final = object.__new__
_perf_counter: Final = time.perf_counter


class Phase(enum.Enum):
    HANDLER = enum.auto()
    STREAMING = enum.auto()
    DONE = enum.auto()


# The phases as module constants, for the code that runs on every request: on Python 3.11,
# ``DONE`` goes through ``EnumType.__getattr__``'s slot, a global does not.
HANDLER: Final = Phase.HANDLER
STREAMING: Final = Phase.STREAMING
DONE: Final = Phase.DONE


@final
class Exchange:
    """One HTTP request as the app serves it: who it is (method, path, scope, ``ctx``), what was
    sent (status, started, complete), the phase it is in (``Phase``), its wall-time deadline,
    and its cancellations: when the client leaves, and when the request runs out of wall time.

    One object per request (it used to be three: a run, an exchange and an inbound side, and
    every object costs instructions on every request).
    For a fetch worker it is also the request's body stream (``async for``): the receive pump
    (:class:`Inbound`) is made only when something needs it.
    """

    __slots__ = (
        "_cancel_requested",
        "_deadline_timer",
        "_expiring",
        "_headers",
        "_receive",
        "_send",
        "complete",
        "ctx",
        "deadline",
        "disconnected",
        "error",
        "head",
        "inbound",
        "method",
        "origin",
        "path",
        "phase",
        "request_scope",
        "started",
        "started_at",
        "status",
        "task",
    )

    def __init__(
        self,
        scope: Scope,
        send: Send,
        receive: Receive | None,
        policy: EgressPolicy,
        limits: Limits,
        task: asyncio.Task[Any] | None,
        now: float,
    ) -> None:
        """A request's scope (egress policy, limits), its ``ctx`` and its exchange; ``now`` is
        the loop's time, ``task`` the task serving the request, ``receive`` the channel of a
        fetch worker's request body (None for an ASGI worker, which reads its own)."""
        self._begin(scope, send, receive, policy, limits, task, now)

    def _begin(
        self,
        scope: Scope,
        send: Send,
        receive: Receive | None,
        policy: EgressPolicy,
        limits: Limits,
        task: asyncio.Task[Any] | None,
        now: float,
    ) -> Exchange:
        """What ``__init__`` does, returning the exchange: ``_serve`` calls it on
        ``object.__new__(Exchange)``, because on Python 3.11 a class call with a Python
        ``__init__`` goes through slower machinery than a method call (~200 instructions per
        request). Called with positional arguments: keywords cost a dict."""
        method: str = scope["method"]
        path: str = scope["path"]
        label = f"{method} {path}"
        request_scope = new_scope(policy, limits.max_sockets, limits.slot_timeout, label)
        self.method = method
        self.path = path
        self.request_scope = request_scope
        # ExecutionContext(request_scope, label), without the frame of its __init__ (keep the
        # two in step).
        self.ctx = ctx = _new(ExecutionContext)
        ctx._scope = request_scope
        ctx._label = label
        ctx._tasks = NO_TASKS
        ctx._ended = False
        ctx._cancelled = ()
        self._send = send
        self.task = task
        self.head = method == "HEAD"
        self._receive = receive
        # The request's ASGI headers, where the Watch looks for Expect (a fetch worker's).
        self._headers: Any = scope["headers"] if receive is not None else ()
        self.inbound: Inbound | None = None  # the receive pump, once something needs it
        self.started_at = _perf_counter()
        # Loop time when limits.wall_time runs out.
        self.deadline = None if limits.wall_time is None else now + limits.wall_time
        self.phase: Phase = HANDLER
        self.status = 500
        self.started = False
        self.complete = False
        self.disconnected = False
        self.error: BaseException | None = None
        self.origin: str | None = None  # where the worker streamed a socket into the response
        self._cancel_requested = False
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._expiring = False  # the wall time ran out and the task was cancelled for it
        return self

    @property
    def label(self) -> str:
        """How logs and errors name the request: ``"GET /orders"``."""
        return self.request_scope.label

    # -- the client side: the request body and the client's liveness ------------------------

    def pump(self) -> Inbound | None:
        """The request's receive pump, made on first use (None for an ASGI worker)."""
        inbound = self.inbound
        if inbound is None and self._receive is not None:
            inbound = self.inbound = Inbound(self._receive, self.client_gone)
        return inbound

    def watch_client(self) -> None:
        """Start the pump now (idempotent): a streamed response may last, and a client leaving
        should stop it."""
        inbound = self.pump()
        if inbound is not None:
            inbound.start()

    def __aiter__(self) -> AsyncIterator[bytes]:
        """The request's body stream (a fetch worker's): its chunks, through the pump."""
        inbound = self.pump()
        assert inbound is not None, "an ASGI worker reads its own request body"
        return inbound.body()

    def client_gone(self) -> None:
        """The pump saw ``http.disconnect``: stop the handler or the stream."""
        self.disconnected = True
        if self.phase is not DONE and not self._cancel_requested and self.task:
            self._cancel_requested = True
            self.task.cancel()

    def take_disconnect_cancel(self) -> bool:
        """True if a CancelledError is ours (client gone) and nobody else cancelled the task."""
        if not self._cancel_requested or self.task is None:
            return False
        self._cancel_requested = False
        return self.task.uncancel() == 0

    def grown_up(self, loop: asyncio.AbstractEventLoop) -> None:
        """The request has run for ``_PUMP_DELAY`` (or its whole wall time, if shorter): watch
        for the client leaving (the handler is still running) and arm the deadline."""
        if self.phase is DONE:
            return
        if self.phase is HANDLER and not any(name == b"expect" for name, _ in self._headers):
            inbound = self.pump()
            if inbound is not None:
                inbound.start()
        if self.deadline is not None:
            self.arm(loop, self.deadline)

    # -- the wall-time deadline: what asyncio.timeout_at() did, for a fraction of the cost ---

    def arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        """Cancel the request's task at ``deadline`` (loop time) unless it is done by then."""
        if self._deadline_timer is None and self.phase is not DONE:
            self._deadline_timer = loop.call_at(deadline, self._time_up)

    def _time_up(self) -> None:
        self._deadline_timer = None
        if self.phase is not DONE and self.task is not None and not self._expiring:
            self._expiring = True
            self.task.cancel()

    def take_timeout_cancel(self, cancelling: int) -> bool:
        """True if a CancelledError is the wall time's and nobody else cancelled the task since
        the deadline was set (``cancelling``: the task's count then), as ``asyncio.timeout``
        decides when it turns a cancellation into ``TimeoutError``."""
        if not self._expiring or self.task is None:
            return False
        self._expiring = False
        return self.task.uncancel() <= cancelling

    def disarm(self) -> None:
        """The deadline no longer applies (the response is done): drop the timer, and take back
        a cancellation that fired too late to be delivered, as ``asyncio.timeout`` does."""
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        if self._expiring and self.task is not None:
            self._expiring = False
            self.task.uncancel()

    # -- sending ----------------------------------------------------------------------------

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.status = status
        self.started = True
        try:
            await self._send({"type": "http.response.start", "status": status, "headers": headers})
        except OSError as exc:
            raise ClientGone from exc

    async def whole(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """``start`` and the only ``body``, as one step (most responses are bytes)."""
        self.status = status
        self.started = True
        send = self._send
        try:
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})
        except OSError as exc:
            raise ClientGone from exc
        self.complete = True

    async def body(self, chunk: bytes, *, more: bool) -> None:
        try:
            await self._send({"type": "http.response.body", "body": chunk, "more_body": more})
        except OSError as exc:
            raise ClientGone from exc
        if not more:
            self.complete = True


@final
class Inbound:
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
    ``_PUMP_DELAY`` (a quick handler finishes before a disconnect could matter; see
    :class:`Watch`). The delay does not start it when the client sent ``Expect: 100-continue``:
    the first ``receive`` makes uvicorn answer "100 Continue", inviting the upload, which a
    handler that refuses the request without reading its body should spare the client.

    Iterating it (``async for``) reads the body: the request's body stream is the ``Inbound``
    itself, so a request whose body is never read costs no generator.
    """

    __slots__ = (
        "_buffered",
        "_chunks",
        "_eof",
        "_on_disconnect",
        "_pump_waiter",
        "_reader_waiter",
        "_receive",
        "disconnected",
        "task",
    )

    def __init__(self, receive: Receive, on_disconnect: Callable[[], None]) -> None:
        self._receive = receive
        self._on_disconnect = on_disconnect
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._eof = False
        self._reader_waiter: asyncio.Future[None] | None = None
        self._pump_waiter: asyncio.Future[None] | None = None
        self.disconnected = False
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the pump now (idempotent)."""
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._pump())

    def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.body()

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
