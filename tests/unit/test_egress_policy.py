"""The egress policy: presets over every address spelling, rules, ports, views, config errors.

Sans-IO: no event loop, no sockets, no DNS. "Resolution" is a literal list of addresses.
"""

from __future__ import annotations

import ast
import dataclasses
import ipaddress
import re
from pathlib import Path

import pytest

import tcpworkers.egress as egress
from tcpworkers.egress import AddressClass, Decision, EgressPolicy
from tcpworkers.egress._policy import (
    SMTP_PORT,
    ClassRule,
    HostPattern,
    NetworkRule,
    PortRange,
    parse_port_range,
    parse_rule,
)

C = AddressClass
DEV = EgressPolicy.dev()
SERVE = EgressPolicy.serve()

# spelling, canonical address, class, dev allows, serve allows
SPELLINGS = [
    # loopback in every spelling libc and the socket module accept
    ("127.0.0.1", "127.0.0.1", C.LOOPBACK, True, False),
    ("2130706433", "127.0.0.1", C.LOOPBACK, True, False),
    ("0177.0.0.1", "127.0.0.1", C.LOOPBACK, True, False),
    ("0x7f.1", "127.0.0.1", C.LOOPBACK, True, False),
    ("0x7f000001", "127.0.0.1", C.LOOPBACK, True, False),
    ("127.1", "127.0.0.1", C.LOOPBACK, True, False),
    ("127.0.1", "127.0.0.1", C.LOOPBACK, True, False),
    ("0x7f.0.0x0.01", "127.0.0.1", C.LOOPBACK, True, False),
    ("127.0.0.1.", "127.0.0.1", C.LOOPBACK, True, False),
    ("127.255.255.254", "127.255.255.254", C.LOOPBACK, True, False),
    ("::ffff:127.0.0.1", "::ffff:7f00:1", C.LOOPBACK, True, False),
    ("::ffff:7f00:1", "::ffff:7f00:1", C.LOOPBACK, True, False),
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1", C.LOOPBACK, True, False),
    ("::127.0.0.1", "::7f00:1", C.LOOPBACK, True, False),
    ("::1", "::1", C.LOOPBACK, True, False),
    ("[::1]", "::1", C.LOOPBACK, True, False),
    (
        "\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11",
        "127.0.0.1",
        C.LOOPBACK,
        True,
        False,
    ),
    ("127.0.0.1\u200b", "127.0.0.1", C.LOOPBACK, True, False),
    # cloud metadata, directly and through every IPv6 embedding
    ("169.254.169.254", "169.254.169.254", C.LINK_LOCAL, False, False),
    ("2852039166", "169.254.169.254", C.LINK_LOCAL, False, False),
    ("0xa9fea9fe", "169.254.169.254", C.LINK_LOCAL, False, False),
    ("0251.0376.0251.0376", "169.254.169.254", C.LINK_LOCAL, False, False),
    ("169.254.43518", "169.254.169.254", C.LINK_LOCAL, False, False),
    ("::ffff:169.254.169.254", "::ffff:a9fe:a9fe", C.LINK_LOCAL, False, False),
    ("64:ff9b::a9fe:a9fe", "64:ff9b::a9fe:a9fe", C.LINK_LOCAL, False, False),
    ("64:ff9b::169.254.169.254", "64:ff9b::a9fe:a9fe", C.LINK_LOCAL, False, False),
    ("2002:a9fe:a9fe::", "2002:a9fe:a9fe::", C.LINK_LOCAL, False, False),
    ("fe80::1%eth0", "fe80::1", C.LINK_LOCAL, False, False),
    ("[fe80::a9fe:a9fe%25eth0]", "fe80::a9fe:a9fe", C.LINK_LOCAL, False, False),
    # unspecified: connect() to these reaches the local host on Linux
    ("0.0.0.0", "0.0.0.0", C.UNSPECIFIED, False, False),
    ("0", "0.0.0.0", C.UNSPECIFIED, False, False),
    ("0.0.0.0.", "0.0.0.0", C.UNSPECIFIED, False, False),
    ("0.1.2.3", "0.1.2.3", C.UNSPECIFIED, False, False),
    ("::", "::", C.UNSPECIFIED, False, False),
    ("[::]", "::", C.UNSPECIFIED, False, False),
    ("::ffff:0.0.0.0", "::ffff:0.0.0.0", C.UNSPECIFIED, False, False),
    # private
    ("10.0.0.1", "10.0.0.1", C.PRIVATE, True, False),
    ("012.0.0.1", "10.0.0.1", C.PRIVATE, True, False),
    ("167772161", "10.0.0.1", C.PRIVATE, True, False),
    ("172.16.0.1", "172.16.0.1", C.PRIVATE, True, False),
    ("192.168.1.1", "192.168.1.1", C.PRIVATE, True, False),
    ("100.64.0.1", "100.64.0.1", C.PRIVATE, True, False),
    ("::ffff:10.0.0.1", "::ffff:a00:1", C.PRIVATE, True, False),
    ("64:ff9b::10.0.0.1", "64:ff9b::a00:1", C.PRIVATE, True, False),
    ("fd00::1", "fd00::1", C.PRIVATE, True, False),
    # public
    ("8.8.8.8", "8.8.8.8", C.PUBLIC, True, True),
    ("134744072", "8.8.8.8", C.PUBLIC, True, True),
    ("0x8.0x8.0x8.0x8", "8.8.8.8", C.PUBLIC, True, True),
    ("::ffff:8.8.8.8", "::ffff:808:808", C.PUBLIC, True, True),
    ("64:ff9b::808:808", "64:ff9b::808:808", C.PUBLIC, True, True),
    ("2002:808:808::1", "2002:808:808::1", C.PUBLIC, True, True),
    (
        "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        C.PUBLIC,
        True,
        True,
    ),  # Teredo, client 8.8.8.8
    ("2606:4700::1111", "2606:4700::1111", C.PUBLIC, True, True),
    ("[2606:4700::1111]", "2606:4700::1111", C.PUBLIC, True, True),
    # multicast and reserved
    ("224.0.0.1", "224.0.0.1", C.MULTICAST, False, False),
    ("ff02::1", "ff02::1", C.MULTICAST, False, False),
    ("255.255.255.255", "255.255.255.255", C.RESERVED, False, False),
    ("4294967295", "255.255.255.255", C.RESERVED, False, False),
    ("240.0.0.1", "240.0.0.1", C.RESERVED, False, False),
    ("192.0.2.1", "192.0.2.1", C.RESERVED, False, False),
    ("198.51.100.7", "198.51.100.7", C.RESERVED, False, False),
    ("203.0.113.9", "203.0.113.9", C.RESERVED, False, False),
    ("198.18.0.1", "198.18.0.1", C.RESERVED, False, False),
    ("2001:db8::1", "2001:db8::1", C.RESERVED, False, False),
    ("100::1", "100::1", C.RESERVED, False, False),
    (
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        C.RESERVED,
        False,
        False,
    ),  # Teredo, client 192.0.2.45
]


