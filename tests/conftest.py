"""Shared test set-up: every async test runs on both the stdlib loop and uvloop, and fails if the
loop reported an error nobody handled (an "exception was never retrieved", a callback that
raised, a task destroyed while pending)."""

from __future__ import annotations

import asyncio
import gc
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest
import uvloop
from hypothesis import settings

from tcpworkers.drivers import gated_loop_factory

# Test tiers (unit / integration / slow): the hooks live in tests/_tiers.py.
from ._tiers import pytest_collection_modifyitems, pytest_runtest_call  # noqa: F401

# Hypothesis: CI runs a fixed number of examples with no per-example deadline (a shared runner's
# pauses are not bugs) and prints the blob that reproduces a failure; `dev` is the default.
settings.register_profile("ci", deadline=None, max_examples=200, print_blob=True)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


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


def pytest_collection_finish(session: pytest.Session) -> None:
    # Everything alive after collection (modules, hypothesis strategies, test items) lives for
    # the whole session: freeze it so the full gc.collect() after each test (loop_errors) scans
    # only what tests create, ~1 ms instead of ~0.3 s.
    gc.collect()
    gc.freeze()


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
