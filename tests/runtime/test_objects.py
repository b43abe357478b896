"""Request, Response, Env and ExecutionContext on their own (no server)."""

from __future__ import annotations

import asyncio
import http
import json
import logging
from collections.abc import AsyncIterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpworkers import Request, Response, connect
from tcpworkers.runtime import (
    DEFAULT_MAX_BODY_SIZE,
    BodyTooLargeError,
    BodyUsedError,
    Env,
    ExecutionContext,
)
from tcpworkers.scope import RequestScope, current_scope
from tcpworkers.testing import EchoServer

# Test tier: in memory (no server); see tests/_tiers.py.
pytestmark = pytest.mark.unit


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


# -- Request ---------------------------------------------------------------------------------


def test_request_fields() -> None:
    r = Request("https://example.com/a%20b/c?x=1&y=2&x=3&empty=", method="post")
    assert r.method == "POST"
    assert r.url == "https://example.com/a%20b/c?x=1&y=2&x=3&empty="
    assert r.path == "/a b/c"
    assert r.query == {"x": "1", "y": "2", "empty": ""}
    assert r.query_all("x") == ["1", "3"]
    assert repr(r) == "<Request POST https://example.com/a%20b/c?x=1&y=2&x=3&empty=>"


@pytest.mark.parametrize("url", ["/relative", "ftp://example.com/", "http://", "example.com"])
def test_request_needs_an_absolute_http_url(url: str) -> None:
    with pytest.raises(ValueError, match="absolute"):
        Request(url)


def test_request_method_checks() -> None:
    assert Request("http://h/", method="PROPFIND").method == "PROPFIND"
    assert Request("http://h/", method="Custom").method == "Custom"  # only known ones upcased
    with pytest.raises(ValueError, match="token"):
        Request("http://h/", method="GE T")
    with pytest.raises(ValueError, match="cannot have a body"):
        Request("http://h/", method="GET", body=b"x")


async def test_request_body_text_json_and_charset() -> None:
    assert await Request("http://h/", method="POST", body=b"abc").bytes() == b"abc"
    latin = Request(
        "http://h/",
        method="POST",
        body="é".encode("latin-1"),
        headers={"content-type": "text/plain; charset=ISO-8859-1"},
    )
    assert await latin.text() == "é"
    bad_charset = Request(
        "http://h/", method="POST", body="é".encode(), headers={"content-type": "a/b;charset=nope"}
    )
    assert await bad_charset.text() == "é"  # unknown charset: UTF-8
    garbage = Request("http://h/", method="POST", body=b"\xff")
    assert await garbage.text() == "\ufffd"  # replaced, as fetch() does
    data = Request("http://h/", method="POST", body=json.dumps({"a": [1]}))
    assert data.headers["content-type"] == "text/plain;charset=utf-8"
    assert await data.json() == {"a": [1]}


async def test_body_can_be_consumed_once() -> None:
    r = Request("http://h/", method="POST", body=chunks(b"a", b"b"))
    assert not r.body_used
    assert [c async for c in r] == [b"a", b"b"]
    assert r.body_used
    with pytest.raises(BodyUsedError, match="already read"):
        await r.bytes()
    with pytest.raises(BodyUsedError):
        aiter(r)
    r2 = Request("http://h/", method="POST", body=b"x")
    await r2.text()
    with pytest.raises(BodyUsedError):
        await r2.json()


async def test_a_served_requests_body_can_be_consumed_once() -> None:
    # The runtime's requests make their body on first use: the same rules apply.
    scope = {"method": "POST", "path": "/", "headers": [(b"host", b"h")], "query_string": b""}
    r = Request._from_asgi(scope, chunks(b"a", b"b"))
    assert not r.body_used
    assert await r.bytes() == b"ab"
    assert r.body_used
    with pytest.raises(BodyUsedError, match="already read"):
        aiter(r)
    streamed = Request._from_asgi(scope, chunks(b"c"))
    assert [c async for c in streamed] == [b"c"]
    assert streamed.body_used
    with pytest.raises(BodyUsedError):
        await streamed.text()


