"""Address classes: every table row is reachable, and the ranges ``is_private`` gets wrong."""

from __future__ import annotations

import ipaddress

import pytest

from tcpworkers.egress import AddressClass, classify
from tcpworkers.egress._classes import IPV4_TABLE, IPV6_TABLE, _Row, classify_range, range_row

C = AddressClass


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("0.0.0.0", C.UNSPECIFIED),
        ("0.255.255.255", C.UNSPECIFIED),
        ("10.0.0.1", C.PRIVATE),
        ("100.64.0.1", C.PRIVATE),  # CGNAT: Python's is_private says False
        ("100.127.255.255", C.PRIVATE),
        ("100.128.0.0", C.PUBLIC),
        ("127.0.0.1", C.LOOPBACK),
        ("127.255.255.254", C.LOOPBACK),
        ("169.254.169.254", C.LINK_LOCAL),  # Python's is_private says True
        ("172.15.255.255", C.PUBLIC),
        ("172.16.0.1", C.PRIVATE),
        ("172.31.255.255", C.PRIVATE),
        ("172.32.0.0", C.PUBLIC),
        ("192.0.0.1", C.RESERVED),
        ("192.0.0.9", C.PUBLIC),
        ("192.0.2.1", C.RESERVED),  # documentation: Python's is_private says True
        ("192.88.99.1", C.RESERVED),
        ("192.168.1.1", C.PRIVATE),
        ("198.18.0.1", C.RESERVED),
        ("198.19.255.255", C.RESERVED),
        ("198.51.100.7", C.RESERVED),
        ("203.0.113.9", C.RESERVED),
        ("224.0.0.1", C.MULTICAST),
        ("239.255.255.255", C.MULTICAST),
        ("240.0.0.1", C.RESERVED),
        ("255.255.255.255", C.RESERVED),
        ("8.8.8.8", C.PUBLIC),
        ("1.1.1.1", C.PUBLIC),
        ("::", C.UNSPECIFIED),
        ("::1", C.LOOPBACK),
        ("::2", C.UNSPECIFIED),  # IPv4-compatible 0.0.0.2
        ("::ffff:10.0.0.1", C.PRIVATE),
        ("64:ff9b::808:808", C.PUBLIC),
        ("64:ff9b::a9fe:a9fe", C.LINK_LOCAL),
        ("64:ff9b:1::1", C.PRIVATE),
        ("100::1", C.RESERVED),
        ("2001::1", C.RESERVED),  # Teredo: the client is ~0.0.0.1 = 255.255.255.254
        ("2001:2::1", C.RESERVED),
        ("2001:3::1", C.PUBLIC),
        ("2001:db8::1", C.RESERVED),
        ("2002:808:808::", C.PUBLIC),
        ("2606:4700::1111", C.PUBLIC),
        ("3fff::1", C.RESERVED),
        ("4000::1", C.RESERVED),  # unallocated IPv6 space is not public
        ("5f00::1", C.RESERVED),
        ("fc00::1", C.PRIVATE),
        ("fd00::1", C.PRIVATE),
        ("fe80::1", C.LINK_LOCAL),
        ("febf::1", C.LINK_LOCAL),
        ("fec0::1", C.PRIVATE),
        ("ff02::1", C.MULTICAST),
    ],
)
def test_classify(address: str, expected: AddressClass) -> None:
    assert classify(ipaddress.ip_address(address)) is expected


def test_classify_range_ignores_the_embedded_address() -> None:
    nat64_metadata = ipaddress.IPv6Address("64:ff9b::a9fe:a9fe")
    assert classify(nat64_metadata) is C.LINK_LOCAL
    assert classify_range(nat64_metadata) is C.PUBLIC


@pytest.mark.parametrize(
    "row", IPV4_TABLE + IPV6_TABLE, ids=lambda row: f"{row.network}-{row.address_class}"
)
def test_every_row_is_the_answer_for_some_address(row: _Row) -> None:
    """No row is shadowed by a more specific one, and each names its source."""
    network = row.network
    candidates = [
        network.network_address,
        network.broadcast_address,
        network.network_address + network.num_addresses // 2,
        network.network_address + 1 if network.num_addresses > 1 else network.network_address,
    ]
    assert any(range_row(candidate) is row for candidate in candidates)
    assert "RFC" in row.source


def test_every_class_has_a_row() -> None:
    classes = {row.address_class for row in IPV4_TABLE + IPV6_TABLE}
    assert classes == set(AddressClass)


def test_class_values_are_the_rule_spellings() -> None:
    assert [str(c) for c in AddressClass] == [
        "public",
        "private",
        "loopback",
        "link-local",
        "unspecified",
        "multicast",
        "reserved",
    ]