@pytest.mark.parametrize("preset", ["dev", "serve"])
@pytest.mark.parametrize(
    ("spelling", "canonical", "address_class", "dev_allows", "serve_allows"),
    SPELLINGS,
    ids=[row[0].encode("ascii", "backslashreplace").decode() for row in SPELLINGS],
)
def test_presets_over_spellings(
    preset: str,
    spelling: str,
    canonical: str,
    address_class: AddressClass,
    dev_allows: bool,
    serve_allows: bool,
) -> None:
    policy = DEV if preset == "dev" else SERVE
    expected = dev_allows if preset == "dev" else serve_allows
    # Asked for as a literal: the requested host and the address are the same text.
    decision = policy.decide(spelling, spelling, 443)
    assert decision.allowed is expected, decision.reason
    assert decision.address_class is address_class
    assert decision.address == ipaddress.ip_address(canonical)
    assert f"'{preset}' policy" in decision.reason
    assert ("does not allow" not in decision.reason) is expected
    # Resolved from a name: same verdict, and the reason says which name.
    resolved = policy.decide("app.example.com", spelling, 443)
    assert resolved.allowed is expected
    assert resolved.reason.startswith("app.example.com: ")


def test_spelling_table_is_broad() -> None:
    assert len(SPELLINGS) >= 30
    assert {row[2] for row in SPELLINGS} == set(AddressClass)