async def test_body_size_limit() -> None:
    big = Request("http://h/", method="POST", body=chunks(b"x" * 600, b"x" * 600))
    with pytest.raises(BodyTooLargeError, match="max_size=1000") as info:
        await big.bytes(max_size=1000)
    assert info.value.status == 413
    assert info.value.max_size == 1000
    announced = Request("http://h/", method="POST", body=b"", headers={"content-length": "2000"})
    with pytest.raises(BodyTooLargeError, match="Content-Length"):
        await announced.bytes(max_size=1000)
    assert not announced.body_used  # refused before reading anything
    assert DEFAULT_MAX_BODY_SIZE == 16 * 1024 * 1024
    with pytest.raises(ValueError, match="max_size"):
        await Request("http://h/", method="POST", body=b"").bytes(max_size=-1)


async def test_stream_chunks_must_be_bytes() -> None:
    r = Request("http://h/", method="POST", body=chunks(b"ok", "text"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="yielded str"):
        await r.bytes()


# -- Response --------------------------------------------------------------------------------


async def test_response_bodies() -> None:
    assert await Response().bytes() == b""
    assert await Response(b"ab").bytes() == b"ab"
    assert await Response(bytearray(b"ab")).bytes() == b"ab"
    assert await Response(memoryview(b"ab")).bytes() == b"ab"
    text = Response("héllo")
    assert text.headers["content-type"] == "text/plain; charset=utf-8"
    assert await text.bytes() == "héllo".encode()
    assert await Response("x", headers={"Content-Type": "text/html"}).text() == "x"
    streamed = Response(chunks(b"a", bytearray(b"b"), b""))
    assert repr(streamed) == "<Response 200 stream>"
    assert await streamed.bytes() == b"ab"


def test_bytearray_body_is_copied() -> None:
    data = bytearray(b"ab")
    response = Response(data)
    data[0] = ord("z")
    assert response._body.data == b"ab"


@pytest.mark.parametrize(
    ("body", "hint"),
    [
        ({"a": 1}, "Response.json"),
        ([b"a"], "async generator"),
        (42, "Response.json"),
        (object(), ""),
    ],
)
def test_response_refuses_other_bodies(body: object, hint: str) -> None:
    with pytest.raises(TypeError, match=f"must be None, bytes.*{hint}"):
        Response(body)  # type: ignore[arg-type]


def test_status_validation() -> None:
    assert Response(status=404).status == 404
    assert Response(status=http.HTTPStatus.CREATED).status == 201
    with pytest.raises(TypeError, match="int"):
        Response(status="200")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="int"):
        Response(status=True)
    with pytest.raises(ValueError, match="interim"):
        Response(status=101)
    with pytest.raises(ValueError, match="between 200 and 599"):
        Response(status=600)
    with pytest.raises(ValueError, match="cannot have a body"):
        Response("x", status=204)
    assert Response(status=204).status == 204
    assert Response(status=299).ok
    assert not Response(status=300).ok


@given(st.integers(min_value=-1000, max_value=2000))
def test_property_any_int_status_is_accepted_iff_200_to_599(status: int) -> None:
    if 200 <= status <= 599:
        assert Response(status=status).status == status
    else:
        with pytest.raises(ValueError, match="between 200 and 599"):
            Response(status=status)


async def test_response_json_constructs_and_reads() -> None:
    r = Response.json({"a": "é", "n": [1, 2]}, status=201, headers={"x": "y"})
    assert r.status == 201
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x"] == "y"
    assert await r.json() == {"a": "é", "n": [1, 2]}
    custom = Response.json([], headers={"content-type": "application/vnd.x+json"})
    assert custom.headers["content-type"] == "application/vnd.x+json"
    with pytest.raises(ValueError, match="NaN"):
        Response.json(float("nan"))
    with pytest.raises(TypeError):
        Response.json(object())


def test_redirect() -> None:
    r = Response.redirect("https://example.com/x")
    assert (r.status, r.headers["location"]) == (302, "https://example.com/x")
    assert Response.redirect("/y", 308).status == 308
    with pytest.raises(ValueError, match="301, 302, 303, 307, 308"):
        Response.redirect("/y", 200)
    with pytest.raises(ValueError, match="non-empty"):
        Response.redirect("")
    with pytest.raises(ValueError, match="control character"):
        Response.redirect("/y\r\nSet-Cookie: evil=1")


