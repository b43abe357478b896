"""What a client's SQL leaves behind after its transaction ends: the reasons to pin.

In transaction mode a server connection goes back to the pool when a transaction ends, so
anything that outlives the transaction would leak into the next client's. :func:`analyze` reads
SQL text (simple-protocol queries and Parse'd statements alike) and names what it leaves behind:

- ``set``: SET of a session value. SET LOCAL, SET TRANSACTION and SET CONSTRAINTS end with the
  transaction and are fine; a plain SET inside a transaction block survives COMMIT, so every plain
  SET pins, inside a transaction or not. RESET does not pin: on a connection that is not pinned
  every setting already has its session default, so RESET changes nothing (and asyncpg's pool
  sends RESET ALL on every release, which must not pin).
- ``set_config``: ``set_config(name, value, is_local)`` unless ``is_local`` is literally ``true``.
- ``listen``, ``temp`` (CREATE TEMP ... unless ON COMMIT DROP, SELECT ... INTO TEMP, anything
  naming ``pg_temp``), ``prepare`` (SQL-level PREPARE), ``advisory_lock`` (the session variants;
  the ``_xact_`` ones end with the transaction), ``with_hold`` (DECLARE ... WITH HOLD), ``load``
  (LOAD a library), ``do`` (an anonymous code block can do any of these unseen).
- ``unparsed``: text this scanner cannot follow (an unterminated string or comment).

Conservative by design: when unsure, pin. Server functions that change session state internally
cannot be seen in the text; the relay also pins when the server reports a changed parameter
(ParameterStatus) that is still changed once the connection is idle (:func:`changed_parameters`).
No asyncio; pure functions.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["SqlEffects", "analyze", "changed_parameters"]


@dataclass(frozen=True, slots=True)
class SqlEffects:
    """What running a piece of SQL leaves behind on its server connection."""

    pins: tuple[str, ...] = ()  # reasons to pin, in the order met; empty: nothing outlives it
    forgets_prepared: bool = False  # DISCARD ALL/PLANS, DEALLOCATE ALL: server statements gone


NOTHING = SqlEffects()

# Cheap pre-filter: text with none of these substrings has no session effects at all.
_HINTS = re.compile(
    r"set|listen|temp|prepare|advisory|hold|discard|deallocate|load|\bdo\b",
    re.IGNORECASE,
)
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>--[^\n]*|/\*)
  | (?P<dollar>\$(?:[^\W\d]\w*)?\$)
  | (?P<param>\$\d+)
  | (?P<estring>[eE]')
  | (?P<string>')
  | (?P<quoted>")
  | (?P<word>[^\W\d]\w*(?:\$\w*)*)
  | (?P<number>\d[\w.]*)
  | (?P<punct>.)
    """,
    re.VERBOSE | re.DOTALL,
)

_SESSION_LOCKS = frozenset(
    {
        "pg_advisory_lock",
        "pg_advisory_lock_shared",
        "pg_try_advisory_lock",
        "pg_try_advisory_lock_shared",
    }
)
_TRANSACTION_SCOPED_SET = frozenset({"local", "transaction", "constraints"})
_TEMP_OBJECTS = frozenset({"table", "view", "sequence"})


class _Unsure(Exception):
    """The scanner lost track of the text (unterminated string or comment)."""


def _end_of_block_comment(sql: str, pos: int) -> int:
    depth = 1
    while depth:
        opening = sql.find("/*", pos)
        closing = sql.find("*/", pos)
        if closing < 0:
            raise _Unsure
        if 0 <= opening < closing:
            depth += 1
            pos = opening + 2
        else:
            depth -= 1
            pos = closing + 2
    return pos


def _end_of_quoted(sql: str, pos: int, quote: str, backslashes: bool) -> int:
    while True:
        end = sql.find(quote, pos)
        if end < 0:
            raise _Unsure
        if backslashes:
            run = 0
            while end - run - 1 >= pos and sql[end - run - 1] == "\\":
                run += 1
            if run % 2:
                pos = end + 1
                continue
        if sql.startswith(quote, end + 1):  # doubled quote: one literal quote character
            pos = end + 2
            continue
        return end + 1