# --- reasons --------------------------------------------------------------------------------


def test_reason_names_the_class_and_the_policy() -> None:
    decision = SERVE.decide("169.254.169.254", "169.254.169.254", 80)
    assert (
        decision.reason == "169.254.169.254 is link-local, which the 'serve' policy does not allow"
    )
    assert str(decision) == decision.reason
    assert decision.rule is None


def test_reason_for_an_embedded_address_names_both() -> None:
    decision = DEV.decide("x.example", "64:ff9b::a9fe:a9fe", 80)
    assert decision.reason == (
        "x.example: 169.254.169.254 (reached via NAT64 address 64:ff9b::a9fe:a9fe) is "
        "link-local, which the 'dev' policy does not allow"
    )


def test_allowed_decision_names_the_rule() -> None:
    decision = SERVE.decide("one.one", "1.1.1.1", 443)
    assert decision.allowed
    assert decision.reason == "one.one: 1.1.1.1 is public, which the 'serve' policy allows"
    assert decision.rule == ClassRule(C.PUBLIC)
    assert decision.host == "one.one"
    assert decision.port == 443


# --- semantics: deny wins, views, host patterns ---------------------------------------------


def policy(**config: object) -> EgressPolicy:
    return EgressPolicy.from_config(config)


def test_nothing_is_allowed_without_an_allow_rule() -> None:
    none = EgressPolicy.none()
    assert not none.decide("8.8.8.8", "8.8.8.8", 443).allowed
    assert not none.decide("db.internal", "10.0.0.1", 443).allowed


def test_deny_cidr_wins_over_allow_class() -> None:
    p = policy(preset="dev", deny=["10.1.0.0/16"])
    assert not p.decide("10.1.2.3", "10.1.2.3", 5432).allowed
    assert p.decide("10.2.0.1", "10.2.0.1", 5432).allowed
    decision = p.decide("db", "10.1.2.3", 5432)
    assert decision.reason == "db: 10.1.2.3 is in 10.1.0.0/16, which the 'dev' policy denies"
    assert decision.rule == NetworkRule(ipaddress.ip_network("10.1.0.0/16"))


def test_deny_class_wins_over_allow_cidr() -> None:
    p = policy(preset="none", allow=["10.0.0.0/8"], deny=["private"])
    decision = p.decide("10.0.0.1", "10.0.0.1", 5432)
    assert not decision.allowed
    assert decision.reason == "10.0.0.1 is private, which the 'none' policy denies"


def test_same_cidr_allowed_and_denied_is_denied() -> None:
    p = policy(preset="none", allow=["10.0.0.0/8"], deny=["10.0.0.0/8"])
    assert not p.decide("10.0.0.1", "10.0.0.1", 5432).allowed


def test_deny_host_pattern_wins_over_allowed_address() -> None:
    p = policy(preset="dev", deny=["metadata.google.internal", "*.evil.example"])
    decision = p.decide("Metadata.Google.Internal.", "8.8.8.8", 80)
    assert not decision.allowed
    assert decision.reason == (
        "metadata.google.internal matches deny pattern 'metadata.google.internal' of the "
        "'dev' policy"
    )
    assert not p.decide("a.b.evil.example", "8.8.8.8", 80).allowed
    assert p.decide("evil.example", "8.8.8.8", 80).allowed


