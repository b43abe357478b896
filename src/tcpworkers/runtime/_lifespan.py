"""Lifespan and bindings: start the bindings before the first request, stop them at the end.

:class:`Bindings` starts every binding in order (at lifespan startup, or on the first request
when the server sends no lifespan events) and stops them in reverse order at shutdown.
:func:`serve_lifespan` speaks the ASGI lifespan protocol for the app, passing the events on to
an ASGI-application worker's own lifespan (:class:`InnerLifespan`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Final, final

from tcpworkers.runtime._asgi import ASGIApp, Message, Receive, Scope, Send
from tcpworkers.runtime._env import Binding
from tcpworkers.scope._trust import trusted_connections

__all__ = ["Bindings", "InnerLifespan", "serve_lifespan"]

logger = logging.getLogger("tcpworkers.runtime")

# How long an ASGI application's lifespan call may take to return after its last event.
_LIFESPAN_END_TIMEOUT: Final = 5.0


@final
class Bindings:
    """The bindings of one app and their life cycle."""

    def __init__(self, bindings: Mapping[str, Binding]) -> None:
        self._bindings = dict(bindings)
        self._started: list[str] = []  # bindings started, in order
        self.ready = not bindings  # every binding started
        self._starting: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def startup(self) -> None:
        """Start every binding not started yet, in order (idempotent).

        On failure the bindings already started are stopped again and the error is raised.
        """
        async with self._lock:
            if self.ready:
                return
            try:
                for name, binding in self._bindings.items():
                    if name not in self._started:
                        await binding.start()
                        self._started.append(name)
            except BaseException:
                await self._stop_started()
                raise
            self.ready = True

    async def shutdown(self) -> None:
        """Stop every started binding, in reverse order (idempotent); failures are logged."""
        async with self._lock:
            await self._stop_started()
            self.ready = not self._bindings

    async def _stop_started(self) -> None:
        while self._started:
            name = self._started.pop()
            try:
                await self._bindings[name].stop()
            except Exception:
                logger.exception("binding %r failed to stop", name)

    async def ensure_started(self) -> None:
        """Start the bindings from a request (no lifespan from the server)."""
        # Outside the request's scope (a binding's connections are its own, not the request's)
        # and shielded from its cancellation (a client leaving must not abort a pool's start-up
        # for everyone).
        if self._starting is None or self._starting.done():
            with trusted_connections():
                self._starting = asyncio.create_task(self.startup())
        await asyncio.shield(self._starting)


async def serve_lifespan(
    bindings: Bindings, app: ASGIApp | None, name: str, scope: Scope, receive: Receive, send: Send
) -> None:
    """The ASGI lifespan protocol: bindings first, then the worker's own lifespan (if any)."""
    inner = InnerLifespan(app, scope) if app is not None else None
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "lifespan.startup":
            try:
                await bindings.startup()
                if inner is not None:
                    await inner.startup()
            except Exception as exc:
                logger.exception("%s failed to start", name)
                await bindings.shutdown()
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif kind == "lifespan.shutdown":
            failure = None
            if inner is not None:
                try:
                    await inner.shutdown()
                except Exception as exc:
                    logger.exception("%s failed to shut down", name)
                    failure = str(exc)
            await bindings.shutdown()
            if failure is None:
                await send({"type": "lifespan.shutdown.complete"})
            else:
                await send({"type": "lifespan.shutdown.failed", "message": failure})
            return


@final
class InnerLifespan:
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