def _tokens(sql: str) -> list[tuple[str, str]]:
    """(kind, text) tokens without whitespace or comments; words lowercased; literals as ''."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(sql):
        match = _TOKEN.match(sql, pos)
        assert match is not None  # the pattern matches any character
        kind = match.lastgroup or "punct"
        pos = match.end()
        if kind == "comment":
            if match.group() == "/*":
                pos = _end_of_block_comment(sql, pos)
        elif kind == "dollar":
            end = sql.find(match.group(), pos)
            if end < 0:
                raise _Unsure
            pos = end + len(match.group())
            out.append(("string", ""))
        elif kind in ("string", "estring"):
            pos = _end_of_quoted(sql, pos, "'", backslashes=kind == "estring")
            out.append(("string", ""))
        elif kind == "quoted":
            pos = _end_of_quoted(sql, pos, '"', backslashes=False)
            out.append(("quoted", ""))
        elif kind == "word":
            out.append(("word", match.group().lower()))
        elif kind != "ws":
            out.append((kind, match.group()))
    return out


def _statements(tokens: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    statements: list[list[tuple[str, str]]] = [[]]
    for token in tokens:
        if token == ("punct", ";"):
            statements.append([])
        else:
            statements[-1].append(token)
    return [s for s in statements if s]


def _words(statement: list[tuple[str, str]]) -> list[str]:
    return [text for kind, text in statement if kind == "word"]


def _set_config_is_local(statement: list[tuple[str, str]], start: int) -> bool:
    """Whether the call whose '(' is at ``start`` has the literal ``true`` as third argument."""
    depth = 0
    args: list[list[tuple[str, str]]] = [[]]
    for token in statement[start:]:
        if token == ("punct", "("):
            depth += 1
            if depth == 1:
                continue
        elif token == ("punct", ")"):
            depth -= 1
            if depth == 0:
                break
        elif token == ("punct", ",") and depth == 1:
            args.append([])
            continue
        args[-1].append(token)
    return len(args) == 3 and args[2] == [("word", "true")]


def _on_commit_drop(words: list[str]) -> bool:
    """CREATE TEMP TABLE ... ON COMMIT DROP: gone when its transaction ends (at once outside
    a transaction block), so it does not outlive it."""
    return any(words[i : i + 3] == ["on", "commit", "drop"] for i in range(len(words) - 2))


def _with_hold(words: list[str]) -> bool:
    head = words[: words.index("for")] if "for" in words else words
    return any(w == "with" and n == "hold" for w, n in itertools.pairwise(head))


def _statement_pins(statement: list[tuple[str, str]]) -> tuple[list[str], bool]:
    pins: list[str] = []
    words = _words(statement)
    first = words[0] if words else ""
    second = words[1] if len(words) > 1 else ""
    if first == "set" and second not in _TRANSACTION_SCOPED_SET:
        pins.append("set")
    elif first == "listen" or first == "load" or first == "do":
        pins.append(first)
    elif first == "prepare" and second != "transaction":
        pins.append("prepare")
    elif first == "declare" and _with_hold(words):
        pins.append("with_hold")
    elif first == "create":
        head = words[: next((i for i, w in enumerate(words) if w in _TEMP_OBJECTS), len(words))]
        if ("temp" in head or "temporary" in head) and not _on_commit_drop(words):
            pins.append("temp")
    if "pg_temp" in words and "temp" not in pins:  # objects created in the temporary schema
        pins.append("temp")
    if first in ("select", "with") and any(
        w == "into" and nxt in ("temp", "temporary") for w, nxt in itertools.pairwise(words)
    ):
        pins.append("temp")
    for i, (kind, text) in enumerate(statement[:-1]):
        if kind != "word" or statement[i + 1] != ("punct", "("):
            continue
        if text in _SESSION_LOCKS:
            pins.append("advisory_lock")
        elif text == "set_config" and not _set_config_is_local(statement, i + 1):
            pins.append("set_config")
    forgets = (first == "discard" and second in ("all", "plans")) or (
        first == "deallocate" and words[-1] == "all" and len(words) <= 3
    )
    return pins, forgets


@lru_cache(maxsize=2048)
def analyze(sql: str) -> SqlEffects:
    """The session effects of ``sql`` (one or more statements separated by ``;``)."""
    if not _HINTS.search(sql):
        return NOTHING
    try:
        tokens = _tokens(sql)
    except _Unsure:
        return SqlEffects(pins=("unparsed",))
    pins: list[str] = []
    forgets = False
    for statement in _statements(tokens):
        found, forgot = _statement_pins(statement)
        pins.extend(p for p in found if p not in pins)
        forgets = forgets or forgot
    if not pins and not forgets:
        return NOTHING
    return SqlEffects(tuple(pins), forgets)


def changed_parameters(baseline: Mapping[str, str], current: Mapping[str, str]) -> tuple[str, ...]:
    """Reported parameters (ParameterStatus) whose value differs from the connection's baseline:
    at ReadyForQuery 'I' a difference means a session-level change outlived its transaction."""
    return tuple(sorted(name for name, value in current.items() if baseline.get(name) != value))
