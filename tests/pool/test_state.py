"""The pooler's state table (sans-IO)."""

from __future__ import annotations

import pytest

from tcpworkers.errors import PoolStateError
from tcpworkers.pool._state import TRANSITIONS, ClientState, Event, ServerState, next_state

C, S, E = ClientState, ServerState, Event


def test_every_transition_stays_on_its_side() -> None:
    for (state, _event), new in TRANSITIONS.items():
        assert type(state) is type(new)


def test_closed_is_terminal_and_everything_can_close() -> None:
    for state in (*ClientState, *ServerState):
        closed = C.CL_CLOSED if isinstance(state, ClientState) else S.SV_CLOSED
        if state is closed:
            assert not [e for (s, e) in TRANSITIONS if s is state]
        else:
            assert next_state(state, E.CLOSE) is closed


def test_every_state_is_reachable_from_login() -> None:
    for start in (C.CL_LOGIN, S.SV_LOGIN):
        seen = {start}
        frontier = [start]
        while frontier:
            state = frontier.pop()
            for (s, _e), new in TRANSITIONS.items():
                if s is state and new not in seen:
                    seen.add(new)
                    frontier.append(new)
        assert seen == set(type(start))


def test_a_transaction_and_a_pin() -> None:
    client = next_state(C.CL_LOGIN, E.LOGIN_OK)
    server = next_state(S.SV_LOGIN, E.LOGIN_OK)
    client = next_state(client, E.ACQUIRE)
    server = next_state(server, E.ACQUIRE)
    client = next_state(client, E.ASSIGN)
    assert (client, server) == (C.CL_ACTIVE, S.SV_ACTIVE)
    assert next_state(client, E.RELEASE) is C.CL_IDLE
    assert next_state(server, E.RELEASE) is S.SV_IDLE
    server = next_state(server, E.PIN)
    assert next_state(server, E.RELEASE_DIRTY) is S.SV_RESET
    assert next_state(S.SV_RESET, E.RESET_OK) is S.SV_IDLE


@pytest.mark.parametrize(
    ("state", "event"),
    [(S.SV_IDLE, E.PIN), (S.SV_PINNED, E.RELEASE), (S.SV_CLOSED, E.ACQUIRE), (C.CL_IDLE, E.ASSIGN)],
)
def test_forbidden_transitions_are_bugs(state: ClientState | ServerState, event: Event) -> None:
    step = next_state  # one callable for both sides, as the pool uses it
    with pytest.raises(PoolStateError, match=f"cannot take event {event.name}"):
        step(state, event)  # type: ignore[type-var]
