"""Objects the hot paths build without calling their class's ``__init__`` are complete.

To save a Python frame per request or per connection, a few objects are made with
``object.__new__`` and have their slots filled by the one function that makes them (the
comments there say "keep the two in step"). If a slot is added to the class and not to that
function, the object would raise ``AttributeError`` far from the cause; these tests fail first,
and check that the values are the ones the ordinary constructor gives.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tcpworkers import Response
from tcpworkers.drivers._tracked import TrackedConnection, track
from tcpworkers.http._body import Body
from tcpworkers.http._headers import Headers
from tcpworkers.runtime import ExecutionContext, RuntimeSettings
from tcpworkers.runtime._exchange import Exchange
from tcpworkers.scope import RequestScope


def _slots(obj: object) -> dict[str, Any]:
    """Every slot of ``obj``'s classes, with its value; a slot never set is an error."""
    values: dict[str, Any] = {}
    for cls in type(obj).__mro__:
        for name in getattr(cls, "__slots__", ()):
            assert hasattr(obj, name), f"{type(obj).__name__}.{name} was never set"
            values[name] = getattr(obj, name)
    return values


def test_a_text_response_has_complete_headers_and_body() -> None:
    fast = Response("hello")
    assert _slots(fast._body) == _slots(Body(b"hello", None, "response"))
    slow_headers = Headers({"content-type": "text/plain; charset=utf-8"})
    assert _slots(fast.headers) == _slots(slow_headers)
    assert fast.headers["content-type"] == "text/plain; charset=utf-8"


async def _send_nothing(message: Any) -> None:
    pass


async def test_a_request_context_is_complete() -> None:
    settings = RuntimeSettings()
    task = asyncio.current_task()
    assert task is not None
    scope = {"method": "GET", "path": "/", "headers": []}
    exchange = Exchange(scope, _send_nothing, None, settings.policy, settings.limits, task, 0.0)
    expected = ExecutionContext(exchange.request_scope, exchange.label)
    assert _slots(exchange.ctx) == _slots(expected)


def test_a_tracked_connection_is_complete() -> None:
    scope = RequestScope()
    conn = track(scope, ("127.0.0.1", 5432))
    values = _slots(conn)
    assert values["scope"] is scope
    assert (values["bytes_in"], values["bytes_out"], values["transport"]) == (0, 0, None)
    assert conn.description == "connection to 127.0.0.1:5432 (driver)"
    assert isinstance(conn, TrackedConnection)


def test_a_protocol_proxy_is_complete() -> None:
    conn = track(RequestScope(), "connection to a test (driver)")
    plain = conn.make_protocol(asyncio.Protocol)
    buffered = conn.make_protocol(asyncio.BufferedProtocol)
    for proxy in (plain, buffered):
        values = _slots(proxy)
        assert values["_conn"] is conn
        assert type(values["_app"]) in (asyncio.Protocol, asyncio.BufferedProtocol)
