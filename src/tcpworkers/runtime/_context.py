"""``ExecutionContext`` (``ctx``): work that outlives the response, inside the request's scope.

``ctx.wait_until(awaitable)`` starts the awaitable as a task with the request's scope current, so
sockets it opens belong to the request and count against its limits. The runtime ends the
request (closing every socket it still owns) only after the response is sent *and* every such
task is done. A task's exception is logged, never raised into the server and never left for the
loop to report as "never retrieved".
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Sequence
from typing import Any, Final, cast, final

from tcpworkers.runtime._running import describe_task
from tcpworkers.scope import RequestScope, use_scope

__all__ = ["NO_TASKS", "ExecutionContext"]

logger = logging.getLogger("tcpworkers.runtime")

# A context's tasks until its first wait_until(): most requests never call it, and an empty
# set per request costs its making and freeing. Empty and immutable, so adding to it by
# mistake fails loudly (wait_until() replaces it with a set of the context's own).
NO_TASKS: Final = cast("set[asyncio.Task[Any]]", frozenset())


@final
class ExecutionContext:
    """The ``ctx`` of a request: ``ctx.wait_until(...)`` (alias ``ctx.waitUntil``).

    Args:
        scope: the request scope the tasks run in; ``None`` (for calling a handler directly in
            a unit test) runs them with no scope.
        label: how log messages name the request, e.g. ``"GET /orders"``.
    """

    __slots__ = ("_cancelled", "_ended", "_label", "_scope", "_tasks")

    def __init__(self, scope: RequestScope | None = None, label: str = "request") -> None:
        # The runtime makes a request's ctx without this call (Exchange.__init__): keep the two
        # in step.
        self._scope = scope
        self._label = label
        self._tasks: set[asyncio.Task[Any]] = NO_TASKS
        self._ended = False
        # What _drain() cancelled when its time was up: where each task was (for the log).
        self._cancelled: Sequence[str] = ()

    def wait_until(self, awaitable: Awaitable[object]) -> None:
        """Keep ``awaitable`` running after the response is sent; the request ends after it.

        It starts at once as a task, with this request's scope current. Its result is ignored;
        an exception is logged (logger ``tcpworkers.runtime``).

        Args:
            awaitable: a coroutine, task or future.

        Raises:
            TypeError: ``awaitable`` is not awaitable (did you pass ``work`` instead of
                ``work()``?).
            RuntimeError: the request has already ended.
        """
        if not inspect.isawaitable(awaitable):
            raise TypeError(
                f"wait_until() takes an awaitable such as a coroutine, not "
                f"{type(awaitable).__name__}; call the coroutine function: wait_until(work())"
            )
        if self._ended:
            if inspect.iscoroutine(awaitable):
                awaitable.close()  # never started: no "coroutine was never awaited" warning
            raise RuntimeError(
                f"wait_until() was called after {self._label} ended; call it while handling "
                "the request (or from another wait_until task)"
            )
        task = asyncio.ensure_future(self._run(awaitable))
        tasks = self._tasks
        if tasks is NO_TASKS:  # the first one
            tasks = self._tasks = set()
        tasks.add(task)
        task.add_done_callback(self._task_done)

    # The Workers API spelling, for code written for Cloudflare (ctx.waitUntil(promise)).
    waitUntil = wait_until

    async def _run(self, awaitable: Awaitable[object]) -> None:
        with use_scope(self._scope):
            await awaitable

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()  # retrieved here, so the loop never reports it
        if exc is not None:
            logger.error("%s: a ctx.wait_until() task failed", self._label, exc_info=exc)

    @property
    def pending(self) -> int:
        """How many ``wait_until`` tasks are still running."""
        return len(self._tasks)

    def _end(self) -> None:
        """Internal: no more ``wait_until`` (the request is over)."""
        self._ended = True

    async def _drain(self, within: float | None) -> bool:
        """Internal: wait for every task (including ones they start); then the context ends.

        Returns False if ``within`` seconds elapsed first; the remaining tasks are then
        cancelled, and ``_cancelled`` says where each one was. Cancelled from outside (the
        server shutting down), it cancels the tasks too, with one log line each.
        """
        loop = asyncio.get_running_loop()
        deadline = None if within is None else loop.time() + within
        try:
            while self._tasks:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    self._cancelled = [describe_task(task) for task in self._tasks]
                    await self._cancel_all()
                    return False
                await asyncio.wait(set(self._tasks), timeout=remaining)
            return True
        finally:
            self._ended = True
            if self._tasks:  # cancelled from outside (server shutdown): take the tasks along
                for task in self._tasks:
                    logger.warning(
                        "%s: ctx.wait_until work cancelled at shutdown: %s",
                        self._label,
                        describe_task(task),
                    )
                await asyncio.shield(self._cancel_all())

    async def _cancel_all(self) -> None:
        tasks = set(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
