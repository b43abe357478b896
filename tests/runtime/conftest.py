"""Runtime tests' isolation: building an application in-process (``create_app``, ``build_app``)
does what a server process does at start-up, making the configured egress policy the
process-wide default and every new event loop a gated one (issue 8 item 4). Undo both after
each test so one test's ``serve`` policy never governs the next test's connections."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tcpworkers.egress import default_policy, set_default_policy


@pytest.fixture(autouse=True)
def process_wide_state() -> Iterator[None]:
    policy = default_policy()
    loop_policy = asyncio.get_event_loop_policy()
    yield
    set_default_policy(policy)
    asyncio.set_event_loop_policy(loop_policy)
