"""TCP port numbers: the one definition of a valid port, for every layer that checks one.

TCP port numbers are 16 bits and port 0 is not a destination (RFC 9293 section 3.1, the IANA
registry); a listening port of 0 asks the OS to choose (``allow_zero``).
"""

from __future__ import annotations

from typing import Final, TypeGuard

__all__ = ["MAX_PORT", "MIN_PORT", "is_port"]

MIN_PORT: Final = 1
MAX_PORT: Final = 65535


def is_port(value: object, *, allow_zero: bool = False) -> TypeGuard[int]:
    """True for an ``int`` (not a ``bool``) that is a destination port (or 0, if allowed)."""
    if not isinstance(value, int) or isinstance(value, bool):
        return False
    return (0 if allow_zero else MIN_PORT) <= value <= MAX_PORT
