"""Run a coroutine on uvloop when it is installed, else on the stdlib loop."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["loop_factory", "run"]

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """uvloop's loop factory when uvloop is importable and not disabled, else the stdlib one.

    ``TCPWORKERS_LOOP=asyncio`` forces the stdlib loop (for comparisons and debugging).
    """
    if os.environ.get("TCPWORKERS_LOOP", "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """Like ``asyncio.run(main)``, on uvloop by default (see :func:`loop_factory`)."""
    with asyncio.Runner(loop_factory=loop_factory(), debug=debug) as runner:
        return runner.run(main)
