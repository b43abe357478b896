"""Address normalisation: every spelling libc and the socket module accept, and the rejections.

Sans-IO: no event loop, no sockets. ``socket.inet_aton`` is used as an oracle only; it is a pure
libc parser and opens nothing.
"""

from __future__ import annotations

import ipaddress
import socket
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tcpworkers.egress import EgressPolicy, classify, normalize
from tcpworkers.egress._ipnorm import Embedding, embedded_ipv4, parse_ip

V4 = ipaddress.IPv4Address
V6 = ipaddress.IPv6Address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # inet_aton's legacy forms (4.2BSD): decimal, octal, hex, short forms and mixes.
        ("127.0.0.1", V4("127.0.0.1")),
        ("2130706433", V4("127.0.0.1")),
        ("0177.0.0.1", V4("127.0.0.1")),
        ("0x7f.1", V4("127.0.0.1")),
        ("0x7f000001", V4("127.0.0.1")),
        ("0X7F000001", V4("127.0.0.1")),
        ("127.1", V4("127.0.0.1")),
        ("127.0.1", V4("127.0.0.1")),
        ("0x7f.0.0x0.01", V4("127.0.0.1")),
        ("0177.0x0.1", V4("127.0.0.1")),
        ("00000000177.1", V4("127.0.0.1")),
        ("0x00000007f.1", V4("127.0.0.1")),
        ("0", V4("0.0.0.0")),
        ("0x", V4("0.0.0.0")),  # WHATWG: an empty hex number is 0 (glibc refuses it)
        ("4294967295", V4("255.255.255.255")),
        ("1.16777215", V4("1.255.255.255")),
        ("1.2.65535", V4("1.2.255.255")),
        # Trailing dots.
        ("127.0.0.1.", V4("127.0.0.1")),
        ("127.0.0.1..", V4("127.0.0.1")),
        ("2130706433.", V4("127.0.0.1")),
        # IPv6: brackets, zone ids, case, embedded IPv4.
        ("::1", V6("::1")),
        ("[::1]", V6("::1")),
        ("fe80::1%eth0", V6("fe80::1")),
        ("[fe80::1%25eth0]", V6("fe80::1")),
        ("FE80::1%2", V6("fe80::1")),
        ("::ffff:127.0.0.1", V6("::ffff:7f00:1")),
        ("[::FFFF:7F00:1]", V6("::ffff:7f00:1")),
        ("0:0:0:0:0:ffff:127.0.0.1", V6("::ffff:7f00:1")),
        ("::", V6("::")),
        ("[::]", V6("::")),
        ("64:ff9b::169.254.169.254", V6("64:ff9b::a9fe:a9fe")),
        # Non-ASCII: the idna codec the socket module applies (NFKC, dropped zero-width chars).
        ("\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11", V4("127.0.0.1")),
        ("127\u30020\u30020\u30021", V4("127.0.0.1")),
        ("127.0.0.1\u200b", V4("127.0.0.1")),
        ("::\uff11", V6("::1")),
    ],
)
def test_ip_spellings(text: str, expected: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert normalize(text) == expected
    assert parse_ip(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("example.com", "example.com"),
        ("Example.COM.", "example.com"),
        ("example.com..", "example.com"),
        ("db.internal", "db.internal"),
        ("localhost", "localhost"),
        ("_srv._tcp.example", "_srv._tcp.example"),
        ("1e100.net", "1e100.net"),
        ("0x7f.example", "0x7f.example"),  # only the *last* label makes it a number
        ("123.example", "123.example"),
        ("b\u00fccher.example", "xn--bcher-kva.example"),
        ("B\u00dcCHER.Example.", "xn--bcher-kva.example"),
        ("\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "example.com"),
        ("a" * 63 + ".com", "a" * 63 + ".com"),
    ],
)
def test_names(text: str, expected: str) -> None:
    assert normalize(text) == expected
    assert parse_ip(text) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "it is empty"),
        (".", "it is empty"),
        ("1.2.3.4.5", "ends in a number"),
        ("256.1.1.1", "ends in a number"),
        ("1.2.3.256", "ends in a number"),
        ("1.2.65536", "ends in a number"),
        ("4294967296", "ends in a number"),
        ("0x100000000", "ends in a number"),
        ("08.1.1.1", "ends in a number"),
        ("1..2", "ends in a number"),
        (".1", "ends in a number"),
        ("example.123", "ends in a number"),
        ("+1.2.3.4", "ends in a number"),
        ("1_0.0.0.1", "ends in a number"),
        ("[10.0.0.1]", "brackets may only enclose an IPv6 address"),
        ("[::1", "brackets may only enclose an IPv6 address"),
        ("::1]", "is not a valid IPv6 address"),
        ("fe80::1%", "zone id"),
        ("fe80::1% x", "zone id"),
        ("1::2::3", "is not a valid IPv6 address"),
        ("::ffff:0177.0.0.1", "is not a valid IPv6 address"),
        ("example.com:80", "is not a valid IPv6 address"),
        ("127.0.0.1%eth0", "not a valid host name"),
        ("a b", "not a valid host name"),
        (" example.com", "not a valid host name"),
        ("a\x00b", "not a valid host name"),
        ("a..b", "not a valid host name"),
        ("user@example.com", "not a valid host name"),
        ("a" * 64 + ".com", "not a valid host name"),
        (("a" * 60 + ".") * 5 + "com", "longer than 253"),
        ("\u00fc..b", "not a valid host name"),
    ],
)
def test_rejections(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        normalize(text)


def test_wrong_type() -> None:
    with pytest.raises(TypeError, match="host must be a str, not bytes"):
        normalize(b"127.0.0.1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "kind", "ipv4"),
    [
        ("::ffff:127.0.0.1", Embedding.MAPPED, "127.0.0.1"),
        ("::127.0.0.1", Embedding.COMPATIBLE, "127.0.0.1"),
        ("::2", Embedding.COMPATIBLE, "0.0.0.2"),
        ("64:ff9b::a9fe:a9fe", Embedding.NAT64, "169.254.169.254"),
        ("2002:a9fe:a9fe::", Embedding.SIX_TO_FOUR, "169.254.169.254"),
        ("2002:a9fe:a9fe:1:2:3:4:5", Embedding.SIX_TO_FOUR, "169.254.169.254"),
        # RFC 4380 §4's example: server 65.54.227.120, client 192.0.2.45 (bits inverted).
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", Embedding.TEREDO, "192.0.2.45"),
    ],
)
def test_embedded_ipv4(text: str, kind: Embedding, ipv4: str) -> None:
    address = normalize(text)
    assert not isinstance(address, str)
    assert embedded_ipv4(address) == (kind, V4(ipv4))


@pytest.mark.parametrize(
    "text", ["::", "::1", "8.8.8.8", "2606:4700::1111", "fe80::1", "64:ff9b:1::a9fe:a9fe"]
)
def test_no_embedded_ipv4(text: str) -> None:
    address = normalize(text)
    assert not isinstance(address, str)
    assert embedded_ipv4(address) is None


# --- properties -----------------------------------------------------------------------------


def _render_part(value: int, style: str, zeros: int, upper: bool) -> str:
    """One inet_aton number in decimal, octal (leading 0) or hex (0x), with extra zeros."""
    if style == "octal":
        return "0" + "0" * zeros + (format(value, "o") if value else "")
    if style == "hex":
        digits = format(value, "X" if upper else "x")
        return ("0X" if upper else "0x") + "0" * zeros + digits
    return str(value)


@st.composite
def legacy_spellings(draw: st.DrawFn, address: ipaddress.IPv4Address) -> str:
    """Any inet_aton spelling of ``address``: 1 to 4 parts, each in its own base."""
    value = int(address)
    count = draw(st.integers(1, 4))
    octets = list(address.packed)
    # The first count-1 parts are single bytes; the last one holds the remaining bytes.
    numbers = [*octets[: count - 1], value & ((1 << (8 * (5 - count))) - 1)]
    parts = [
        _render_part(
            number,
            draw(st.sampled_from(["decimal", "octal", "hex"])),
            draw(st.integers(0, 3)),
            draw(st.booleans()),
        )
        for number in numbers
    ]
    return ".".join(parts)


def ipv6_embeddings(address: ipaddress.IPv4Address) -> list[str]:
    """IPv6 spellings that carry ``address`` and reach it (mapped, compat, NAT64, 6to4)."""
    high, low = int(address) >> 16, int(address) & 0xFFFF
    spellings = [
        f"::ffff:{address}",
        f"::ffff:{high:x}:{low:x}",
        f"[::FFFF:{address}]",
        f"0:0:0:0:0:ffff:{address}",
        f"64:ff9b::{address}",
        f"64:ff9b::{high:x}:{low:x}",
        f"[64:ff9b::{address}]",
        f"2002:{high:x}:{low:x}::",
        f"2002:{high:x}:{low:x}:beef::1",
    ]
    if int(address) >= 2:
        # ::0.0.0.0 and ::0.0.0.1 are the IPv6 unspecified and loopback addresses instead.
        spellings.append(f"::{address}")
    return spellings


ipv4_addresses = st.builds(V4, st.integers(0, 2**32 - 1)) | st.sampled_from(
    [V4(a) for a in ("127.0.0.1", "169.254.169.254", "10.0.0.1", "0.0.0.0", "8.8.8.8")]
)
PRESETS = (EgressPolicy.dev(), EgressPolicy.serve())


def _verdicts(host: str) -> tuple[bool, ...]:
    return tuple(policy.decide(host, host, 443).allowed for policy in PRESETS)


@given(address=ipv4_addresses, data=st.data())
def test_legacy_spellings_normalize_to_the_same_address(
    address: ipaddress.IPv4Address, data: st.DataObject
) -> None:
    spelling = data.draw(legacy_spellings(address)) + "." * data.draw(st.integers(0, 2))
    assert normalize(spelling) == address
    assert _verdicts(spelling) == _verdicts(str(address))


@pytest.mark.skipif(sys.platform != "linux", reason="oracle is glibc's inet_aton")
@given(address=ipv4_addresses, data=st.data())
def test_legacy_spellings_agree_with_libc(
    address: ipaddress.IPv4Address, data: st.DataObject
) -> None:
    spelling = data.draw(legacy_spellings(address))
    assert socket.inet_aton(spelling) == address.packed


@given(address=ipv4_addresses, data=st.data())
def test_ipv6_embeddings_decide_like_the_ipv4_address(
    address: ipaddress.IPv4Address, data: st.DataObject
) -> None:
    spelling = data.draw(st.sampled_from(ipv6_embeddings(address)))
    normalized = normalize(spelling)
    assert isinstance(normalized, V6)
    embedded = embedded_ipv4(normalized)
    assert embedded is not None
    assert embedded[1] == address
    assert classify(normalized) == classify(address)
    assert _verdicts(spelling) == _verdicts(str(address))


@pytest.mark.skipif(sys.platform != "linux", reason="oracle is glibc's inet_aton")
@given(st.text(alphabet="0123456789abcdefxX.", max_size=24))
@example("0x7f.1")
@example("0x")
@example("1.2.3.4.")
def test_everything_libc_calls_an_ip_is_that_ip(text: str) -> None:
    """Soundness: no string libc parses as an IPv4 address is seen as a name or another IP."""
    try:
        packed = socket.inet_aton(text)
    except OSError:
        return
    assert normalize(text) == V4(packed)


_HOSTISH = st.text(alphabet="0123456789abcdefxX.:[]%-_ \u3002\uff0e\uff11", max_size=40)


@given(_HOSTISH | st.text(max_size=80))
def test_any_text_is_an_address_a_name_or_a_value_error(text: str) -> None:
    try:
        result = normalize(text)
    except ValueError:
        return
    assert isinstance(result, V4 | V6 | str)
    # Canonical forms are fixed points: normalising the result changes nothing.
    assert normalize(str(result)) == result
    if isinstance(result, str):
        assert result.isascii()
        assert result == result.lower()
        assert not result.endswith(".")
