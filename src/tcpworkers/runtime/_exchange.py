"""One HTTP request as the app serves it: its response side, its inbound side, its run.

- :class:`Exchange` is the response side: what was sent (status, started, complete), the phase
  the request is in (``Phase``), and the cancellation when the client leaves.
- :class:`Inbound` is the request body and the client's liveness, read by one pump task.
- :class:`RequestRun` is what every request starts with: its label, limits, scope, ``ctx``,
  exchange and wall-time deadline (it replaces a 7-tuple).

See ``_app.py`` for the theory of operation.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Final, final

from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import ClientDisconnectedError, ClientGone
from tcpworkers.runtime._asgi import Message, Receive, Scope, Send
from tcpworkers.runtime._context import ExecutionContext
from tcpworkers.runtime._settings import Limits
from tcpworkers.scope import RequestScope

__all__ = ["Exchange", "Inbound", "Phase", "RequestRun"]

logger = logging.getLogger("tcpworkers.runtime")

# How long a handler runs before the request starts watching for the client going away (see
# Inbound): long enough that a typical quick handler never pays for the watching task.
_PUMP_DELAY: Final = 0.05
# Request body bytes the pump buffers ahead of the reader before it stops receiving (uvicorn
# buffers about as much again before it stops reading the socket).
_BODY_HIGH_WATER: Final = 64 * 1024


class Phase(enum.Enum):
    HANDLER = enum.auto()
    STREAMING = enum.auto()
    DONE = enum.auto()


@final
class Exchange:
    """One HTTP request's response side: what was sent, and the disconnect cancellation."""

    __slots__ = (
        "_cancel_requested",
        "_send",
        "complete",
        "disconnected",
        "error",
        "head",
        "origin",
        "phase",
        "started",
        "status",
        "task",
    )

    def __init__(self, send: Send, *, head: bool) -> None:
        self._send = send
        self.head = head
        self.task = asyncio.current_task()
        self.phase = Phase.HANDLER
        self.status = 500
        self.started = False
        self.complete = False
        self.disconnected = False
        self.error: BaseException | None = None
        self.origin: str | None = None  # where the worker streamed a socket into the response
        self._cancel_requested = False

    def client_gone(self) -> None:
        """The pump saw ``http.disconnect``: stop the handler or the stream."""
        self.disconnected = True
        if self.phase is not Phase.DONE and not self._cancel_requested and self.task:
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
@dataclass(slots=True)
class RequestRun:
    """What every request starts with: who it is, its scope, its ``ctx`` and its exchange."""

    method: str
    path: str
    limits: Limits
    request_scope: RequestScope
    ctx: ExecutionContext
    exchange: Exchange
    started_at: float = field(default_factory=time.perf_counter)
    deadline: float | None = None  # loop time when limits.wall_time runs out

    @property
    def label(self) -> str:
        """How logs and errors name the request: ``"GET /orders"``."""
        return self.request_scope.label

    @classmethod
    def begin(cls, scope: Scope, send: Send, *, policy: EgressPolicy, limits: Limits) -> RequestRun:
        """A request's scope (egress policy, limits), its ``ctx`` and its exchange."""
        method: str = scope["method"]
        path: str = scope["path"]
        label = f"{method} {path}"
        request_scope = RequestScope(
            policy,
            max_sockets=limits.max_sockets,
            slot_timeout=limits.slot_timeout,
            label=label,
        )
        run = cls(
            method,
            path,
            limits,
            request_scope,
            ExecutionContext(request_scope, label=label),
            Exchange(send, head=method == "HEAD"),
        )
        if limits.wall_time is not None:
            run.deadline = asyncio.get_running_loop().time() + limits.wall_time
        return run
