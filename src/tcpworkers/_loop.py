"""Run a coroutine on a gated loop: uvloop when it is installed, else the stdlib loop.

The loop is gated (see ``tcpworkers.drivers``): outside request scopes it behaves exactly like
the base loop; inside one, drivers' connections go through the egress gate.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from tcpworkers.drivers import new_gated_loop

__all__ = ["loop_factory", "run"]

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    """The gated uvloop factory when uvloop is importable and not disabled, else the stdlib one.

    ``TCPWORKERS_LOOP=asyncio`` forces the stdlib loop (for comparisons and debugging).
    """
    return new_gated_loop


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """Like ``asyncio.run(main)``, on uvloop by default (see :func:`loop_factory`)."""
    with asyncio.Runner(loop_factory=loop_factory(), debug=debug) as runner:
        return runner.run(main)