def test_deny_cidr_catches_the_embedded_ipv4_address() -> None:
    p = policy(preset="dev", deny=["169.254.0.0/16"], allow=["link-local"])
    for spelling in ("169.254.169.254", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe"):
        decision = p.decide("x", spelling, 80)
        assert not decision.allowed, spelling
        assert "is in 169.254.0.0/16, which the 'dev' policy denies" in decision.reason


def test_deny_ipv6_prefix_catches_relayed_addresses() -> None:
    p = policy(preset="dev", deny=["64:ff9b::/96"])
    assert not p.decide("x", "64:ff9b::808:808", 80).allowed
    assert p.decide("x", "8.8.8.8", 80).allowed


def test_relayed_address_needs_both_views_allowed() -> None:
    only_v4 = policy(preset="none", allow=["8.8.8.0/24"])
    assert only_v4.decide("x", "8.8.8.8", 53).allowed
    refused = only_v4.decide("x", "64:ff9b::808:808", 53)
    assert not refused.allowed
    assert "64:ff9b::808:808 (NAT64 address) is public" in refused.reason
    both = policy(preset="none", allow=["8.8.8.0/24", "64:ff9b::/96"])
    assert both.decide("x", "64:ff9b::808:808", 53).allowed


def test_mapped_address_is_one_view_matched_by_ipv4_and_ipv6_cidrs() -> None:
    v4_rule = policy(preset="serve", allow=["10.1.0.0/16"])
    assert v4_rule.decide("x", "::ffff:10.1.2.3", 5432).allowed
    v6_rule = policy(preset="serve", allow=["::ffff:10.1.0.0/112"])
    assert v6_rule.decide("x", "::ffff:10.1.2.3", 5432).allowed
    assert not v4_rule.decide("x", "::ffff:10.2.0.1", 5432).allowed


def test_unspecified_only_when_explicitly_allowed() -> None:
    assert not DEV.decide("0.0.0.0", "0.0.0.0", 80).allowed
    assert policy(preset="dev", allow=["unspecified"]).decide("0.0.0.0", "0.0.0.0", 80).allowed
    assert policy(preset="dev", allow=["0.0.0.0"]).decide("0", "0", 80).allowed


@pytest.mark.parametrize(
    ("pattern", "host", "matches"),
    [
        ("db.internal", "db.internal", True),
        ("db.internal", "DB.Internal.", True),
        ("db.internal", "x.db.internal", False),
        ("db.internal", "db.internal.evil", False),
        ("*.internal", "db.internal", True),
        ("*.internal", "a.b.internal", True),
        ("*.internal", "internal", False),
        ("*.internal", "evilinternal", False),
        ("*.internal", "internal.evil", False),
        ("*.Internal.", "DB.INTERNAL", True),
        ("*", "anything.example", True),
        ("*", "localhost.example", True),
        ("*", "localhost", False),  # RFC 6761: loopback by name, never 10.0.0.1 (issue 8)
        ("b\u00fccher.example", "xn--bcher-kva.example", True),
        ("*.xn--bcher-kva.example", "shop.b\u00fccher.example", True),
    ],
)
def test_host_patterns(pattern: str, host: str, matches: bool) -> None:
    p = policy(preset="none", allow=[pattern])
    assert p.decide(host, "10.0.0.1", 443).allowed is matches


def test_host_patterns_never_match_ip_literals() -> None:
    p = policy(preset="none", allow=["*"])
    assert not p.decide("10.0.0.1", "10.0.0.1", 443).allowed
    assert not p.decide("2130706433", "127.0.0.1", 443).allowed
    assert p.decide("db", "10.0.0.1", 443).allowed


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("10.0.0.5", True),
        ("8.8.8.8", True),
        ("fd00::5", True),
        ("127.0.0.1", False),
        ("169.254.169.254", False),
        ("0.0.0.0", False),
        ("::", False),
        ("224.0.0.1", False),
        ("192.0.2.1", False),
        ("::ffff:127.0.0.1", False),
        ("64:ff9b::a9fe:a9fe", False),
    ],
)
def test_host_pattern_vouches_only_for_public_and_private(address: str, allowed: bool) -> None:
    """DNS answers are not the operator's word: a rebinding name cannot reach metadata."""
    p = policy(preset="none", allow=["*.internal"])
    assert p.decide("db.internal", address, 5432).allowed is allowed


