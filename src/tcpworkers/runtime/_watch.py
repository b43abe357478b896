"""``Watch``: one loop timer for every request of an application (see "Timers" in ``_app.py``
and ``Exchange.grown_up``)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Final, final

from tcpworkers.runtime._exchange import _PUMP_DELAY, Exchange

__all__ = ["Watch"]

logger = logging.getLogger("tcpworkers.runtime")

# A loop timer may fire up to a millisecond early (libuv's resolution); what is due by then is
# handled in that run instead of re-arming for a fraction of a millisecond.
_TIMER_SLACK: Final = 0.001


@final
class Watch:
    """One loop timer for every request of an application, instead of two per request.

    A request that runs longer than ``_PUMP_DELAY`` needs its receive pump started and a timer
    for its wall-time deadline; most requests end long before, and a loop timer (armed, then
    cancelled) cost about as much as the rest of such a request. So requests join this queue
    when they start and leave it when their response is done; the queue is in start order, so
    everyone's turn (start + the same delay) comes in that order too, and one timer, armed for
    the oldest request, is enough. A request still running when its turn comes is handed its
    own deadline timer (:meth:`Exchange.grown_up`).
    """

    __slots__ = ("_after", "_loop", "_runs", "_timer", "leave")

    def __init__(self, wall_time: float | None) -> None:
        self._after = _PUMP_DELAY if wall_time is None else min(_PUMP_DELAY, wall_time)
        # run -> when its turn comes, in start order. A dict, not an OrderedDict: adding and
        # removing (once per request each) cost a third as much.
        self._runs: dict[Exchange, float] = {}
        # ``leave(run, None)``: the run is done and leaves the queue (if still there). The
        # dict's own pop, called without a Python frame, once per request.
        self.leave: Callable[[Exchange, None], float | None] = self._runs.pop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None

    def add(self, run: Exchange, loop: asyncio.AbstractEventLoop, now: float) -> None:
        if loop is not self._loop:
            # Another event loop (an app served by several in turn, as tests do): what was
            # queued belongs to the old one, whose timer (if it ever fires) is ignored.
            self._runs.clear()
            self._timer = None
            self._loop = loop
        due = now + self._after
        self._runs[run] = due
        if self._timer is None:
            self._timer = loop.call_at(due, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        if loop is not self._loop:
            return
        self._timer = None
        runs = self._runs
        ready = loop.time() + _TIMER_SLACK
        # One pass over the queue (the oldest first) for the turns that came, then they leave
        # it: a dict's first item after deleting the ones before it is found by skipping
        # their holes, so looking it up again after every deletion would be quadratic.
        turns: list[Exchange] = []
        for run, due in runs.items():
            if due > ready:
                self._timer = loop.call_at(due, self._fire, loop)
                break
            turns.append(run)
        for run in turns:
            runs.pop(run, None)
            try:
                run.grown_up(loop)
            except Exception:  # one request's failure must not stop the others' timers
                logger.exception("%s: starting its watch failed", run.label)
