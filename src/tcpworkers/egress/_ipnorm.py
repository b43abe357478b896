"""Normalise every spelling of a host into a canonical IP address or a canonical host name.

Pure code: no I/O, no DNS, no sockets.

Theory of operation. A policy that decides on the *text* of a host can be bypassed by any
spelling it does not understand, so this module mirrors what the layers underneath accept:

1. Python's ``socket`` module (and uvloop) encode a ``str`` host with the ``idna`` codec before
   calling ``getaddrinfo``. That codec applies nameprep (NFKC, case folding, dropping zero-width
   characters, mapping the ideographic and fullwidth full stops U+3002/U+FF0E to ``.``), so
   "127.0.0.1" written in fullwidth digits (U+FF10..U+FF19) reaches libc as ``b"127.0.0.1"``.
   We apply the same codec first, so we see the bytes the resolver sees.
2. libc's ``getaddrinfo`` parses IPv4 literals with ``inet_aton``, which accepts the 4.2BSD forms:
   one to four parts, each decimal, octal (leading ``0``) or hex (``0x``), the last part filling
   the remaining bytes (``127.1``, ``2130706433``, ``0x7f.1``, ``0177.0.0.1``). We parse them.
3. A name whose last label is a number cannot be a DNS name in practice (no TLD is numeric), and
   the WHATWG URL Standard ("ends in a number checker") rejects such a host unless it is a valid
   IPv4 address. We do the same: ``"1.2.3.4.5"`` or ``"08.1"`` raise ``ValueError`` instead of
   becoming names that a resolver might turn into something unchecked.
4. IPv6 literals may come bracketed (``[::1]``) and with a zone id (``fe80::1%eth0``); the zone
   picks an interface, not a destination, so it is dropped. IPv6 addresses that embed an IPv4
   address are kept as IPv6 here; :func:`embedded_ipv4` reports the IPv4 address they carry and
   the policy decides on both.

Decisions that go beyond libc, on purpose: trailing dots are stripped from IPv4 literals too
(``"127.0.0.1."`` is the IP, as browsers treat it), and an empty hex part ``"0x"`` means 0 (as in
the WHATWG IPv4 parser). Both make more spellings count as IPs, never fewer.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import re
from typing import Final, TypeAlias

__all__ = [
    "MAX_LABEL",
    "MAX_NAME",
    "ZONE_ID_RE",
    "Embedding",
    "IPAddress",
    "embedded_ipv4",
    "normalize",
    "parse_ip",
]

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

# RFC 1035 §2.3.4: a name is at most 253 characters in text form (255 octets on the wire), a label
# at most 63 octets.
MAX_NAME: Final = 253
MAX_LABEL: Final = 63
_MAX_NAME: Final = MAX_NAME
_MAX_LABEL: Final = MAX_LABEL

# Letters, digits and hyphens (RFC 1123 §2.1), plus "_", which internal zones use in practice
# (SRV-style and container names). Checked after lowercasing and IDNA encoding.
_LABEL_RE: Final = re.compile(r"[a-z0-9_-]{1,63}")

# inet_aton's part grammar (glibc resolv/inet_addr.c): "0x"/"0X" then hex digits, "0" then octal
# digits, or a decimal number. The WHATWG URL Standard's IPv4 number parser uses the same three.
_HEX_PART: Final = re.compile(r"0[xX]([0-9a-fA-F]*)")
_OCTAL_PART: Final = re.compile(r"0([0-7]*)")
_DECIMAL_PART: Final = re.compile(r"[1-9][0-9]*")
# The WHATWG "ends in a number checker": a last label of decimal digits or 0x-hex means the host
# was meant as an IPv4 address. (Octal is decimal digits, so it is covered.)
_NUMERIC_LABEL: Final = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")

# An IPv6 zone id is an interface name or index (RFC 4007 §11). One grammar for every layer
# (connect()'s argument check uses it too): letters, digits, "_", "." and "-", as Linux
# interface names and numeric indexes are, at most 64 characters.
ZONE_ID_RE: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_ZONE_RE: Final = ZONE_ID_RE


class Embedding(enum.Enum):
    """How an IPv6 address carries an IPv4 address (see :func:`embedded_ipv4`)."""

    MAPPED = "IPv4-mapped"
    """``::ffff:0:0/96`` (RFC 4291 §2.5.5.2): a spelling of the IPv4 address on dual-stack hosts."""
    COMPATIBLE = "IPv4-compatible"
    """``::/96`` minus ``::`` and ``::1`` (RFC 4291 §2.5.5.1, deprecated; some stacks route it)."""
    NAT64 = "NAT64"
    """``64:ff9b::/96`` (RFC 6052 §2.1): a NAT64 gateway forwards to the IPv4 address."""
    SIX_TO_FOUR = "6to4"
    """``2002::/16`` (RFC 3056 §2): a 6to4 relay forwards to the IPv4 address in bits 16..48."""
    TEREDO = "Teredo"
    """``2001::/32`` (RFC 4380 §4): the client's IPv4 address, bit-inverted, in the last 32 bits."""