def test_host_pattern_refusal_says_what_to_add() -> None:
    p = policy(preset="serve", allow=["*.internal"])
    decision = p.decide("db.internal", "127.0.0.1", 5432)
    assert decision.reason == (
        "db.internal: 127.0.0.1 is loopback, which the 'serve' policy does not allow "
        "(allow pattern '*.internal' covers only public and private addresses; "
        "allow 'loopback' or a CIDR to reach it)"
    )
    assert (
        policy(preset="serve", allow=["*.internal", "loopback"])
        .decide("db.internal", "127.0.0.1", 5432)
        .allowed
    )


def test_host_pattern_allow_is_reported() -> None:
    p = policy(preset="serve", allow=["*.internal"])
    decision = p.decide("db.internal", "10.0.0.7", 5432)
    assert decision.allowed
    assert decision.rule == HostPattern("internal", wildcard=True)
    assert decision.reason == (
        "db.internal: 10.0.0.7 is private and matches allow pattern '*.internal' of the "
        "'serve' policy"
    )


# --- ports ----------------------------------------------------------------------------------


def test_port_25_is_denied_by_default() -> None:
    for p in (DEV, SERVE):
        decision = p.decide("mx.example.com", "8.8.8.8", SMTP_PORT)
        assert not decision.allowed
        assert "port 25 (SMTP) is refused by default; add 25 to allow_ports" in decision.reason
    assert DEV.decide("mx.example.com", "8.8.8.8", 587).allowed


def test_port_25_explicitly_allowed() -> None:
    p = policy(preset="serve", allow_ports=[25, "587"])
    assert p.decide("mx.example.com", "8.8.8.8", 25).allowed
    assert p.decide("mx.example.com", "8.8.8.8", 587).allowed
    assert not p.decide("mx.example.com", "8.8.8.8", 443).allowed


def test_allow_ports_is_the_complete_list() -> None:
    p = policy(preset="serve", allow_ports=["5432", "6379", "8000-8100"])
    for port in (5432, 6379, 8000, 8050, 8100):
        assert p.decide("h", "8.8.8.8", port).allowed, port
    for port in (22, 7999, 8101, 25):
        decision = p.decide("h", "8.8.8.8", port)
        assert not decision.allowed
        assert f"port {port} is not in allow_ports (5432, 6379, 8000-8100)" in decision.reason


def test_a_range_covering_25_counts_as_naming_it() -> None:
    assert policy(allow_ports=["1-65535"]).decide("h", "8.8.8.8", 25).allowed


def test_deny_ports_win_over_allow_ports() -> None:
    p = policy(preset="dev", allow_ports=["8000-8100"], deny_ports=["8080", "8090-8095"])
    assert p.decide("h", "8.8.8.8", 8000).allowed
    decision = p.decide("h", "8.8.8.8", 8080)
    assert not decision.allowed
    assert decision.rule == PortRange(8080, 8080)
    assert "port 8080 is in deny_ports (8080)" in decision.reason
    assert not p.decide("h", "8.8.8.8", 8093).allowed


def test_deny_ports_without_allow_ports() -> None:
    p = policy(preset="dev", deny_ports=["22"])
    assert not p.decide("h", "8.8.8.8", 22).allowed
    assert p.decide("h", "8.8.8.8", 23).allowed


def test_port_is_checked_before_the_address() -> None:
    decision = SERVE.decide("h", "169.254.169.254", 25)
    assert "port 25" in decision.reason


# --- filter ---------------------------------------------------------------------------------


def test_filter_keeps_order_and_items() -> None:
    resolved: list[tuple[str, int] | tuple[str, int, int, int]] = [
        ("10.0.0.1", 5432),
        ("8.8.8.8", 5432),
        ("169.254.169.254", 5432),
        ("2606:4700::1111", 5432, 0, 0),
        ("::1", 5432, 0, 0),
    ]
    permitted, denied = SERVE.filter("db.example.com", resolved)
    assert permitted == [("8.8.8.8", 5432), ("2606:4700::1111", 5432, 0, 0)]
    assert permitted[1] is resolved[3]
    assert [d.address for d in denied] == [
        ipaddress.ip_address(a) for a in ("10.0.0.1", "169.254.169.254", "::1")
    ]
    assert all(isinstance(d, Decision) and not d.allowed for d in denied)


