"""``Outcome``: the awaitable behind ``Socket.opened`` and ``Socket.closed``."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any, Generic, TypeVar, final

__all__ = ["Outcome"]

T = TypeVar("T")


@final
class Outcome(Generic[T]):
    """A one-shot result (``Socket.opened``, ``Socket.closed``) that any number of tasks may
    await, any number of times, like a settled JavaScript promise.

    Awaiting is shielded: cancelling one awaiting task does not cancel the outcome for others.
    A failure nobody awaits is never logged as "exception was never retrieved".
    """

    __slots__ = ("_future",)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._future: asyncio.Future[T] = loop.create_future()

    def done(self) -> bool:
        """True once the outcome is settled (resolved or rejected)."""
        return self._future.done()

    def resolve(self, value: T) -> None:
        if not self._future.done():
            self._future.set_result(value)

    def reject(self, exc: BaseException) -> None:
        if not self._future.done():
            self._future.set_exception(exc)
            self._future.exception()  # mark retrieved: failure is reported to whoever awaits

    def __await__(self) -> Generator[Any, None, T]:
        if self._future.done():
            return self._future.result()
        return (yield from asyncio.shield(self._future).__await__())
