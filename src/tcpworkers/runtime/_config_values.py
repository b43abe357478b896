"""The scalar checks of ``tcpworkers.toml``, shared by the loader (``_config``) and the tables it
hands on (``[bindings.NAME]``, ``_pgbinding``), so one kind of mistake reads the same wherever it
is made: ``FILE: KEY: expected WHAT, got VALUE-AS-WRITTEN-IN-TOML``, or an unknown key with the
closest known one.

Each check takes the value, the dotted key and an ``error(key, message)`` that builds the
:class:`ConfigError` (its caller knows the file's label and how keys are prefixed).
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Callable, Iterable
from datetime import date, datetime, time

from tcpworkers.errors import ConfigError

__all__ = ["Error", "integer", "seconds", "show", "suggest"]

Error = Callable[[str, str], ConfigError]


def show(value: object) -> str:
    """A value as it would be written in TOML, for error messages."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        # JSON quoting shows stray spaces and control characters.
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    return json.dumps(value, ensure_ascii=False, default=str)


def suggest(key: str, known: Iterable[str]) -> str:
    """``; did you mean "KNOWN"?`` for the closest known key, or ``""``."""
    close = difflib.get_close_matches(key, list(known), n=1)
    return f'; did you mean "{close[0]}"?' if close else ""


def integer(value: object, key: str, error: Error, *, minimum: int = 1) -> int:
    """A TOML integer ``>= minimum`` (not a bool, not a float such as ``2.0``)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise error(key, f"expected {what}, got {show(value)}")
    return value


def seconds(value: object, key: str, error: Error, *, allow_zero: bool = False) -> float:
    """A finite number of seconds, above zero (or ``>= 0`` with ``allow_zero``).

    ``inf`` and ``nan`` are TOML floats, but no timeout: "never" is not a number of seconds.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        what = "a number of seconds >= 0" if allow_zero else "a positive number of seconds"
        raise error(key, f"expected {what}, got {show(value)}")
    return float(value)
