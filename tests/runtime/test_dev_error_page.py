"""The dev 500 page of a real request: the user's frames first with the runtime's folded, the
request (credentials hidden), and the table of the sockets the request opened."""

from __future__ import annotations

import re

from tcpworkers import Env, ExecutionContext, Request, Response, connect
from tcpworkers.runtime import RuntimeSettings
from tcpworkers.testing import EchoServer, serve_worker


async def talk_then_fail(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    closed = connect(("127.0.0.1", int(env.ECHO_PORT)))
    await closed.writable.write(b"hello")
    await closed.readable.readexactly(5)
    await closed.close()
    still_open = connect(("127.0.0.1", int(env.ECHO_PORT)))
    await still_open.opened
    raise ValueError(f"gave up on {request.query.get('what', '?')}")


async def test_the_page_shows_the_request_and_its_sockets() -> None:
    async with EchoServer() as echo:
        settings = RuntimeSettings(vars={"ECHO_PORT": echo.port})
        async with serve_worker(talk_then_fail, settings) as server:
            text = await server.client.get(
                "/orders?what=x", headers={"authorization": "Bearer t0ken", "x-id": "7"}
            )
            page = await server.client.get("/orders?what=x", headers={"accept": "text/html"})
    assert text.status_code == 500
    body = text.text
    assert body.startswith("500 Internal Server Error in GET /orders\n")
    # The user's frame is shown with its line; the runtime's are one folded line.
    assert re.search(r'File ".*test_dev_error_page\.py", line \d+, in talk_then_fail', body)
    assert 'raise ValueError(f"gave up on' in body
    assert "ValueError: gave up on x" in body
    assert re.search(r"\d+ runtime frames? folded below", body)
    assert "tcpworkers/runtime/_serve_fetch.py" in body  # named once, in the folded line
    assert '_serve_fetch.py", line' not in body
    # The request, credentials hidden.
    assert f"GET {server.url}/orders?what=x" in body
    assert "authorization: [hidden]" in body
    assert "t0ken" not in body
    assert "x-id: 7" in body
    # Its sockets: the closed one with its traffic, and the one still open.
    where = f"127.0.0.1:{echo.port}"
    assert f"socket to {where} (tcp, closed)  out=5B in=5B" in body
    assert f"socket to {where} (tcp, open)  out=0B in=0B" in body
    assert "opened 2, denied by the egress policy 0" in body
    # A browser gets the same as HTML.
    assert page.headers["content-type"].startswith("text/html")
    assert "<h2>Sockets of this request</h2>" in page.text
    assert f"socket to {where} (tcp, closed)" in page.text
