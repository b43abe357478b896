"""Waiting in tests without guessing durations.

A fixed ``sleep()`` before an assert is either too short on a loaded machine (a flaky failure)
or so long the suite crawls, and an elapsed-time window (``0.4 < t < 2``) fails whenever the
machine pauses. These helpers wait for the thing itself:

- :func:`started` runs an awaitable in a task and returns once it has reached the point where
  it waits (a read blocked on an empty buffer, a write blocked on backpressure);
- :func:`eventually` waits until a condition holds, bounded, and fails with a message if it
  never does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["eventually", "started"]

T = TypeVar("T")


async def started(aw: Awaitable[T]) -> asyncio.Task[T]:
    """Run ``aw`` in a task; return once the task has run up to its first wait.

    The task sets an event just before awaiting ``aw``; this coroutine resumes only after that
    task step has ended, that is once ``aw`` has run synchronously up to the first point where
    it suspends (a read on an empty buffer waits for data there). The task must still be
    waiting: an awaitable that finished at once fails here instead of in a confusing later
    assert.
    """
    entered = asyncio.Event()

    async def run() -> T:
        entered.set()
        return await aw

    task = asyncio.ensure_future(run())
    await entered.wait()
    if task.done():
        task.result()  # re-raises what it raised
        raise AssertionError(f"{aw!r} finished at once instead of waiting")
    return task


async def eventually(
    condition: Callable[[], bool], *, within: float = 5.0, what: str | None = None
) -> None:
    """Wait until ``condition()`` is true; fail after ``within`` seconds if it never is.

    The condition is checked at once and then every few milliseconds, so a test waits only as
    long as the system needs, and the bound only matters when something is wrong.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() >= deadline:
            raise AssertionError(f"not true after {within} s: {what or condition}")
        await asyncio.sleep(0.005)
