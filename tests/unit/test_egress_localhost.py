"""Issue 8 item 6: ``localhost`` and every name under it are loopback by name (RFC 6761 6.3).

Sans-IO: which names are localhost names, which addresses they stand for, and how the policy
decides a localhost name whatever address it is paired with.
"""

from __future__ import annotations

import ipaddress

import pytest

from tcpworkers.egress import AddressClass, EgressPolicy
from tcpworkers.egress._localhost import is_localhost_name, localhost_addresses
from tcpworkers.egress._policy import HostPattern

LOCALHOST_NAMES = [
    "localhost",
    "localhost.",
    "LOCALHOST.",
    "LocalHost",
    "db.localhost",
    "a.b.c.localhost.",
    "Cache.LocalHost.",
]
OTHER_NAMES = [
    "localhost.com",
    "localhost.localdomain",
    "notlocalhost",
    "localhost-1",
    "my-localhost",
    "localhost..",
    "127.0.0.1",
    "::1",
    "",
]


@pytest.mark.parametrize("name", LOCALHOST_NAMES)
def test_localhost_names(name: str) -> None:
    assert is_localhost_name(name)


@pytest.mark.parametrize("name", OTHER_NAMES)
def test_names_that_are_not_localhost_names(name: str) -> None:
    assert not is_localhost_name(name)


def test_localhost_addresses_are_the_loopback_addresses_ipv4_first() -> None:
    addresses = localhost_addresses()
    assert addresses == ("127.0.0.1", "::1")
    assert all(ipaddress.ip_address(a).is_loopback for a in addresses)


@pytest.mark.parametrize("name", ["localhost.", "LOCALHOST.", "api.localhost"])
def test_dev_allows_localhost_names_as_loopback(name: str) -> None:
    decision = EgressPolicy.dev().decide(name, "127.0.0.1", 5432)
    assert decision.allowed
    assert decision.address_class is AddressClass.LOOPBACK


@pytest.mark.parametrize("name", ["localhost.", "LOCALHOST.", "api.localhost"])
def test_serve_denies_localhost_names(name: str) -> None:
    decision = EgressPolicy.serve().decide(name, "::1", 5432)
    assert not decision.allowed
    assert "loopback" in decision.reason


@pytest.mark.parametrize("ip", ["10.0.0.5", "93.184.216.34", "169.254.169.254"])
def test_a_localhost_name_paired_with_another_address_is_denied(ip: str) -> None:
    # Whatever a resolver (or an injected one) claims, a localhost name means this machine.
    decision = EgressPolicy.dev().decide("db.localhost", ip, 5432)
    assert not decision.allowed
    assert "RFC 6761" in decision.reason


def test_a_host_pattern_for_localhost_names_does_not_lift_loopback() -> None:
    # from_config refuses such a rule (below); built directly, it still permits nothing.
    policy = EgressPolicy(
        allow=(*EgressPolicy.serve().allow, HostPattern("localhost", wildcard=True)), name="serve"
    )
    assert not policy.decide("db.localhost", "127.0.0.1", 5432).allowed


@pytest.mark.parametrize("rule", ["localhost", "LOCALHOST.", "*.localhost", "db.localhost"])
def test_an_allow_rule_that_can_never_match_is_a_config_error_with_the_fix(rule: str) -> None:
    with pytest.raises(ValueError, match=r"^egress\.allow\[1\]: ") as info:
        EgressPolicy.from_config({"preset": "serve", "allow": ["10.0.0.0/8", rule]})
    message = str(info.value)
    assert "can never allow anything" in message
    assert 'allow = ["127.0.0.1/32"] or allow = ["loopback"]' in message
    # The fix it names is accepted and does what it says.
    fixed = EgressPolicy.from_config({"preset": "serve", "allow": ["127.0.0.1/32"]})
    assert fixed.decide("localhost", "127.0.0.1", 5432).allowed


def test_a_localhost_deny_rule_is_kept() -> None:
    policy = EgressPolicy.from_config({"deny": ["localhost"]})
    assert not policy.decide("localhost", "127.0.0.1", 5432).allowed
