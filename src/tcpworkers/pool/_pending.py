"""The relay's ``pending`` queue: what each message sent upstream is answered with.

An entry is (the message types that complete it, what to do with that completion, data). Every
message the server answers with a completion gets one, in the order sent; ReadyForQuery
completes a Sync, a Query or a FunctionCall; an ErrorResponse in the extended protocol makes the
server skip to Sync, and the skipped entries go with it.
"""

from __future__ import annotations

from typing import Final

from ._server import ServerStatement

__all__ = [
    "DROP",
    "ENDS",
    "ENDS_Z",
    "FORWARD",
    "NEVER",
    "PARSE_DROP",
    "PARSE_FORWARD",
    "STOPS",
    "STOP_IDLE",
    "SYNTHETIC",
    "Entry",
]

ENDS_Z: Final = frozenset(b"Z")
NEVER: Final[frozenset[int]] = frozenset()
ENDS: Final = {
    ord("P"): frozenset(b"1"),
    ord("B"): frozenset(b"2"),
    ord("C"): frozenset(b"3"),
    ord("D"): frozenset(b"Tn"),
    ord("E"): frozenset(b"CIs"),
    ord("S"): ENDS_Z,
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

Entry = tuple[frozenset[int], int, ServerStatement | bytes | None]
