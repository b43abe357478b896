"""One relayed client connection: its statements, its pending answers, its server task.

The theory of operation is in ``_relay``, whose :func:`~tcpworkers.pool._relay.serve_client`
logs the client in and then runs :meth:`RelayClient.run` until the client goes.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Final, final

from tcpworkers.errors import PgProtocolError, PoolTimeoutError

from . import _messages as m
from . import _pending as q
from ._login import fatal
from ._pool import Pool
from ._server import PooledServer, ServerStatement, StatementKey
from ._sql import analyze, changed_parameters
from ._state import ClientState, Event, next_state
from ._streams import ClientReader, ClientWriter
from ._wire import (
    Frame,
    FrontendParser,
    bind_statement,
    decode_backend,
    decode_frontend,
    error_response,
)

__all__ = ["RelayClient"]

log = logging.getLogger("tcpworkers.pool")

_READ: Final = 65536
_PARSE_COMPLETE: Final = m.ParseComplete().encode()
_CLOSE_COMPLETE: Final = m.CloseComplete().encode()
_READY_IDLE: Final = m.ReadyForQuery("I").encode()


@final
class RelayClient:
    """One client connection's relay state (see the module docstring)."""

    def __init__(self, reader: ClientReader, writer: ClientWriter, pool: Pool):
        self.reader = reader
        self.writer = writer
        self.pool = pool
        self.state = ClientState.CL_LOGIN
        self.server: PooledServer | None = None
        self.task: asyncio.Task[None] | None = None
        self.pending: deque[q.Entry] = deque()
        self.statements: dict[str, StatementKey] = {}
        self.unnamed: StatementKey | None = None
        self.txn_status = "I"
        self.skipping = False  # after a local error: drop messages up to Sync
        self.boundary = True  # the last thing the server said ended a transaction (RFQ 'I')
        self.gone = False
        self.said_fatal = False  # the server sent FATAL: it is closing this session
        self.keep = pool.settings.prepared_statements  # False: unnamed statements only

    def move(self, event: Event) -> None:
        self.state = next_state(self.state, event)

    # -- client -> server ------------------------------------------------------------------------

    async def run(self, parser: FrontendParser) -> None:
        while True:
            batch: list[bytes] = []  # for self.server, written once per chunk (or before an await)
            for frame in parser.frames():
                kind = frame.type
                if self.gone:  # the server task hung up on this client
                    return
                if kind == 88:  # Terminate
                    self.send(batch)
                    return
                if self.skipping:
                    if kind == 83:  # Sync
                        self.skipping = False
                        self.writer.write(_READY_IDLE)
                    continue
                server = self.server
                if server is None:
                    if kind == 72:  # Flush outside a transaction: nothing to flush
                        continue
                    server = await self.bind(frame.type)
                    if server is None:
                        continue
                out = self.route(server, frame)
                if out:
                    batch.append(out)
            self.send(batch)
            pending = self.pending
            if pending and all(entry[1] == q.SYNTHETIC for entry in pending):
                self.writer.write(b"".join(self.leading_synthetic()))  # no server answer to await
            if self.server is not None:
                await self.server.link.writer.drain()
            data = await self.reader.read(_READ)
            if not data or self.gone:  # gone: the server task hung up on this client
                return
            parser.feed(data)

    def send(self, batch: list[bytes]) -> None:
        if batch and self.server is not None:
            self.server.link.writer.write(b"".join(batch))
        batch.clear()

    def leading_synthetic(self) -> list[bytes]:
        """Answers made here that no outstanding server answer precedes: due now, in order."""
        out: list[bytes] = []
        pending = self.pending
        while pending and pending[0][1] == q.SYNTHETIC:
            data = pending.popleft()[2]
            if isinstance(data, q.Closed):
                out.append(_CLOSE_COMPLETE)
            elif isinstance(data, q.Parsed):
                out.append(_PARSE_COMPLETE)
            else:
                assert isinstance(data, bytes)
                out.append(data)
        return out

    async def bind(self, kind: int) -> PooledServer | None:
        """Acquire a server connection for a new transaction; on failure answer the client as a
        server would (ErrorResponse; then ReadyForQuery now or at the next Sync)."""
        self.move(Event.ACQUIRE)
        try:
            server = await self.pool.acquire()
        except Exception as exc:
            self.move(Event.TIMEOUT)
            if isinstance(exc, PoolTimeoutError):
                sqlstate, message = "53300", str(exc)
            else:
                sqlstate = getattr(exc, "sqlstate", "") or "08006"
                message = f"pool binding {self.pool.name!r} has no server connection: {exc}"
                log.warning("pool %s: %s", self.pool.name, exc)
            self.writer.write(error_response(sqlstate, message))
            if kind in (81, 83, 70):  # Query, Sync, FunctionCall: the cycle ends here
                self.writer.write(_READY_IDLE)
            else:
                self.skipping = True
            return None
        self.move(Event.ASSIGN)
        self.server = server
        self.txn_status = "I"
        self.boundary = True
        self.task = asyncio.get_running_loop().create_task(self.pump(server))
        return server

    def route(self, server: PooledServer, frame: Frame) -> bytes:
        kind, raw = frame
        pending = self.pending
        self.boundary = False
        if kind == 80:  # Parse
            return self.parse(server, decode_frontend(frame))
        if kind == 66 or kind == 68:  # Bind, Describe
            if kind == 68 and raw[5] != 83:  # Describe portal
                pending.append((q.ENDS[kind], q.FORWARD, None))
                return raw
            body = raw[5:]
            if kind == 66:
                head, name, rest = bind_statement(body)
            else:
                head, name, rest = 1, body[1:-1].decode("utf-8", "surrogateescape"), len(body)
            out = self.ensure(server, name)
            if out is None:  # unknown to the pooler: let the server say so
                pending.append((q.ENDS[kind], q.FORWARD, None))
                return raw
            prefix, server_name = out
            described: ServerStatement | None = None
            if kind == 68 and name and self.keep:
                described = server.statements.get(self.statements[name])
                if described is not None and described.description and self.may_answer(prefix):
                    # The answer this server gave for this statement, with nothing in between
                    # that could change it (see may_answer): no round trip.
                    self.pool.describe_saved += 1
                    self.synthetic(described.description)
                    return b""
            new_body = body[:head] + m.cstr(server_name) + body[rest:]
            if described is not None:
                pending.append((q.ENDS[kind], q.DESCRIBE, described))
            else:
                pending.append((q.ENDS[kind], q.FORWARD, None))
            return prefix + m.typed(raw[:1], new_body)
        if kind == 72 and self.settled():  # Flush with nothing outstanding: nothing to flush
            return b""
        if kind == 67 and raw[5] == 83:  # Close statement
            name = raw[6:-1].decode("utf-8", "surrogateescape")
            if name:
                self.pending.append(
                    (q.NEVER, q.SYNTHETIC, q.Closed(name, self.statements.pop(name, None)))
                )
                return b""
            self.unnamed = server.unnamed = None
        elif kind == 81:  # Query
            query = decode_frontend(frame)
            assert isinstance(query, m.Query)
            self.effects(server, query.sql)
            self.unnamed = server.unnamed = None  # a simple Query destroys the unnamed statement
        ends = q.ENDS.get(kind)
        if ends is not None:
            pending.append((ends, q.FORWARD, None))
        elif kind not in (72, 100, 99, 102):  # Flush, CopyData, CopyDone, CopyFail
            raise PgProtocolError(f"unexpected {chr(kind)!r} message from the client")
        return raw

    def parse(self, server: PooledServer, message: m.Message) -> bytes:
        assert isinstance(message, m.Parse)
        key = (message.sql, message.param_types)
        self.effects(server, message.sql)
        if not message.name:
            previous, self.unnamed = self.unnamed, key
            server.unnamed = key
            self.pending.append((q.ENDS[80], q.UNNAMED, previous))
            return message.encode()
        self.statements[message.name] = key
        known = server.statements.get(key) if self.keep else None
        if known is not None and self.txn_status != "E" and self.settled():
            self.pool.parse_saved += 1  # the answer PostgreSQL would give, without asking it
            self.pending.append((q.NEVER, q.SYNTHETIC, q.Parsed(message.name, key)))
            return b""
        if known is not None or not self.keep:
            # Prepared unnamed: for this transaction only (prepared_statements=False), or so
            # that the server answers (an aborted transaction refuses even a Parse).
            server.unnamed = key
            self.pool.parse_forwarded += 1
            self.pending.append((q.ENDS[80], q.UNNAMED_AS, q.Parsed(message.name, key)))
            return m.Parse("", message.sql, message.param_types).encode()
        self.pool.parse_forwarded += 1
        known = server.statements[key] = ServerStatement(server.statement_name(), key)
        self.pending.append((q.ENDS[80], q.PARSE_FORWARD, q.Parsed(message.name, key, known)))
        return m.Parse(known.name, message.sql, message.param_types).encode()

    def ensure(self, server: PooledServer, name: str) -> tuple[bytes, str] | None:
        """(a Parse to inject first or b"", the server's name) for client statement ``name``."""
        if not name:
            if self.unnamed is None:  # the client has none; the server may hold one of ours
                if server.unnamed is None:
                    return b"", ""
                server.unnamed = None
                self.pending.append((q.ENDS[67], q.DROP, None))
                return m.Close("S", "").encode(), ""
            if server.unnamed == self.unnamed:
                return b"", ""
            server.unnamed = unnamed = self.unnamed
            self.pending.append((q.ENDS[80], q.UNNAMED_DROP, None))
            return m.Parse("", unnamed[0], unnamed[1]).encode(), ""
        key = self.statements.get(name)
        if key is None:
            return None
        self.effects(server, key[0])
        if not self.keep:
            if server.unnamed == key:
                return b"", ""
            server.unnamed = key
            self.pending.append((q.ENDS[80], q.UNNAMED_DROP, None))
            return m.Parse("", key[0], key[1]).encode(), ""
        known = server.statements.get(key)
        if known is not None:
            return b"", known.name
        known = server.statements[key] = ServerStatement(server.statement_name(), key)
        self.pending.append((q.ENDS[80], q.PARSE_DROP, known))
        return m.Parse(known.name, key[0], key[1]).encode(), known.name

    def may_answer(self, prefix: bytes) -> bool:
        """A Describe of a prepared statement may be answered from what the server said of it
        before when nothing is outstanding, no transaction is open (SET LOCAL, DDL in it) and
        the session is not pinned (its own SET search_path): PostgreSQL would describe it the
        same way. A later schema change makes Execute fail ("cached plan must not change
        result type") exactly as it would after a server-side Describe."""
        return (
            not prefix
            and self.txn_status == "I"
            and self.state is not ClientState.CL_PINNED
            and self.settled()
        )

    def settled(self) -> bool:
        """Nothing sent is still unanswered: ``txn_status`` is the server's current one."""
        return all(entry[1] == q.SYNTHETIC for entry in self.pending)

    def synthetic(self, data: bytes) -> None:
        """Queue a locally made answer; it goes out once every answer before it has (merged
        into the same write as the server's next answers when there are any)."""
        self.pending.append((q.NEVER, q.SYNTHETIC, data))

    def effects(self, server: PooledServer, sql: str) -> None:
        found = analyze(sql)
        if found.forgets_prepared:
            server.forget_statements()
        if found.pins:
            self.pin(server, found.pins[0])

    def pin(self, server: PooledServer, reason: str) -> None:
        if self.state is not ClientState.CL_PINNED:
            self.move(Event.PIN)
            self.pool.pin(server, reason)

    # -- server -> client ------------------------------------------------------------------------

    async def pump(self, server: PooledServer) -> None:
        reader, parser = server.link.reader, server.parser
        try:
            while True:
                data = await reader.read(_READ)
                if not data:
                    raise ConnectionError("the server closed the connection")
                parser.feed(data)
                out: list[bytes] = []
                done = self.answers(server, out)
                if out:
                    self.writer.write(b"".join(out))
                if done:
                    self.server = self.task = None
                    self.move(Event.RELEASE)
                    self.pool.release(server)
                    return
                await self.client_drain()
        except Exception as exc:  # OSError, PgProtocolError; anything else is a pooler bug
            if self.gone:
                return
            if not isinstance(exc, OSError | PgProtocolError):
                log.exception("pool %s: relaying from %r failed", self.pool.name, server)
            log.info("pool %s: server connection %r failed: %s", self.pool.name, server, exc)
            self.server = self.task = None
            self.pending.clear()
            self.pool.discard(server, "broken")
            if not self.said_fatal:  # one FATAL per session, as PostgreSQL sends
                lost = f"the server connection was lost ({exc}); reconnect and retry"
                self.writer.write(fatal("08006", f"pool binding {self.pool.name!r}: {lost}"))
            self.hang_up()

    async def client_drain(self) -> None:
        try:
            await self.writer.drain()
        except OSError:
            self.hang_up()
            raise

    def hang_up(self) -> None:
        self.gone = True
        if self.state is not ClientState.CL_CLOSED:
            self.move(Event.CLOSE)
        self.writer.close()

    def answers(self, server: PooledServer, out: list[bytes]) -> bool:
        """Forward what the server sent; True when the transaction ended (release now).

        Only completions of the front entry, errors and ParameterStatus are looked at; every
        other message (rows above all) is forwarded in bulk by ``scan``."""
        pending = self.pending
        parser = server.parser
        while True:
            if pending and pending[0][1] == q.SYNTHETIC:
                out.extend(self.leading_synthetic())
            entry = pending[0] if pending else None
            passed, frame = parser.scan(q.STOPS[entry[0]] if entry is not None else q.STOP_IDLE)
            if passed:
                out.append(passed)
            if frame is None:
                break
            kind, raw = frame
            if entry is not None and kind in entry[0]:
                pending.popleft()
                action, data = entry[1], entry[2]
                if isinstance(data, q.Parsed):
                    data = data.statement
                if isinstance(data, ServerStatement):
                    data.ready = True
                if action in q.FORWARDED:
                    out.append(raw)
                if action == q.DESCRIBE:
                    assert isinstance(data, ServerStatement)
                    data.description = _described(passed, raw)
                if kind == 90:  # ReadyForQuery
                    self.ready(server, chr(raw[5]))
                continue
            if kind == 69:  # ErrorResponse
                error = decode_backend(frame)
                assert isinstance(error, m.ErrorResponse)
                if error.get("C") == "0A000":
                    # Among others "cached plan must not change result type": a statement the
                    # pool prepared there no longer fits the schema; prepare afresh from now on
                    # (new names; what the server still holds under the old ones goes unused).
                    server.forget_statements()
                if error.get("S") in ("FATAL", "PANIC"):
                    self.said_fatal = True  # the server ends the session: nothing to add to it
                elif entry is not None and entry[0] is not q.ENDS_Z:
                    self.skip_to_sync(server)
            elif kind == 83:  # ParameterStatus
                status = decode_backend(frame)
                assert isinstance(status, m.ParameterStatus)
                server.parameters[status.name] = status.value
            out.append(raw)
        return self.boundary and self.state is not ClientState.CL_PINNED

    def ready(self, server: PooledServer, txn_status: str) -> None:
        self.txn_status = txn_status
        self.boundary = txn_status == "I" and not self.pending
        if self.boundary and not self.keep:
            server.unnamed = None  # the next transaction may run on another backend
        if (
            self.boundary
            and server.parameters != server.baseline
            and changed_parameters(server.baseline, server.parameters)
        ):
            self.pin(server, "parameter_status")

    def skip_to_sync(self, server: PooledServer) -> None:
        """After an error the server ignores messages up to Sync: so do their entries."""
        pending, skipped = self.pending, []
        while pending and pending[0][0] is not q.ENDS_SYNC:
            skipped.append(pending.popleft())
        self.unnamed = q.undo(skipped, self.statements, server, self.unnamed)

    # -- end ---------------------------------------------------------------------------------

    def finish(self) -> None:
        """Give the server connection back (or discard it). Synchronous: cannot be cancelled."""
        task, server = self.task, self.server
        pinned = self.state is ClientState.CL_PINNED
        self.gone = True
        if self.state is not ClientState.CL_CLOSED:
            self.move(Event.CLOSE)
        if task is not None:
            task.cancel()
        if server is None:
            return
        self.server = self.task = None
        if self.pending:
            self.pool.cancel_soon(server)  # stop what it runs, then drop the connection
            self.pool.discard(server, "client_gone_mid_request")
        else:  # between messages: a reset (with ROLLBACK unless at a transaction's end) suffices
            status = self.txn_status if self.boundary or self.txn_status != "I" else "T"
            self.pool.release(server, dirty=pinned, txn_status=status)


def _described(passed: bytes, answer: bytes) -> bytes | None:
    """ParameterDescription + RowDescription/NoData when the ParameterDescription is the last
    message of ``passed`` (it arrived in the same read; else nothing is kept this time)."""
    pos, last = 0, -1
    while pos + 5 <= len(passed):
        last = pos
        pos += 1 + int.from_bytes(passed[pos + 1 : pos + 5], "big")
    if last < 0 or pos != len(passed) or passed[last] != 116:  # 't'
        return None
    return passed[last:] + answer
