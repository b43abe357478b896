"""Shared test set-up: every async test runs on both the stdlib loop and uvloop, and fails if the
loop reported an error nobody handled (an "exception was never retrieved", a callback that
raised, a task destroyed while pending)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
import uvloop

from tcpworkers.drivers import gated_loop_factory


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    if "tests/drivers/" in item.nodeid or "tests/runtime/" in item.nodeid:
        # Drivers go through the gate only on the gated loops.
        return {
            "asyncio": gated_loop_factory(prefer_uvloop=False),
            "uvloop": gated_loop_factory(prefer_uvloop=True),
        }
    # connect() must work on any asyncio loop: the plain ones.
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(autouse=True)
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Collect what the loop's exception handler receives; the test fails if anything does."""
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    gc.collect()  # unretrieved exceptions are reported when their futures are collected
    await asyncio.sleep(0)
    loop.set_exception_handler(previous)
    assert not seen, f"the event loop reported unhandled errors: {seen}"
