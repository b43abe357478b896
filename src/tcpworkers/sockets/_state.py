"""The states of a ``Socket`` and the moves between them (see ``_socket.py``'s docstring)."""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["LIVE", "READABLE", "WRITABLE", "State", "TRANSITIONS"]


class State(enum.Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    ENDED = "ended"
    CLOSED = "closed"
    UPGRADED = "upgraded"
    FAILED = "failed"


TRANSITIONS: Final[dict[State, frozenset[State]]] = {
    State.CONNECTING: frozenset({State.OPEN, State.FAILED, State.CLOSED, State.UPGRADED}),
    State.OPEN: frozenset({State.ENDED, State.CLOSED, State.UPGRADED}),
    State.ENDED: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
    State.UPGRADED: frozenset(),
    State.FAILED: frozenset(),
}


# The states in which an action is possible (tuples: membership tests identity first, which is
# cheaper than hashing an enum member on the read and write paths).
LIVE: Final = (State.OPEN, State.CONNECTING)  # start_tls(), draining, half-closing
READABLE: Final = (State.OPEN, State.ENDED)
WRITABLE: Final = (State.OPEN, State.ENDED, State.CONNECTING)
