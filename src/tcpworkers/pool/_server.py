"""One server connection as the pool holds it, and what the pooler knows about it."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, final

from . import _messages as m
from ._state import ServerState
from ._wire import BackendParser

__all__ = [
    "PooledServer",
    "ServerLink",
    "ServerStatement",
    "StatementKey",
    "looks_dead",
    "run_queries",
]

StatementKey = tuple[str, tuple[int, ...]]  # (query text, parameter type OIDs)


@dataclass(slots=True)
class ServerStatement:
    """A statement the pooler prepared on one server connection, under its own name."""

    name: str
    key: StatementKey
    ready: bool = False  # ParseComplete seen; until then a Parse for it is in flight
    # The server's answer to a Describe of it (ParameterDescription + RowDescription/NoData).
    description: bytes | None = None


class ServerLink(Protocol):
    """What the pool needs of a server connection (``_upstream.ServerConnection`` is one)."""

    @property
    def reader(self) -> asyncio.StreamReader: ...
    @property
    def writer(self) -> asyncio.StreamWriter: ...
    @property
    def parameters(self) -> Mapping[str, str]: ...
    @property
    def backend_pid(self) -> int: ...
    @property
    def backend_secret(self) -> int: ...
    async def close(self) -> None: ...


@final
class PooledServer:
    """The pool's holder for one server connection and what the pooler knows about it."""

    def __init__(self, link: ServerLink, created: float, number: int) -> None:
        self.link = link
        self.state = ServerState.SV_LOGIN
        self.created = created
        self.idle_since = created
        self.number = number
        self.parser = BackendParser()
        self.baseline = dict(link.parameters)
        self.parameters = dict(link.parameters)
        self.statements: dict[StatementKey, ServerStatement] = {}
        self.unnamed: StatementKey | None = None  # what the unnamed statement holds, if known
        self._next_statement = 0

    def statement_name(self) -> str:
        self._next_statement += 1
        return f"_tw_{self._next_statement}"

    def forget_statements(self) -> None:
        self.statements.clear()
        self.unnamed = None

    def __repr__(self) -> str:
        return f"<PooledServer #{self.number} pid={self.link.backend_pid} {self.state.name}>"


def looks_dead(server: PooledServer) -> bool:
    """Bytes or EOF arrived while nobody was talking to it: PostgreSQL sends FATAL then closes
    (admin shutdown, pg_terminate_backend, idle_session_timeout). Reads StreamReader's buffer."""
    reader, writer = server.link.reader, server.link.writer
    if writer.is_closing() or reader.at_eof() or server.parser.buffered:
        return True
    return bool(getattr(reader, "_buffer", b""))


async def run_queries(server: PooledServer, queries: list[str]) -> None:
    """Send simple queries pipelined and read up to their ReadyForQuery; raise on an error."""
    link = server.link
    link.writer.write(b"".join(m.Query(q).encode() for q in queries))
    await link.writer.drain()
    remaining = len(queries)
    parser = server.parser
    while remaining:
        data = await link.reader.read(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        parser.feed(data)
        for message in parser.messages():
            if isinstance(message, m.ReadyForQuery):
                remaining -= 1
            elif isinstance(message, m.ParameterStatus):
                server.parameters[message.name] = message.value
            elif type(message) is m.ErrorResponse:
                raise RuntimeError(f"{message.sqlstate} {message.message}")
