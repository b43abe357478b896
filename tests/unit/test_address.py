"""connect()'s address parsing: the accepted forms, every rejection, and a fuzz over strings."""

from __future__ import annotations

import contextlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tcpworkers.sockets import Address, parse_address


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("example.com:443", ("example.com", 443)),
        ("127.0.0.1:5432", ("127.0.0.1", 5432)),
        ("[::1]:6379", ("::1", 6379)),
        ("[fe80::1%eth0]:22", ("fe80::1%eth0", 22)),
        ("db.internal.:5432", ("db.internal.", 5432)),
        ("my_service:80", ("my_service", 80)),
        ("localhost:65535", ("localhost", 65535)),
        ("h:1", ("h", 1)),
        ({"hostname": "example.com", "port": 25}, ("example.com", 25)),
        ({"hostname": "::1", "port": 80}, ("::1", 80)),
        ({"hostname": "[::1]", "port": 80}, ("::1", 80)),
        (("10.0.0.1", 5432), ("10.0.0.1", 5432)),
        (("::1", 5432), ("::1", 5432)),
    ],
)
def test_accepted_forms(address: object, expected: tuple[str, int]) -> None:
    assert parse_address(address) == Address(*expected)


@pytest.mark.parametrize(
    ("address", "fragment"),
    [
        ("example.com", "has no port"),
        (":80", "host is empty"),
        ("h:0", "out of range"),
        ("h:65536", "out of range"),
        ("h:abc", "not a number"),
        ("h:", "not a number"),
        ("h:+80", "not a number"),
        ("h: 80", "not a number"),
        ("::1:80", "must be bracketed"),
        ("[::1]", "not a valid address"),
        ("[::1]80", "not a valid address"),
        ("[nope]:80", "not a valid IPv6"),
        ("[::1%bad zone]:80", "invalid IPv6 zone"),
        ("exa\nmple.com:80", "not a host name"),
        ("exa\x00mple.com:80", "not a host name"),
        ("user@example.com:80", "not a host name"),
        ("example.com/path:80", "not a host name"),
        ("a..b:80", "not a host name"),
        ("ex ample.com:80", "not a host name"),
        ("bücher.example:80", "not ASCII"),
        ("a" * 254 + ":80", "over the 253"),
        ("a" * 64 + ".com:80", "label over 63"),
        ({"hostname": "h"}, 'needs both "hostname" and "port"'),
        ({"hostname": "h", "port": 1, "tls": True}, "unknown address keys"),
        ({"hostname": "h", "port": 0}, "out of range"),
        (("h", 1, 2), "must be (host, port)"),
        (("h", 70000), "out of range"),
    ],
)
def test_bad_values_raise_valueerror_naming_the_forms(address: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_address(address)


@pytest.mark.parametrize(
    "address",
    [
        None,
        80,
        b"h:80",
        ["h", 80],
        {"hostname": b"h", "port": 80},
        {"hostname": "h", "port": "80"},
        ("h", True),
        (1, 80),
    ],
)
def test_bad_types_raise_typeerror(address: object) -> None:
    with pytest.raises(TypeError, match="accepted forms"):
        parse_address(address)


def test_messages_name_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match=r'"host:port", "\[ipv6\]:port"'):
        parse_address("example.com")


@given(st.text(max_size=300))
def test_any_string_parses_or_raises_valueerror(text: str) -> None:
    try:
        host, port = parse_address(text)
    except ValueError:
        return
    assert 1 <= port <= 65535
    assert host
    assert not any(ch in host for ch in "@/ \t\r\n")


@given(
    st.one_of(
        st.none(),
        st.integers(),
        st.binary(),
        st.lists(st.integers()),
        st.dictionaries(st.text(max_size=10), st.integers() | st.text(max_size=10)),
        st.tuples(st.text(max_size=20), st.integers() | st.text(max_size=5)),
    )
)
def test_any_object_parses_or_raises_type_or_value_error(obj: object) -> None:
    with contextlib.suppress(TypeError, ValueError):
        parse_address(obj)


@given(st.ip_addresses(), st.integers(1, 65535))
def test_every_ip_literal_roundtrips(ip: object, port: int) -> None:
    text = f"[{ip}]:{port}" if ":" in str(ip) else f"{ip}:{port}"
    assert parse_address(text) == (str(ip), port)
    assert str(parse_address(text)) == text
