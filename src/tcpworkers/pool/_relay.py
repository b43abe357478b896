"""The relay: one client connection served in transaction mode over the pool.

Size: over the ~450-line guideline on purpose: the relay is one client's state machine (the
pending-completions queue, the statement mapping, acquire and release), kept in one class so
every transition can be read against the theory of operation below.

Theory of operation. A client task reads the client's messages; it holds no server connection
between transactions (``CL_IDLE``). The first message of a transaction acquires one
(``CL_WAITING`` -> ``CL_ACTIVE``) and starts a server task that forwards the server's answers to
the client. Every message sent upstream that the server answers with a completion (ParseComplete,
BindComplete, CloseComplete, RowDescription/NoData, CommandComplete/EmptyQuery/PortalSuspended,
ReadyForQuery) puts an entry on ``pending``, in order; the server task pops entries as their
completions arrive. When a ReadyForQuery 'I' empties ``pending``, the transaction is over and the
server connection goes back to the pool at once, so pipelined and Flush-driven clients (asyncpg
prepares with Parse/Describe/Flush) work.

Prepared statements: the client's statement names map to (query text, parameter types); each
server connection prepares a text once under its own name (``_tw_N``). A client Parse of a text
the current server already has is answered here: a synthetic ParseComplete, queued as a pending
entry so it reaches the client in order (``parse_saved``); so is a Describe of a statement whose
answer the pool kept from an earlier Describe of that text (``describe_saved``), outside
transactions and pinned sessions. Between transactions both are answered before any server is
acquired (``answer_idle``), so a new connection's Parse/Describe/Flush holds no server. A Bind
or Describe of a statement the current server lacks is preceded by a Parse the pooler injects
and whose ParseComplete it drops.
Close of a statement only forgets the client's name (CloseComplete synthesised); the server keeps
the statement for other clients until the connection is reset or closed. An ErrorResponse in the
extended protocol makes the server skip to Sync; the entries it skips are dropped too. With
``prepared_statements=False`` (PgBouncer in transaction mode upstream) the server keeps nothing:
each statement is prepared unnamed in the transaction that uses it.

Pinning (``_sql``): SQL that outlives its transaction, or a reported parameter still changed at
ReadyForQuery 'I', keeps the server connection with the client until it disconnects; it is then
reset before reuse. A client that vanishes at a ReadyForQuery boundary gives its connection back
for a reset (ROLLBACK if a transaction is open); one that vanishes mid-request leaves a server in
an unknown state: its query is cancelled and the connection discarded.
"""

from __future__ import annotations

import asyncio

from tcpworkers.errors import PgProtocolError

from . import _messages as m
from ._client import RelayClient
from ._login import LOGIN_TIMEOUT, fatal, login
from ._pool import Pool
from ._state import Event
from ._streams import ClientReader, ClientWriter

__all__ = ["serve_client"]


async def serve_client(
    reader: ClientReader,
    writer: ClientWriter,
    pool: Pool,
    *,
    user: str,
    database: str,
    password: str | None,
) -> None:
    """Serve one client connection of a pool binding until it disconnects; never raises for
    what the client or the server does (errors go to the client as ErrorResponses)."""
    client = RelayClient(reader, writer, pool)
    key = pool.new_client_key()
    pool.clients += 1
    # A client that does not finish logging in within LOGIN_TIMEOUT is hung up on: closing
    # the connection makes the login's next read see the end (a timer, cheaper per connection
    # than a timeout scope).
    deadline = asyncio.get_running_loop().call_later(LOGIN_TIMEOUT, writer.close)
    try:
        try:
            result = await login(
                reader,
                writer,
                pool,
                user=user,
                database=database,
                password=password,
                backend_key=key,
            )
        finally:
            deadline.cancel()
        if isinstance(result, m.CancelRequest):
            target = pool.cancel_targets.get((result.backend_pid, result.backend_secret))
            running = target() if target is not None else None
            if running is not None:
                await pool.cancel(running)
            return
        if result is None:
            return
        client.move(Event.LOGIN_OK)
        pool.cancel_targets[key] = lambda: client.server
        await client.run(result)
    except PgProtocolError as exc:
        writer.write(fatal("08P01", f"protocol violation: {exc}"))
    except (OSError, EOFError, TimeoutError):
        pass
    finally:
        pool.clients -= 1
        pool.cancel_targets.pop(key, None)
        client.finish()
        if not writer.is_closing():
            writer.close()