_MAPPED_NET: Final = ipaddress.IPv6Network("::ffff:0:0/96")
_COMPATIBLE_NET: Final = ipaddress.IPv6Network("::/96")
_NAT64_NET: Final = ipaddress.IPv6Network("64:ff9b::/96")
_SIX_TO_FOUR_NET: Final = ipaddress.IPv6Network("2002::/16")
_TEREDO_NET: Final = ipaddress.IPv6Network("2001::/32")
# "::" and "::1" sit inside ::/96 but are the IPv6 unspecified and loopback addresses, not
# IPv4-compatible spellings of 0.0.0.0 and 0.0.0.1 (RFC 4291 §2.5.5.1).
_NOT_COMPATIBLE: Final = frozenset({ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1")})
_LOW32: Final = 0xFFFF_FFFF


def normalize(text: str) -> IPAddress | str:
    """Turn any spelling of a host into a canonical IP address or a canonical host name.

    Args:
        text: a host as a user or a driver wrote it: ``"2130706433"``, ``"[::1]"``,
            ``"fe80::1%eth0"``, ``"DB.Internal."``...

    Returns:
        An ``IPv4Address`` or ``IPv6Address`` (IPv6 without its zone id) when the text is an IP
        literal in any spelling the resolver accepts; otherwise the host name, IDNA-encoded as
        Python's socket module would send it, lowercased, without trailing dots.

    Raises:
        TypeError: ``text`` is not a ``str``.
        ValueError: the text is neither an IP literal nor a valid host name (for example
            ``"1.2.3.256"``, ``"[10.0.0.1]"``, ``"a b"``, ``""``).
    """
    if not isinstance(text, str):
        raise TypeError(f"host must be a str, not {type(text).__name__}")
    ascii_text = _to_ascii(text)
    ip = _parse_ascii_ip(ascii_text, original=text)
    if ip is not None:
        return ip
    return _check_name(ascii_text, original=text)


def parse_ip(text: str) -> IPAddress | None:
    """Parse an IP literal in any spelling, or return ``None`` when ``text`` is a host name.

    Args:
        text: the host text, as for :func:`normalize`.

    Returns:
        The canonical address, or ``None`` when the text is a valid host name.

    Raises:
        TypeError: ``text`` is not a ``str``.
        ValueError: the text is neither an IP literal nor a valid host name.
    """
    host = normalize(text)
    return None if isinstance(host, str) else host


def embedded_ipv4(ip: IPAddress) -> tuple[Embedding, ipaddress.IPv4Address] | None:
    """Report the IPv4 address an IPv6 address carries, if it carries one.

    Args:
        ip: a canonical address (from :func:`normalize`).

    Returns:
        ``(embedding, ipv4)`` for IPv4-mapped, IPv4-compatible, NAT64 (well-known prefix), 6to4
        and Teredo addresses; ``None`` for IPv4 addresses and every other IPv6 address.
    """
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    value = int(ip)
    if ip in _MAPPED_NET:
        return Embedding.MAPPED, ipaddress.IPv4Address(value & _LOW32)
    if ip in _COMPATIBLE_NET and ip not in _NOT_COMPATIBLE:
        return Embedding.COMPATIBLE, ipaddress.IPv4Address(value & _LOW32)
    if ip in _NAT64_NET:
        return Embedding.NAT64, ipaddress.IPv4Address(value & _LOW32)
    if ip in _SIX_TO_FOUR_NET:
        # 2002:AABB:CCDD::/48 carries AA.BB.CC.DD: bits 16..48 from the top of 128.
        return Embedding.SIX_TO_FOUR, ipaddress.IPv4Address((value >> 80) & _LOW32)
    if ip in _TEREDO_NET:
        # The client's public IPv4 address is stored with every bit inverted ("obfuscated").
        return Embedding.TEREDO, ipaddress.IPv4Address(~value & _LOW32)
    return None


def _quote(text: str) -> str:
    # JSON quoting shows stray spaces and control characters in error messages.
    return json.dumps(text, ensure_ascii=False)


def _to_ascii(text: str) -> str:
    """Apply the ``idna`` codec the socket module applies to ``str`` hosts, if needed."""
    if text.isascii():
        # The codec leaves ASCII untouched apart from length checks we make ourselves.
        return text
    try:
        return text.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ValueError(f"{_quote(text)} is not a valid host name: {exc}") from None


def _parse_ascii_ip(text: str, *, original: str) -> IPAddress | None:
    if text.startswith("["):
        if not text.endswith("]") or ":" not in text:
            raise ValueError(f"{_quote(original)}: brackets may only enclose an IPv6 address")
        return _parse_ipv6(text[1:-1], original=original)
    if ":" in text:
        return _parse_ipv6(text, original=original)
    stripped = text.rstrip(".")
    last_label = stripped.rpartition(".")[2]
    if not _NUMERIC_LABEL.fullmatch(last_label):
        return None
    ipv4 = _parse_legacy_ipv4(stripped)
    if ipv4 is None:
        raise ValueError(
            f"{_quote(original)} ends in a number but is not a valid IPv4 address "
            "(expected 1 to 4 dot-separated decimal, octal or hex parts within range)"
        )
    return ipv4


def _parse_ipv6(text: str, *, original: str) -> ipaddress.IPv6Address:
    address, percent, zone = text.partition("%")
    if percent and not _ZONE_RE.fullmatch(zone):
        raise ValueError(
            f"{_quote(original)}: the zone id after '%' must be a non-empty interface name"
        )
    try:
        return ipaddress.IPv6Address(address)
    except ValueError:
        raise ValueError(f"{_quote(original)} is not a valid IPv6 address") from None


def _parse_legacy_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """Parse inet_aton's 1-4 part forms; ``None`` when the text is not one of them."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    numbers: list[int] = []
    for part in parts:
        number = _parse_part(part)
        if number is None:
            return None
        numbers.append(number)
    *leading, last = numbers
    # Every part but the last is one byte; the last fills the bytes that are left (a.b.c.d,
    # a.b.c16, a.b24, a32), as in inet_aton.
    if any(number > 0xFF for number in leading):
        return None
    if last >= 1 << (8 * (4 - len(leading))):
        return None
    value = last
    for index, number in enumerate(leading):
        value |= number << (8 * (3 - index))
    return ipaddress.IPv4Address(value)


def _parse_part(part: str) -> int | None:
    # Checked against explicit grammars first: int() would also accept "+1", " 1" and "1_0".
    # Parts longer than a name may be are refused before int() sees them.
    if len(part) > _MAX_NAME:
        return None
    if match := _HEX_PART.fullmatch(part):
        digits = match.group(1)
        return int(digits, 16) if digits else 0
    if match := _OCTAL_PART.fullmatch(part):
        digits = match.group(1)
        return int(digits, 8) if digits else 0
    if _DECIMAL_PART.fullmatch(part):
        return int(part)
    return None


def _check_name(text: str, *, original: str) -> str:
    name = text.lower().rstrip(".")
    if not name:
        raise ValueError(f"{_quote(original)} is not a valid host name: it is empty")
    if len(name) > _MAX_NAME:
        raise ValueError(
            f"{_quote(original)} is not a valid host name: longer than {_MAX_NAME} chars"
        )
    for label in name.split("."):
        if not _LABEL_RE.fullmatch(label):
            raise ValueError(
                f"{_quote(original)} is not a valid host name: each dot-separated label must "
                f"be 1 to {_MAX_LABEL} letters, digits, '-' or '_'"
            )
    return name
