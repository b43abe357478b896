"""The relay's ``pending`` queue: what each message sent upstream is answered with.

An entry is (the message types that complete it, what to do with that completion, data). Every
message the server answers with a completion gets one, in the order sent; ReadyForQuery
completes a Sync, a Query or a FunctionCall; an ErrorResponse in the extended protocol makes the
server skip to Sync (Query messages included), and the skipped entries go with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ._server import PooledServer, ServerStatement, StatementKey

__all__ = [
    "DESCRIBE",
    "DROP",
    "Closed",
    "Parsed",
    "ENDS",
    "ENDS_SYNC",
    "ENDS_Z",
    "FORWARD",
    "FORWARDED",
    "NEVER",
    "PARSE_DROP",
    "PARSE_FORWARD",
    "STOPS",
    "STOP_IDLE",
    "SYNTHETIC",
    "UNNAMED",
    "UNNAMED_AS",
    "UNNAMED_DROP",
    "Entry",
    "undo",
]

ENDS_Z: Final = frozenset(b"Z")  # a Query or a FunctionCall
ENDS_SYNC: Final = frozenset(b"Z")  # a Sync: equal to ENDS_Z, told apart by identity
NEVER: Final[frozenset[int]] = frozenset()
ENDS: Final = {
    ord("P"): frozenset(b"1"),
    ord("B"): frozenset(b"2"),
    ord("C"): frozenset(b"3"),
    ord("D"): frozenset(b"Tn"),
    ord("E"): frozenset(b"CIs"),
    ord("S"): ENDS_SYNC,
    ord("Q"): ENDS_Z,
    ord("F"): ENDS_Z,
}
# What the server task must look at: the front entry's completions, errors, ParameterStatus.
STOP_IDLE: Final = frozenset(b"ES")
STOPS: Final = {ends: ends | STOP_IDLE for ends in {*ENDS.values(), NEVER}}
# Actions: forward the completion; drop it (the pooler sent the message); emit
# synthetic bytes when the entry reaches the front; a Parse whose ParseComplete marks a server
# statement ready (forwarded or dropped).
FORWARD, DROP, SYNTHETIC, PARSE_FORWARD, PARSE_DROP = range(5)
# Parses into the server's unnamed statement: the client's own (forwarded), a named one of the
# client's prepared unnamed (prepared_statements=False; forwarded), one the pooler injects
# (dropped). When such a Parse fails or is skipped, what the unnamed statement holds is unknown.
UNNAMED, UNNAMED_AS, UNNAMED_DROP = range(5, 8)
# A Describe of a prepared statement: forwarded, and its answer kept on the server statement.
DESCRIBE = 8
FORWARDED = frozenset({FORWARD, PARSE_FORWARD, UNNAMED, UNNAMED_AS, DESCRIBE})


@dataclass(frozen=True, slots=True)
class Closed:
    """A client's Close of a statement, answered here: if the server skips it (an error came
    first), the name still means what it meant."""

    name: str
    key: StatementKey | None


@dataclass(frozen=True, slots=True)
class Parsed:
    """A client's Parse of a named statement (forwarded, or answered here when ``statement`` is
    None and the entry is synthetic): if the server fails or skips it, the name is forgotten."""

    name: str
    key: StatementKey
    statement: ServerStatement | None = None


# data: the statement a Parse prepares, synthetic bytes, a Close answered here, or (UNNAMED) the
# client's unnamed statement before the Parse, to restore if the server skips it.
Entry = tuple[frozenset[int], int, ServerStatement | bytes | Closed | Parsed | StatementKey | None]


def undo(
    skipped: list[Entry],
    statements: dict[str, StatementKey],
    server: PooledServer,
    unnamed: StatementKey | None,
) -> StatementKey | None:
    """Undo, newest first, what routing the entries an error made the server skip assumed (the
    first entry is the message that failed). Returns the client's unnamed statement after it."""
    for index in range(len(skipped) - 1, -1, -1):
        _, action, data = skipped[index]
        if isinstance(data, Parsed):  # PostgreSQL has no such statement after all
            if statements.get(data.name) == data.key:
                del statements[data.name]
            data = data.statement
        elif isinstance(data, Closed) and data.key is not None:
            statements[data.name] = data.key  # the Close never ran
        if action in (UNNAMED, UNNAMED_AS, UNNAMED_DROP):
            server.unnamed = None  # failed or skipped: what it holds is unknown now
            if action == UNNAMED:  # a failed Parse drops the old one, a skipped one does not
                unnamed = data if index and isinstance(data, tuple) else None
        if (
            isinstance(data, ServerStatement)
            and server.statements.get(data.key) is data
            and not data.ready
        ):
            del server.statements[data.key]
    return unnamed
