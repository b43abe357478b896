"""The relay at the message level: a raw protocol client (built on _wire) checks exactly what
comes back for Close, Describe, unnamed statements and pipelined batches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from tcpworkers.pool import _messages as m
from tcpworkers.pool._pool import PoolSettings
from tcpworkers.pool._wire import BackendParser

from .conftest import DATABASE, PASSWORD, USER, Binding, direct_dsn, eventually, serve_binding


class RawClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.parser = BackendParser()

    @classmethod
    async def connect(cls, binding: Binding) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", binding.port)
        client = cls(reader, writer)
        writer.write(m.StartupMessage((("user", USER), ("database", DATABASE))).encode())
        assert await client.next() == m.Authentication(m.AUTH_CLEARTEXT)
        writer.write(m.PasswordMessage(PASSWORD.encode() + b"\0").encode())
        await client.until_ready()
        return client

    async def next(self) -> m.Message:
        while (message := self.parser.next_message()) is None:
            data = await self.reader.read(65536)
            assert data, "the pooler closed the connection"
            self.parser.feed(data)
        return message

    async def until_ready(self) -> list[m.Message]:
        out = []
        while not isinstance(message := await self.next(), m.ReadyForQuery):
            out.append(message)
        return [*out, message]

    async def send(self, *messages: m.Message) -> list[str]:
        """Send messages; return the type names of everything up to ReadyForQuery."""
        self.writer.write(b"".join(x.encode() for x in messages))
        return [type(x).__name__ for x in await self.until_ready()]

    async def close(self) -> None:
        self.writer.write(m.Terminate().encode())
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def single() -> AsyncIterator[Binding]:
    async with serve_binding(PoolSettings(min_size=1, max_size=1, acquire_timeout=5)) as b:
        yield b


async def test_named_statement_lifecycle(single: Binding) -> None:
    c = await RawClient.connect(single)
    try:
        parse = m.Parse("s1", "select $1::int + 1", (23,))
        assert await c.send(parse, m.Sync()) == ["ParseComplete", "ReadyForQuery"]
        assert await c.send(m.Describe("S", "s1"), m.Sync()) == [
            "ParameterDescription",
            "RowDescription",
            "ReadyForQuery",
        ]
        bind = m.Bind("", "s1", (0,), (b"41",), (0,))
        assert await c.send(bind, m.Execute(), m.Sync()) == [
            "BindComplete",
            "DataRow",
            "CommandComplete",
            "ReadyForQuery",
        ]
        assert await c.send(m.Close("S", "s1"), m.Sync()) == ["CloseComplete", "ReadyForQuery"]
        names = await c.send(bind, m.Execute(), m.Sync())  # closed: the server says it is gone
        assert names == ["ErrorResponse", "ReadyForQuery"]
        # Parse again: the server still has the text, so it is answered here.
        saved = single.pool.stats().parse_saved
        assert await c.send(parse, m.Sync()) == ["ParseComplete", "ReadyForQuery"]
        assert single.pool.stats().parse_saved == saved + 1
    finally:
        await c.close()


async def test_unnamed_statement_survives_a_server_side_loss(single: Binding) -> None:
    c = await RawClient.connect(single)
    try:
        assert await c.send(m.Parse("", "select 42"), m.Sync()) == [
            "ParseComplete",
            "ReadyForQuery",
        ]
        other = await RawClient.connect(single)
        try:  # another client's simple query destroys the server's unnamed statement
            assert "CommandComplete" in await other.send(m.Query("select 1"))
        finally:
            await other.close()
        assert await c.send(m.Bind("", ""), m.Execute(), m.Sync()) == [
            "BindComplete",
            "DataRow",
            "CommandComplete",
            "ReadyForQuery",
        ]
    finally:
        await c.close()


async def test_error_in_a_pipeline_skips_to_sync(single: Binding) -> None:
    c = await RawClient.connect(single)
    try:
        names = await c.send(
            m.Parse("bad", "select 1 / (count(*) * $1::int) from pg_class"),
            m.Bind("", "bad", (0,), (b"0",), ()),
            m.Execute(),
            m.Parse("later", "select 2"),  # skipped by the server after the error
            m.Bind("", "later"),
            m.Execute(),
            m.Sync(),
        )
        assert names == ["ParseComplete", "BindComplete", "ErrorResponse", "ReadyForQuery"]
        assert await c.send(
            m.Parse("later", "select 2"), m.Bind("", "later"), m.Execute(), m.Sync()
        ) == [
            "ParseComplete",
            "BindComplete",
            "DataRow",
            "CommandComplete",
            "ReadyForQuery",
        ]
        # Two syncs in one write (pipelining across transactions) on one server connection.
        q = m.Query("select 1")
        assert await c.send(q, q) == [
            "RowDescription",
            "DataRow",
            "CommandComplete",
            "ReadyForQuery",
        ]
        assert [type(x).__name__ for x in await c.until_ready()] == [
            "RowDescription",
            "DataRow",
            "CommandComplete",
            "ReadyForQuery",
        ]
    finally:
        await c.close()


async def test_ssl_request_is_refused_with_n_and_protocol_errors_are_fatal(single: Binding) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", single.port)
    try:
        writer.write(m.SSLRequest().encode())
        assert await reader.readexactly(1) == b"N"
        writer.write(b"\0\0\0\x08\0\x09\0\0")  # protocol 9.0
        parser = BackendParser()
        parser.feed(await reader.read(65536))
        error = parser.next_message()
        assert isinstance(error, m.ErrorResponse)
        assert error.sqlstate == "08P01"
        assert "unsupported frontend protocol 9.0" in error.message
        assert await reader.read() == b""
    finally:
        writer.close()


@pytest.mark.parametrize(
    ("garbage", "why"),
    [
        (b"Z\0\0\0\4", "unknown frontend message type 'Z'"),
        (b"B\0\0\0\6ab", "missing portal or statement name"),
        (b"Q\0\0\0\6ab", "no terminating NUL"),
        (b"p\0\0\0\5x", "unexpected 'p' message"),
    ],
)
async def test_garbage_after_login_is_fatal_and_leaks_nothing(
    single: Binding, garbage: bytes, why: str
) -> None:
    c = await RawClient.connect(single)
    try:
        c.writer.write(garbage)
        error = await c.next()
        assert isinstance(error, m.ErrorResponse)
        assert (error.sqlstate, error.get("S")) == ("08P01", "FATAL")
        assert why in error.message
        assert await c.reader.read() == b""
    finally:
        c.writer.close()
    await eventually(lambda: single.pool.stats().idle == 1)
    assert single.pool.stats().closed == {}


async def test_terminate_inside_a_transaction_rolls_back(single: Binding) -> None:
    c = await RawClient.connect(single)
    await c.send(m.Query("BEGIN"))
    await c.send(m.Query("SET LOCAL statement_timeout = 1234"))
    await c.close()  # Terminate while the transaction is open
    await eventually(lambda: single.pool.stats().idle == 1)
    other = await RawClient.connect(single)
    try:
        other.writer.write(m.Query("show statement_timeout").encode())
        answers = await other.until_ready()
        rows = [x for x in answers if isinstance(x, m.DataRow)]
        assert rows == [m.DataRow((b"0",))]
        assert answers[-1] == m.ReadyForQuery("I")
    finally:
        await other.close()
    assert single.pool.stats().resets == 1


async def test_a_newer_protocol_minor_is_negotiated_down_to_3_0(single: Binding) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", single.port)
    c = RawClient(reader, writer)
    try:
        hello = m.StartupMessage(
            (("user", USER), ("database", DATABASE), ("_pq_.future_option", "on")),
            protocol=(3 << 16) | 2,
        )
        writer.write(hello.encode())
        assert await c.next() == m.NegotiateProtocolVersion(0, ("_pq_.future_option",))
        assert await c.next() == m.Authentication(m.AUTH_CLEARTEXT)
        writer.write(m.PasswordMessage(PASSWORD.encode() + b"\0").encode())
        await c.until_ready()
        assert "DataRow" in await c.send(m.Query("select 1"))
    finally:
        await c.close()


async def test_an_injected_parse_skipped_after_an_error_is_injected_again(single: Binding) -> None:
    c = await RawClient.connect(single)
    other = await RawClient.connect(single)
    try:
        assert await c.send(m.Parse("s", "select 7"), m.Sync()) == [
            "ParseComplete",
            "ReadyForQuery",
        ]
        # Another client's DISCARD ALL drops every statement on the (only) server connection.
        assert "CommandComplete" in await other.send(m.Query("DISCARD ALL"))
        names = await c.send(
            m.Bind("", "no_such_statement"),  # fails: the server skips to Sync...
            m.Bind("", "s"),  # ...including the Parse the pooler puts before this Bind
            m.Execute(),
            m.Sync(),
        )
        assert names == ["ErrorResponse", "ReadyForQuery"]
        names = await c.send(m.Bind("", "s"), m.Execute(), m.Sync())
        assert names == ["BindComplete", "DataRow", "CommandComplete", "ReadyForQuery"]
    finally:
        await c.close()
        await other.close()


async def test_a_terminated_server_gives_the_client_one_fatal(single: Binding) -> None:
    c = await RawClient.connect(single)
    try:
        await c.send(m.Query("BEGIN"))
        c.writer.write(m.Query("select pg_backend_pid()").encode())
        rows = [x for x in await c.until_ready() if isinstance(x, m.DataRow)]
        pid = int(rows[0].values[0] or b"0")
        direct = await asyncpg.connect(direct_dsn())
        try:
            assert await direct.fetchval("select pg_terminate_backend($1)", pid)
        finally:
            await direct.close()
        error = await c.next()
        assert isinstance(error, m.ErrorResponse)
        assert (error.get("S"), error.sqlstate) == ("FATAL", "57P01")
        c.parser.feed(await c.reader.read())  # then the end of the stream, nothing else
        assert c.parser.next_message() is None
    finally:
        c.writer.close()
