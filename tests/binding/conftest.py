"""The pool binding's tests run on the gated loops (stdlib and uvloop), as the runtime does:
server connections must bypass the gate, and binding connections must go through it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest

from tcpworkers.drivers import gated_loop_factory


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {
        "asyncio": gated_loop_factory(prefer_uvloop=False),
        "uvloop": gated_loop_factory(prefer_uvloop=True),
    }
