"""Parse the address forms ``connect()`` accepts into a validated ``(host, port)``.

Pure code: no I/O, no DNS. Everything here raises ``TypeError`` for a wrong type and
``ValueError`` for a wrong value, with a message that names the accepted forms, and nothing else.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Mapping
from typing import Final, NamedTuple

from tcpworkers.egress._ipnorm import MAX_LABEL, MAX_NAME, ZONE_ID_RE
from tcpworkers.egress._ports import MAX_PORT, MIN_PORT, is_port

__all__ = ["Address", "AddressLike", "parse_address"]

ACCEPTED_FORMS: Final = (
    'accepted forms: "host:port", "[ipv6]:port", {"hostname": host, "port": port} '
    "or a (host, port) tuple"
)

# RFC 1035 2.3.4: a name is at most 253 characters in text form, a label at most 63 octets.
_MAX_NAME: Final = MAX_NAME
_MAX_LABEL: Final = MAX_LABEL
# Letters, digits, hyphens and dots (RFC 1123), plus "_" which internal zones use in practice
# (e.g. service records behind Docker/Kubernetes names). Anything else is not a host name.
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?")
_PORT_RE: Final = re.compile(r"[0-9]{1,5}")

AddressLike = str | Mapping[str, object] | tuple[str, int]


class Address(NamedTuple):
    """A validated destination: ``host`` is a name or an IP literal without brackets."""

    host: str
    port: int

    def __str__(self) -> str:
        return format_hostport(self.host, self.port)


def format_hostport(host: str, port: int) -> str:
    """Render ``host:port``, bracketing IPv6 literals (``[::1]:5432``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_address(address: object) -> Address:
    """Validate one of the accepted address forms.

    Args:
        address: ``"host:port"``, ``"[v6]:port"``, ``{"hostname": h, "port": p}`` or ``(h, p)``.

    Returns:
        The host (IPv6 literals without brackets) and the port.

    Raises:
        TypeError: the address, host or port has the wrong type.
        ValueError: the address is malformed; the message names the accepted forms.
    """
    if isinstance(address, str):
        return _parse_text(address)
    if isinstance(address, Mapping):
        return _from_mapping(address)
    if isinstance(address, tuple):
        if len(address) != 2:
            raise ValueError(
                f"address tuple must be (host, port), got {len(address)} items; {ACCEPTED_FORMS}"
            )
        host, port = address
        return Address(_check_host_obj(host), _check_port_obj(port))
    raise TypeError(
        f"address must be a str, a mapping or a tuple, not {type(address).__name__}; "
        f"{ACCEPTED_FORMS}"
    )


@functools.lru_cache(maxsize=512)
def _parse_text(address: str) -> Address:
    # Workers connect to the same few addresses over and over; validating one costs ~10 us.
    # (Errors are not cached: lru_cache does not store exceptions.)
    host, port = _split_hostport(address)
    return Address(_check_host(host, bracketed_ok=True), _check_port_text(port, address))


def _from_mapping(address: Mapping[str, object]) -> Address:
    extra = sorted(str(key) for key in address if key not in ("hostname", "port"))
    if extra:
        raise ValueError(f"unknown address keys {extra}; {ACCEPTED_FORMS}")
    if "hostname" not in address or "port" not in address:
        raise ValueError(f'address mapping needs both "hostname" and "port"; {ACCEPTED_FORMS}')
    return Address(_check_host_obj(address["hostname"]), _check_port_obj(address["port"]))


def _split_hostport(text: str) -> tuple[str, str]:
    if text.startswith("["):
        close = text.find("]")
        if close < 0 or not text[close + 1 :].startswith(":"):
            raise ValueError(f"{text!r} is not a valid address; {ACCEPTED_FORMS}")
        return text[: close + 1], text[close + 2 :]
    host, sep, port = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} has no port; {ACCEPTED_FORMS}")
    if ":" in host:
        raise ValueError(
            f'{text!r}: IPv6 literals must be bracketed, as in "[::1]:5432"; {ACCEPTED_FORMS}'
        )
    return host, port


def _check_host_obj(host: object) -> str:
    if not isinstance(host, str):
        raise TypeError(f"hostname must be a str, not {type(host).__name__}; {ACCEPTED_FORMS}")
    return _check_host(host, bracketed_ok=True, bare_v6_ok=True)


def _check_host(host: str, *, bracketed_ok: bool, bare_v6_ok: bool = False) -> str:
    if not host:
        raise ValueError(f"the host is empty; {ACCEPTED_FORMS}")
    if bracketed_ok and host.startswith("[") and host.endswith("]"):
        return _check_ipv6(host[1:-1], host)
    if bare_v6_ok and ":" in host:
        return _check_ipv6(host, host)
    if not host.isascii():
        raise ValueError(
            f"host {host!r} is not ASCII; pass the IDNA (punycode) form, "
            f"e.g. host.encode('idna').decode()"
        )
    if len(host) > _MAX_NAME:
        raise ValueError(f"host name is {len(host)} characters, over the {_MAX_NAME} DNS allows")
    if not _NAME_RE.fullmatch(host):
        raise ValueError(
            f"host {host!r} is not a host name or IP address (a user@, path, port "
            f"or control character does not belong in it); {ACCEPTED_FORMS}"
        )
    if any(len(label) > _MAX_LABEL for label in host.rstrip(".").split(".")):
        raise ValueError(f"host {host!r} has a label over {_MAX_LABEL} characters")
    return host


def _check_ipv6(literal: str, original: str) -> str:
    address, _, zone = literal.partition("%")
    try:
        ipaddress.IPv6Address(address)
    except ValueError:
        raise ValueError(f"{original!r} is not a valid IPv6 address; {ACCEPTED_FORMS}") from None
    if "%" in literal and not ZONE_ID_RE.fullmatch(zone):
        raise ValueError(f"{original!r} has an invalid IPv6 zone id")
    return literal


def _check_port_text(port: str, original: str) -> int:
    if not _PORT_RE.fullmatch(port):
        raise ValueError(
            f"{original!r}: port {port!r} is not a number from 1 to 65535; {ACCEPTED_FORMS}"
        )
    return _check_port_range(int(port))


def _check_port_obj(port: object) -> int:
    # bool is an int subclass; True as a port is always a bug.
    if not isinstance(port, int) or isinstance(port, bool):
        raise TypeError(f"port must be an int, not {type(port).__name__}; {ACCEPTED_FORMS}")
    return _check_port_range(port)


def _check_port_range(port: int) -> int:
    if not is_port(port):
        raise ValueError(f"port {port} is out of range: it must be from {MIN_PORT} to {MAX_PORT}")
    return port