# -- Env -------------------------------------------------------------------------------------


class Pool:
    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def test_env_access_and_errors() -> None:
    pool = Pool()
    env = Env({"NAME": "shop", "RETRIES": 3}, {"API_KEY": "s3cret"}, {"DB": pool})
    assert env.NAME == env["NAME"] == "shop"
    assert env.RETRIES == 3
    assert env.API_KEY == "s3cret"
    assert env.DB is pool
    assert "DB" in env
    assert "NOPE" not in env
    assert list(env) == ["NAME", "RETRIES", "API_KEY", "DB"]
    assert len(env) == 4
    assert env.get("NOPE", 1) == 1
    assert getattr(env, "NOPE", None) is None
    with pytest.raises(AttributeError) as info:
        env.NOPE  # noqa: B018
    message = str(info.value)
    assert "NOPE" in message
    assert "NAME" in message
    assert "API_KEY" in message
    assert "DB" in message
    assert "s3cret" not in message
    with pytest.raises(KeyError, match="NOPE"):
        env["NOPE"]
    with pytest.raises(AttributeError, match="read-only"):
        env.NAME = "x"  # type: ignore[misc]
    assert "NAME" in dir(env)


def test_env_repr_hides_secret_values() -> None:
    env = Env({"NAME": "shop"}, {"API_KEY": "s3cret"}, {"DB": Pool()})
    text = repr(env)
    assert "s3cret" not in text
    assert "NAME='shop'" in text
    assert "API_KEY=[secret]" in text
    assert "DB=<Pool>" in text


def test_env_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="'X' is in both vars and secrets"):
        Env({"X": 1}, {"X": "2"})


def test_env_dunder_probes_do_not_look_up_names() -> None:
    import copy

    env = Env({"NAME": "x"})
    assert copy.copy(env) is env
    assert copy.deepcopy(env) is env
    with pytest.raises(AttributeError):
        env.__wrapped__  # noqa: B018


# -- ExecutionContext ------------------------------------------------------------------------


async def test_wait_until_runs_in_the_scope_and_logs_failures(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scope = RequestScope(label="GET /x")
    ctx = ExecutionContext(scope, label="GET /x")
    seen: list[object] = []

    async def record() -> None:
        seen.append(current_scope())

    async def fail() -> None:
        raise ZeroDivisionError("late failure")

    ctx.wait_until(record())
    ctx.waitUntil(fail())  # Cloudflare's spelling
    assert ctx.pending == 2
    assert await ctx._drain(None)
    assert seen == [scope]
    failures = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(failures) == 1
    assert "GET /x: a ctx.wait_until() task failed" in failures[0].getMessage()
    assert failures[0].exc_info is not None
    coro = record()
    with pytest.raises(RuntimeError, match="after GET /x ended"):
        ctx.wait_until(coro)  # closed, so no "never awaited" warning


async def test_wait_until_checks_its_argument() -> None:
    async def work() -> None:
        pass

    with pytest.raises(TypeError, match=r"wait_until\(work\(\)\)"):
        ExecutionContext().wait_until(work)  # type: ignore[arg-type]


async def test_drain_waits_for_tasks_started_by_tasks_and_cancels_at_the_limit() -> None:
    ctx = ExecutionContext()
    order: list[str] = []

    async def child() -> None:
        await asyncio.sleep(0.01)
        order.append("child")

    async def parent() -> None:
        ctx.wait_until(child())
        order.append("parent")

    ctx.wait_until(parent())
    assert await ctx._drain(5)
    assert order == ["parent", "child"]

    slow = ExecutionContext()
    cancelled = asyncio.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    slow.wait_until(forever())
    assert not await slow._drain(0.05)
    assert cancelled.is_set()
    assert slow.pending == 0


@pytest.mark.integration  # a loopback echo server
async def test_wait_until_sockets_belong_to_the_request() -> None:
    async with EchoServer() as echo:
        scope = RequestScope(label="GET /x")
        ctx = ExecutionContext(scope)

        async def open_one() -> None:
            sock = connect(echo.address)
            await sock.opened

        ctx.wait_until(open_one())
        await ctx._drain(None)
        assert scope.stats.sockets_opened == 1
        await scope.aclose()
        assert scope.stats.closed_at_end == 1
