"""The pooler's connection states and the one function that moves a connection between them.

Theory of operation (transaction pooling, after pgbouncer's ``CL_*``/``SV_*`` states): every
connection is on exactly one list, named by its side and that list. A client logs in locally
(``CL_LOGIN``) and then sits ``CL_IDLE`` holding no server connection. The first message of a
transaction makes it ask the pool for one: it is ``CL_WAITING`` until it gets a server, then
``CL_ACTIVE`` while the transaction runs. ReadyForQuery 'I' ends the transaction: the server goes
back (``SV_ACTIVE`` -> ``SV_IDLE``) and the client is ``CL_IDLE`` again. When the client does
something that outlives a transaction (see ``_sql``), both sides become *pinned*
(``CL_PINNED``/``SV_PINNED``) until the client disconnects. A server that comes back pinned or
dirty (a transaction left open, a session change seen) is reset (``SV_RESET``: ROLLBACK,
DISCARD ALL, advisory unlock) before it joins ``SV_IDLE``. A server connection being opened is
``SV_LOGIN``. ``*_CLOSED`` is terminal; a closed server connection is never handed out again.

The transitions are data (:data:`TRANSITIONS`); :func:`next_state` is the only way to compute a
new state, and any pair not in the table is a bug in the pooler (``PoolStateError``). No asyncio.
"""

from __future__ import annotations

import enum
from typing import TypeVar

from tcpworkers.errors import PoolStateError

__all__ = ["TRANSITIONS", "ClientState", "Event", "ServerState", "next_state"]


class ClientState(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; Enum's hash is Python code

    CL_LOGIN = "login"  # startup and password exchange with the pooler itself
    CL_IDLE = "idle"  # logged in, between transactions, holds no server connection
    CL_WAITING = "waiting"  # asked the pool for a server connection, none free yet
    CL_ACTIVE = "active"  # holds a server connection for the current transaction
    CL_PINNED = "pinned"  # holds a server connection until it disconnects
    CL_CLOSED = "closed"


class ServerState(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; Enum's hash is Python code

    SV_LOGIN = "login"  # connecting, TLS, authentication, startup
    SV_IDLE = "idle"  # clean and free: the next client may have it
    SV_ACTIVE = "active"  # lent to a client for one transaction
    SV_PINNED = "pinned"  # lent to a client for the rest of its connection
    SV_RESET = "reset"  # back from a client dirty or pinned; being reset
    SV_CLOSED = "closed"  # discarded: broken, expired, failed reset, pool closed


class Event(enum.Enum):
    __hash__ = object.__hash__  # members are singletons; Enum's hash is Python code

    LOGIN_OK = "login_ok"
    ACQUIRE = "acquire"  # client: asks for a server; server: lent out
    ASSIGN = "assign"  # client: got its server
    TIMEOUT = "timeout"  # client: acquire_timeout passed
    PIN = "pin"
    RELEASE = "release"  # transaction over, connection clean
    RELEASE_DIRTY = "release_dirty"  # server: needs a reset before reuse
    RESET_OK = "reset_ok"
    CLOSE = "close"


State = ClientState | ServerState
S = TypeVar("S", ClientState, ServerState)

_C = ClientState
_S = ServerState
_E = Event

TRANSITIONS: dict[tuple[State, Event], State] = {
    (_C.CL_LOGIN, _E.LOGIN_OK): _C.CL_IDLE,
    (_C.CL_IDLE, _E.ACQUIRE): _C.CL_WAITING,
    (_C.CL_WAITING, _E.ASSIGN): _C.CL_ACTIVE,
    (_C.CL_WAITING, _E.TIMEOUT): _C.CL_IDLE,
    (_C.CL_ACTIVE, _E.RELEASE): _C.CL_IDLE,
    (_C.CL_ACTIVE, _E.PIN): _C.CL_PINNED,
    (_C.CL_PINNED, _E.PIN): _C.CL_PINNED,  # another reason to stay pinned
    (_S.SV_LOGIN, _E.LOGIN_OK): _S.SV_IDLE,
    (_S.SV_IDLE, _E.ACQUIRE): _S.SV_ACTIVE,
    (_S.SV_ACTIVE, _E.RELEASE): _S.SV_IDLE,
    (_S.SV_ACTIVE, _E.RELEASE_DIRTY): _S.SV_RESET,
    (_S.SV_ACTIVE, _E.PIN): _S.SV_PINNED,
    (_S.SV_PINNED, _E.PIN): _S.SV_PINNED,
    (_S.SV_PINNED, _E.RELEASE_DIRTY): _S.SV_RESET,
    (_S.SV_RESET, _E.RESET_OK): _S.SV_IDLE,
}
# Any connection that is not closed yet can be closed (peer gone, broken, expired, shut down).
for _state in (*ClientState, *ServerState):
    if _state not in (_C.CL_CLOSED, _S.SV_CLOSED):
        TRANSITIONS[(_state, _E.CLOSE)] = _C.CL_CLOSED if isinstance(_state, _C) else _S.SV_CLOSED


def next_state(state: S, event: Event) -> S:
    """The state ``event`` moves a connection in ``state`` to; raises PoolStateError when the
    table has no such transition."""
    new = TRANSITIONS.get((state, event))
    if new is None:
        side = "client" if isinstance(state, ClientState) else "server"
        raise PoolStateError(
            f"pooler bug: a {side} connection in {state.name} cannot take event {event.name}"
        )
    assert type(new) is type(state)
    return new
