"""Localhost names: ``localhost`` and every name under it mean this machine (RFC 6761 6.3).

Pure code. RFC 6761 section 6.3 says name resolution APIs should recognise these names as
special and always return the loopback address, without sending a query to a DNS server. The
gate follows it: such a name is dialled at the loopback addresses without asking a resolver, so a
resolver (or a search domain, or an attacker's DNS answer) can never point ``db.localhost`` at
another machine, and the policy decides it as loopback.
"""

from __future__ import annotations

from typing import Final

__all__ = ["is_localhost_name", "localhost_addresses"]

_LOCALHOST: Final = "localhost"
# IPv4 first: local services most often listen on 127.0.0.1 only, and an IPv6 attempt to ::1
# that is refused costs one more round of happy eyeballs.
_ADDRESSES: Final = ("127.0.0.1", "::1")


def is_localhost_name(host: str) -> bool:
    """True for ``localhost`` and names under it, in any case, with or without one trailing dot.

    >>> is_localhost_name("LOCALHOST."), is_localhost_name("db.localhost")
    (True, True)
    >>> is_localhost_name("localhost.example.com")
    False
    """
    if not isinstance(host, str):
        raise TypeError(f"host must be a str, not {type(host).__name__}")
    name = host[:-1] if host.endswith(".") else host
    name = name.lower()
    if name == _LOCALHOST:
        return True
    if not name.endswith("." + _LOCALHOST):
        return False
    return all(name.split("."))  # no empty label ("..localhost", "localhost..")


def localhost_addresses() -> tuple[str, ...]:
    """The addresses a localhost name stands for, in the order they are tried."""
    return _ADDRESSES