def test_filter_accepts_address_objects_and_zones() -> None:
    resolved = [(ipaddress.ip_address("fe80::1%eth0"), 22), (ipaddress.ip_address("8.8.8.8"), 22)]
    permitted, denied = DEV.filter("h", resolved)
    assert permitted == [resolved[1]]
    assert denied[0].address == ipaddress.IPv6Address("fe80::1")
    assert denied[0].address_class is C.LINK_LOCAL


def test_filter_nothing_permitted() -> None:
    permitted, denied = SERVE.filter("internal", [("10.0.0.1", 80), ("127.0.0.1", 80)])
    assert permitted == []
    assert len(denied) == 2


# --- argument errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "ip", "port", "error", "message"),
    [
        ("h", "db.internal", 80, ValueError, "ip must be an IP address, not the host name"),
        ("h", 2130706433, 80, TypeError, "ip must be an IP address or a str, not int"),
        ("h", "8.8.8.8", 0, ValueError, "port must be 1-65535, got 0"),
        ("h", "8.8.8.8", 65536, ValueError, "port must be 1-65535, got 65536"),
        ("h", "8.8.8.8", True, TypeError, "port must be an int, not bool"),
        ("h", "8.8.8.8", "80", TypeError, "port must be an int, not str"),
        ("a b", "8.8.8.8", 80, ValueError, "not a valid host name"),
        ("1.2.3.4.5", "8.8.8.8", 80, ValueError, "ends in a number"),
    ],
)
def test_decide_argument_errors(
    host: str, ip: object, port: object, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        DEV.decide(host, ip, port)  # type: ignore[arg-type]


# --- rules and presets ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("public", ClassRule(C.PUBLIC)),
        ("Link-Local", ClassRule(C.LINK_LOCAL)),
        ("link_local", ClassRule(C.LINK_LOCAL)),
        (" reserved ", ClassRule(C.RESERVED)),
        ("10.1.0.0/16", NetworkRule(ipaddress.ip_network("10.1.0.0/16"))),
        ("fd00::/8", NetworkRule(ipaddress.ip_network("fd00::/8"))),
        ("0/8", NetworkRule(ipaddress.ip_network("0.0.0.0/8"))),
        ("169.254.169.254", NetworkRule(ipaddress.ip_network("169.254.169.254/32"))),
        ("127.1", NetworkRule(ipaddress.ip_network("127.0.0.1/32"))),
        ("[::1]", NetworkRule(ipaddress.ip_network("::1/128"))),
        ("db.internal", HostPattern("db.internal")),
        ("*.Internal.", HostPattern("internal", wildcard=True)),
        ("*", HostPattern("", wildcard=True)),
    ],
)
def test_parse_rule(text: str, rule: object) -> None:
    assert parse_rule(text) == rule


def test_rules_render_as_config_text() -> None:
    for text in ("private", "10.1.0.0/16", "db.internal", "*.internal", "*"):
        assert str(parse_rule(text)) == text


@pytest.mark.parametrize(
    ("value", "expected"),
    [(5432, PortRange(5432, 5432)), ("8000-8100", PortRange(8000, 8100)), ("1", PortRange(1, 1))],
)
def test_parse_port_range(value: str | int, expected: PortRange) -> None:
    assert parse_port_range(value) == expected


def test_port_range_validates() -> None:
    with pytest.raises(ValueError, match="must satisfy 1 <= first <= last <= 65535"):
        PortRange(10, 9)
    with pytest.raises(TypeError, match="port must be an int"):
        PortRange("1", 2)  # type: ignore[arg-type]


def test_presets() -> None:
    assert DEV.name == "dev"
    assert {str(r) for r in DEV.allow} == {"public", "private", "loopback"}
    assert SERVE.name == "serve"
    assert [str(r) for r in SERVE.allow] == ["public"]
    assert EgressPolicy.default() == DEV
    assert EgressPolicy.none().allow == ()
    for preset in (DEV, SERVE):
        assert preset.deny == ()
        assert preset.allow_ports == preset.deny_ports == ()


