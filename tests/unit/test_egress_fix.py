"""A refusal names the exact config change that would permit it (sans-IO), and the gate's
message shows it as the TOML line to add (in a request) or the default-policy call (outside)."""

from __future__ import annotations

import pytest

from tcpworkers.egress import EgressPolicy
from tcpworkers.sockets._gate import denial_advice


@pytest.mark.parametrize(
    ("config", "host", "ip", "port", "fix"),
    [
        ({"preset": "serve"}, "127.0.0.1", "127.0.0.1", 5432, ("add", 'allow = ["127.0.0.1/32"]')),
        ({"preset": "serve"}, "db.internal", "10.1.2.3", 5432, ("add", 'allow = ["10.1.2.3/32"]')),
        ({"preset": "serve"}, "::1", "::1", 80, ("add", 'allow = ["::1/128"]')),
        ({}, "x", "169.254.169.254", 80, ("add", 'allow = ["169.254.169.254/32"]')),
        ({}, "x", "93.184.215.14", 25, ("add", 'allow_ports = ["25"]')),
        ({"allow_ports": ["443"]}, "x", "93.184.215.14", 80, ("add", 'allow_ports = ["80"]')),
        ({"deny": ["10.0.0.0/8"]}, "x", "10.1.2.3", 80, ("remove", 'deny entry "10.0.0.0/8"')),
        (
            {"deny": ["*.internal"]},
            "a.internal",
            "10.1.2.3",
            80,
            ("remove", 'deny entry "*.internal"'),
        ),
        (
            {"deny_ports": ["6000-6010"]},
            "x",
            "10.1.2.3",
            6001,
            ("remove", 'deny_ports entry "6000-6010"'),
        ),
        ({}, "db.localhost", "10.0.0.5", 80, None),
    ],
)
def test_the_fix_for_each_kind_of_refusal(
    config: dict[str, object], host: str, ip: str, port: int, fix: tuple[str, str] | None
) -> None:
    policy = EgressPolicy.from_config(config)
    decision = policy.decide(host, ip, port)
    assert not decision.allowed
    assert policy.fix(decision) == fix


@pytest.mark.parametrize(
    ("config", "host", "ip", "port"),
    [
        ({"preset": "serve"}, "127.0.0.1", "127.0.0.1", 5432),
        ({"preset": "serve"}, "db.internal", "10.1.2.3", 5432),
        ({"preset": "serve"}, "::1", "::1", 80),
        ({}, "x", "93.184.215.14", 25),
        ({"allow_ports": ["443"]}, "x", "93.184.215.14", 80),
    ],
)
def test_adding_the_line_permits_exactly_that_destination(
    config: dict[str, object], host: str, ip: str, port: int
) -> None:
    policy = EgressPolicy.from_config(config)
    fix = policy.fix(policy.decide(host, ip, port))
    assert fix is not None
    name, _, value = fix[1].partition(" = ")
    added = list(config.get(name, [])) + [item.strip('"') for item in value.strip("[]").split(", ")]  # type: ignore[call-overload]
    fixed = EgressPolicy.from_config({**config, name: added})
    assert fixed.decide(host, ip, port).allowed


def test_an_allowed_destination_needs_no_fix() -> None:
    policy = EgressPolicy.dev()
    assert policy.fix(policy.decide("x", "10.0.0.1", 80)) is None


def test_the_advice_in_and_out_of_a_request() -> None:
    policy = EgressPolicy.serve()
    decision = policy.decide("127.0.0.1", "127.0.0.1", 6379)
    inside = denial_advice(policy, decision, in_request=True)
    assert inside == (
        "; if this destination is intended, add under [egress] in tcpworkers.toml: "
        'allow = ["127.0.0.1/32"]'
    )
    outside = denial_advice(policy, decision, in_request=False)
    assert 'EgressPolicy.from_config({"allow": ["127.0.0.1/32"]})' in outside
    assert "tcpworkers.egress.set_default_policy()" in outside
