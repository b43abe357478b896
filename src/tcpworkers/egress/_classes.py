"""Address classes: which kind of network an address belongs to.

Pure code: no I/O. The tables below follow the IANA special-purpose address registries, one row
per range so that every range and its source is visible:

- IANA IPv4 Special-Purpose Address Registry (RFC 6890, updated by RFC 8190),
  https://www.iana.org/assignments/iana-ipv4-special-registry/
- IANA IPv6 Special-Purpose Address Registry (RFC 6890, updated by RFC 8190),
  https://www.iana.org/assignments/iana-ipv6-special-registry/
- IANA IPv6 Address Space (only 2000::/3 is allocated as global unicast),
  https://www.iana.org/assignments/ipv6-address-space/

``ipaddress``'s ``is_private`` / ``is_global`` are not used: they lump documentation,
benchmarking, loopback, link-local and RFC 1918 space together and their tables change between
Python versions, while a policy must name *which* kind of address it refused.

The most specific row wins (longest prefix), so a globally reachable exception inside a
reserved block (``2001:3::/32`` inside ``2001::/23``) is its own row.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Final

from tcpworkers.egress._ipnorm import IPAddress, embedded_ipv4

__all__ = ["AddressClass", "classify", "classify_range"]


class AddressClass(enum.StrEnum):
    """The kind of network an address belongs to; the value is the spelling in policy rules."""

    PUBLIC = "public"
    """Globally reachable unicast: everything not listed below."""
    PRIVATE = "private"
    """Private-use and shared space: RFC 1918, CGNAT 100.64/10, unique local fc00::/7."""
    LOOPBACK = "loopback"
    """This host: 127.0.0.0/8 and ::1."""
    LINK_LOCAL = "link-local"
    """169.254.0.0/16 (cloud metadata 169.254.169.254 lives here) and fe80::/10."""
    UNSPECIFIED = "unspecified"
    """0.0.0.0/8 and ::. On Linux a connect() to them reaches the local host."""
    MULTICAST = "multicast"
    """224.0.0.0/4 and ff00::/8."""
    RESERVED = "reserved"
    """Documentation, benchmarking, future use, broadcast, discard-only, unallocated IPv6."""


_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class _Row:
    network: _IPNetwork
    address_class: AddressClass
    source: str


def _row(cidr: str, address_class: AddressClass, source: str) -> _Row:
    return _Row(ipaddress.ip_network(cidr), address_class, source)


_C = AddressClass

# Anything not matched by a row is PUBLIC. "Globally reachable: True" rows inside reserved blocks
# are PUBLIC rows so that the longest-prefix rule finds them.
IPV4_TABLE: Final[tuple[_Row, ...]] = (
    _row("0.0.0.0/8", _C.UNSPECIFIED, 'RFC 791 §3.2 "this network"; Linux routes it to the host'),
    _row("10.0.0.0/8", _C.PRIVATE, "RFC 1918 private-use"),
    _row("100.64.0.0/10", _C.PRIVATE, "RFC 6598 shared address space (carrier-grade NAT)"),
    _row("127.0.0.0/8", _C.LOOPBACK, "RFC 1122 §3.2.1.3 loopback"),
    _row("169.254.0.0/16", _C.LINK_LOCAL, "RFC 3927 link-local (cloud metadata endpoints)"),
    _row("172.16.0.0/12", _C.PRIVATE, "RFC 1918 private-use"),
    _row("192.0.0.0/24", _C.RESERVED, "RFC 6890 IETF protocol assignments"),
    _row("192.0.0.9/32", _C.PUBLIC, "RFC 7723 Port Control Protocol anycast"),
    _row("192.0.0.10/32", _C.PUBLIC, "RFC 8155 TURN anycast"),
    _row("192.0.2.0/24", _C.RESERVED, "RFC 5737 documentation (TEST-NET-1)"),
    _row("192.88.99.0/24", _C.RESERVED, "RFC 7526 deprecated 6to4 relay anycast"),
    _row("192.168.0.0/16", _C.PRIVATE, "RFC 1918 private-use"),
    _row("198.18.0.0/15", _C.RESERVED, "RFC 2544 benchmarking"),
    _row("198.51.100.0/24", _C.RESERVED, "RFC 5737 documentation (TEST-NET-2)"),
    _row("203.0.113.0/24", _C.RESERVED, "RFC 5737 documentation (TEST-NET-3)"),
    _row("224.0.0.0/4", _C.MULTICAST, "RFC 5771 multicast"),
    _row("240.0.0.0/4", _C.RESERVED, "RFC 1112 §4 reserved for future use"),
    _row("255.255.255.255/32", _C.RESERVED, "RFC 919 / RFC 8190 limited broadcast"),
)

# IPv6 space outside 2000::/3 that no row names is unallocated (IANA IPv6 Address Space) and so
# RESERVED, not PUBLIC: see classify_range().
IPV6_TABLE: Final[tuple[_Row, ...]] = (
    _row("::/128", _C.UNSPECIFIED, "RFC 4291 §2.5.2 unspecified address"),
    _row("::1/128", _C.LOOPBACK, "RFC 4291 §2.5.3 loopback"),
    _row("64:ff9b::/96", _C.PUBLIC, "RFC 6052 NAT64 well-known prefix"),
    _row("64:ff9b:1::/48", _C.PRIVATE, "RFC 8215 local-use IPv4/IPv6 translation"),
    _row("100::/64", _C.RESERVED, "RFC 6666 discard-only"),
    _row("100:0:0:1::/64", _C.RESERVED, "RFC 9780 dummy IPv6 prefix"),
    _row("2000::/3", _C.PUBLIC, "RFC 4291 §2.4 global unicast"),
    _row("2001::/23", _C.RESERVED, "RFC 2928 IETF protocol assignments"),
    _row("2001::/32", _C.PUBLIC, "RFC 4380 Teredo"),
    _row("2001:1::1/128", _C.PUBLIC, "RFC 7723 Port Control Protocol anycast"),
    _row("2001:1::2/128", _C.PUBLIC, "RFC 8155 TURN anycast"),
    _row("2001:1::3/128", _C.PUBLIC, "RFC 9665 DNS-SD service registration anycast"),
    _row("2001:2::/48", _C.RESERVED, "RFC 5180 benchmarking"),
    _row("2001:3::/32", _C.PUBLIC, "RFC 7450 AMT"),
    _row("2001:4:112::/48", _C.PUBLIC, "RFC 7535 AS112-v6"),
    _row("2001:20::/28", _C.PUBLIC, "RFC 7343 ORCHIDv2"),
    _row("2001:30::/28", _C.PUBLIC, "RFC 9374 drone remote ID (DRIP DET)"),
    _row("2001:db8::/32", _C.RESERVED, "RFC 3849 documentation"),
    _row("2002::/16", _C.PUBLIC, "RFC 3056 6to4"),
    _row("3fff::/20", _C.RESERVED, "RFC 9637 documentation"),
    _row("5f00::/16", _C.RESERVED, "RFC 9602 segment routing (SRv6) SIDs"),
    _row("fc00::/7", _C.PRIVATE, "RFC 4193 unique local"),
    _row("fe80::/10", _C.LINK_LOCAL, "RFC 4291 §2.5.6 link-local unicast"),
    _row("fec0::/10", _C.PRIVATE, "RFC 3879 deprecated site-local (the old private range)"),
    _row("ff00::/8", _C.MULTICAST, "RFC 4291 §2.7 multicast"),
)

_IPV4_DEFAULT: Final = _Row(ipaddress.ip_network("0.0.0.0/0"), _C.PUBLIC, "globally reachable")
_IPV6_DEFAULT: Final = _Row(
    ipaddress.ip_network("::/0"), _C.RESERVED, "IANA IPv6 address space: reserved by the IETF"
)

# Most specific first, so the first row that contains an address is its longest-prefix match.
_IPV4_ROWS: Final = tuple(sorted(IPV4_TABLE, key=lambda row: -row.network.prefixlen))
_IPV6_ROWS: Final = tuple(sorted(IPV6_TABLE, key=lambda row: -row.network.prefixlen))


def classify(ip: IPAddress) -> AddressClass:
    """Classify an address by where its traffic ends up.

    An IPv6 address that embeds an IPv4 address (IPv4-mapped, IPv4-compatible, NAT64, 6to4,
    Teredo; see :func:`tcpworkers.egress.embedded_ipv4`) is classified as that IPv4 address:
    ``64:ff9b::a9fe:a9fe`` is link-local because a NAT64 gateway delivers it to
    169.254.169.254. The policy also checks the IPv6 range itself (:func:`classify_range`).

    Args:
        ip: a canonical address, as returned by :func:`tcpworkers.egress.normalize`.

    Returns:
        The address class.
    """
    embedded = embedded_ipv4(ip)
    if embedded is not None:
        return classify_range(embedded[1])
    return classify_range(ip)


def classify_range(ip: IPAddress) -> AddressClass:
    """Classify an address by the range it sits in, ignoring any embedded IPv4 address.

    Args:
        ip: a canonical address.

    Returns:
        The class of the most specific table row that contains ``ip``.
    """
    return range_row(ip).address_class


def range_row(ip: IPAddress) -> _Row:
    """Return the most specific table row containing ``ip`` (used to explain decisions)."""
    if isinstance(ip, ipaddress.IPv4Address):
        rows, default = _IPV4_ROWS, _IPV4_DEFAULT
    else:
        rows, default = _IPV6_ROWS, _IPV6_DEFAULT
    for row in rows:
        if ip in row.network:
            return row
    return default