def test_policy_is_frozen_hashable_and_coerces_lists() -> None:
    p = EgressPolicy(allow=[ClassRule(C.PUBLIC)])  # type: ignore[arg-type]
    assert p.allow == (ClassRule(C.PUBLIC),)
    assert hash(p) == hash(EgressPolicy(allow=(ClassRule(C.PUBLIC),)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "x"  # type: ignore[misc]


def test_policy_constructor_rejects_strings() -> None:
    with pytest.raises(TypeError, match=r"use EgressPolicy\.from_config"):
        EgressPolicy(allow=("public",))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="deny_ports items must be PortRange, not int"):
        EgressPolicy(deny_ports=(25,))  # type: ignore[arg-type]


# --- from_config ----------------------------------------------------------------------------


def test_from_config_example() -> None:
    p = EgressPolicy.from_config(
        {
            "preset": "serve",
            "allow": ["10.0.0.0/8", "*.internal"],
            "deny": ["link-local"],
            "allow_ports": ["5432", "6379", "8000-8100"],
            "deny_ports": [],
        }
    )
    assert p.name == "serve"
    assert [str(r) for r in p.allow] == ["public", "10.0.0.0/8", "*.internal"]
    assert [str(r) for r in p.deny] == ["link-local"]
    assert [str(r) for r in p.allow_ports] == ["5432", "6379", "8000-8100"]
    assert p.deny_ports == ()
    assert p.decide("db.internal", "10.1.2.3", 5432).allowed
    assert not p.decide("db.internal", "169.254.169.254", 5432).allowed


def test_from_config_defaults() -> None:
    assert EgressPolicy.from_config({}) == DEV
    assert EgressPolicy.from_config({}, default_preset="serve") == SERVE
    assert EgressPolicy.from_config({"preset": "none"}) == EgressPolicy.none()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            ["public"],
            "egress: expected a table with keys preset, allow, deny, allow_ports, "
            "deny_ports, got ['public']",
        ),
        (
            {"alow": []},
            'egress: unknown key "alow"; expected one of preset, allow, deny, '
            'allow_ports, deny_ports; did you mean "allow"?',
        ),
        (
            {"colour": []},
            'egress: unknown key "colour"; expected one of preset, allow, deny, '
            "allow_ports, deny_ports",
        ),
        (
            {"preset": "prod"},
            'egress.preset: "prod" is not a preset; expected one of "dev", "serve", "none"',
        ),
        ({"preset": 1}, 'egress.preset: 1 is not a preset; expected one of "dev", "serve", "none"'),
        (
            {"allow": "10.0.0.0/8"},
            'egress.allow: expected a list such as ["10.0.0.0/8", "*.internal"], got "10.0.0.0/8"',
        ),
        ({"deny": {"private": True}}, "egress.deny: expected a list such as"),
        (
            {"allow": ["private", 5]},
            "egress.allow[1]: 5 is not a string; expected a CIDR, IP "
            "address, address class (public, private, loopback, link-local, unspecified, "
            "multicast, reserved) or host pattern",
        ),
        (
            {"allow": ["private", "10.0.0.0/33"]},
            'egress.allow[1]: "10.0.0.0/33" is not a valid '
            "CIDR, IP address, address class (public, private, loopback, link-local, unspecified, "
            "multicast, reserved) or host pattern: the prefix length must be 0-32 for an IPv4 "
            'network; e.g. "10.0.0.0/8", "private", "db.internal" or "*.internal"',
        ),
        ({"allow": ["fd00::/129"]}, "the prefix length must be 0-128 for an IPv6 network"),
        ({"allow": ["10.0.0.0/-1"]}, "the prefix length must be 0-32"),
        ({"allow": ["10.0.0.0/"]}, "the prefix length must be 0-32"),
        (
            {"deny": ["10.1.2.3/16"]},
            'egress.deny[0]: "10.1.2.3/16" is not a valid CIDR, IP '
            "address, address class (public, private, loopback, link-local, unspecified, "
            "multicast, reserved) or host pattern: it has host bits set (did you mean "
            '"10.1.0.0/16"?)',
        ),
        (
            {"allow": ["db.internal/8"]},
            'egress.allow[0]: "db.internal/8" is not a valid CIDR, '
            "IP address, address class (public, private, loopback, link-local, unspecified, "
            "multicast, reserved) or host pattern: \"db.internal\" before the '/' is not an IP "
            "address",
        ),
        ({"allow": ["a b"]}, 'egress.allow[0]: "a b" is not a valid CIDR'),
        ({"allow": ["db.*.internal"]}, "'*' may only be the whole first label"),
        ({"allow": ["*internal"]}, "'*' may only be the whole first label"),
        ({"allow": ["*.10.0.0.1"]}, "a wildcard pattern must end in a host name, not an IP"),
        ({"allow": ["*."]}, 'egress.allow[0]: "*." is not a valid CIDR'),
        ({"allow": ["1.2.3.4.5"]}, "ends in a number but is not a valid IPv4 address"),
        ({"allow": [""]}, 'egress.allow[0]: "" is not a valid CIDR'),
        (
            {"allow_ports": "5432"},
            'egress.allow_ports: expected a list such as ["5432", "8000-8100"], got "5432"',
        ),
        (
            {"allow_ports": ["80-"]},
            'egress.allow_ports[0]: "80-" is not a valid port or port '
            'range; expected a port 1-65535 such as "5432" or a range such as "8000-8100"',
        ),
        ({"allow_ports": ["8100-8000"]}, 'egress.allow_ports[0]: "8100-8000" is not a valid port'),
        ({"allow_ports": ["0"]}, 'egress.allow_ports[0]: "0" is not a valid port'),
        ({"allow_ports": [65536]}, "egress.allow_ports[0]: 65536 is not a valid port"),
        ({"deny_ports": ["22", "http"]}, 'egress.deny_ports[1]: "http" is not a valid port'),
        ({"deny_ports": [True]}, "egress.deny_ports[0]: True is not a port or port range"),
        ({"deny_ports": [22.0]}, "egress.deny_ports[0]: 22.0 is not a port or port range"),
    ],
)
def test_from_config_errors(config: object, message: str) -> None:
    """Each message names the key, quotes the bad value and says what is expected."""
    with pytest.raises(ValueError, match=re.escape(message)):
        EgressPolicy.from_config(config)  # type: ignore[arg-type]


def test_from_config_key_prefix() -> None:
    with pytest.raises(ValueError, match=r"^tool\.egress\.deny\[0\]: "):
        EgressPolicy.from_config({"deny": ["nope nope"]}, key="tool.egress")


# --- public API and purity ------------------------------------------------------------------


def test_public_api() -> None:
    # Minimal on purpose: the request scope is tcpworkers.scope, the rule types stay private.
    assert sorted(egress.__all__) == [
        "AddressClass",
        "Decision",
        "EgressPolicy",
        "classify",
        "default_policy",
        "normalize",
        "set_default_policy",
    ]
    for name in egress.__all__:
        assert getattr(egress, name) is not None


SANS_IO_MODULES = (
    "_ipnorm.py",
    "_classes.py",
    "_policy.py",
    "_rules.py",
    "_ports.py",
    "_default.py",
    "__init__.py",
)
FORBIDDEN_IMPORTS = {"asyncio", "socket", "ssl", "selectors", "select", "uvloop", "subprocess"}


@pytest.mark.parametrize("module", SANS_IO_MODULES)
def test_policy_core_is_sans_io(module: str) -> None:
    source = Path(egress.__file__).with_name(module).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            imported.add(
                node.module if node.module.startswith("tcpworkers") else node.module.split(".")[0]
            )
    assert not imported & FORBIDDEN_IMPORTS
    # Only inward: the egress core depends on nothing else in tcpworkers.
    assert all(
        name.startswith("tcpworkers.egress.") for name in imported if name.startswith("tcpworkers")
    )
