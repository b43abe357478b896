"""The egress policy: may this worker open a TCP connection to this address and port?

Size: over the ~450-line guideline on purpose: the numbered decision semantics below and the
code that implements each of them stay in one file, to be read side by side; the rule types and
their parsing (from strings and the ``[egress]`` table) are in ``_rules.py``.

Pure code: no I/O, no DNS, no sockets, no asyncio. The gate resolves a name, hands every resolved
``(address, port)`` to :meth:`EgressPolicy.filter`, and connects only to what it permits.

Decision semantics (each line is tested):

1. Every address is first normalised (``tcpworkers.egress.normalize``); the name the user asked
   for is normalised too (lowercase, IDNA, no trailing dot).
2. The port must be permitted: never in ``deny_ports``; in ``allow_ports`` when that list is not
   empty (it is then the complete list); port 25 (SMTP) only when ``allow_ports`` names it.
3. **Deny wins over allow.** The destination is denied when the requested name matches a deny host
   pattern, or the address (any view of it, see 6) is of a denied class or inside a denied CIDR.
4. Otherwise it is permitted only when *every* view of the address is allowed, by an allow class
   rule for its class, an allow CIDR that contains it, or an allow host pattern that matches the
   requested name. A host pattern vouches for a name, not for whatever its DNS answers say, so it
   allows only ``public`` and ``private`` addresses; a name that resolves to a loopback,
   link-local, unspecified, multicast or reserved address still needs a class or CIDR rule
   (this closes DNS rebinding to 127.0.0.1, cloud metadata and the 0.0.0.0 trick).
5. Nothing is allowed by default: a policy with no allow rule permits nothing.
6. Views. An IPv6 address that embeds an IPv4 address is decided as both: denied if either is
   denied, permitted only if both are allowed. IPv4-mapped (``::ffff:a.b.c.d``) and
   IPv4-compatible (``::a.b.c.d``) addresses are spellings of the IPv4 host, so they form one
   view with the IPv4 address's class, matched by CIDRs written either way. NAT64
   (``64:ff9b::/96``), 6to4 (``2002::/16``) and Teredo (``2001::/32``) addresses are routed to a
   relay that forwards to the IPv4 host, so the IPv6 address (class of its range, ``public``)
   and the IPv4 address are two views and each must pass.
7. Host patterns apply to the requested name only, never to resolved addresses; a request for
   an IP literal matches no host pattern.
8. ``localhost`` and names under it (``db.localhost``) are loopback by name (RFC 6761 6.3): the
   gate dials them at the loopback addresses without a resolver, and paired with any other
   address they are denied.

Presets: :meth:`EgressPolicy.dev` allows ``public``, ``private`` and ``loopback``;
:meth:`EgressPolicy.serve` allows ``public`` only. :meth:`EgressPolicy.default`, the policy for
plain asyncio programs outside the runtime, is ``dev``: it reaches everything a developer's
program normally reaches (the internet, the LAN, local databases) and still refuses cloud
metadata (link-local), ``0.0.0.0``, multicast, reserved ranges and SMTP on port 25. There is no
"allow everything" preset; write the classes out (``from_config``) if that is what you mean.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar, final

from tcpworkers.egress._classes import AddressClass, classify, classify_range
from tcpworkers.egress._ipnorm import Embedding, IPAddress, embedded_ipv4, normalize
from tcpworkers.egress._localhost import is_localhost_name
from tcpworkers.egress._ports import MAX_PORT, MIN_PORT, is_port
from tcpworkers.egress._rules import (
    _RULE_TYPES,
    ClassRule,
    HostPattern,
    IPNetwork,
    NetworkRule,
    PortRange,
    Rule,
    _quote,
    as_table,
    config_ports,
    config_rules,
    parse_port_range,
    parse_rule,
)

__all__ = [
    "SMTP_PORT",
    "ClassRule",
    "Decision",
    "EgressPolicy",
    "HostPattern",
    "NetworkRule",
    "PortRange",
    "Rule",
    "parse_port_range",
    "parse_rule",
]


# SMTP submission between mail servers (RFC 5321, IANA port 25). Open relays and spam are the
# abuse every hosting platform blocks by default; Cloudflare Workers' connect() refuses port 25.
SMTP_PORT: Final = 25
_MIN_PORT: Final = MIN_PORT
_MAX_PORT: Final = MAX_PORT

# The classes a host pattern may vouch for (semantics, rule 4).
_NAME_ALLOW_CLASSES: Final = frozenset({AddressClass.PUBLIC, AddressClass.PRIVATE})

# --- decisions -----------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class Decision:
    """The verdict on one destination.

    Attributes:
        allowed: whether the policy permits the connection.
        reason: one human-readable sentence naming the rule that decided.
        address_class: the class of the address the traffic ends up at (for an IPv6 address
            that embeds an IPv4 address, the IPv4 address's class).
        address: the normalised address that was decided.
        port: the port that was decided.
        host: the normalised requested host (a name, or the IP literal that was asked for).
        rule: the rule that decided: the allow rule that permitted the address, or the deny
            rule / ``deny_ports`` range that refused it; ``None`` when nothing allowed the
            address (default deny), the port is missing from ``allow_ports``, or it is port 25.
    """

    allowed: bool
    reason: str
    address_class: AddressClass
    address: IPAddress
    port: int
    host: str
    rule: Rule | PortRange | None = None

    def __str__(self) -> str:
        return self.reason


@dataclass(frozen=True, slots=True)
class _View:
    """One destination the traffic reaches, with every spelling that CIDR rules may name."""

    spellings: tuple[IPAddress, ...]
    address_class: AddressClass
    label: str


def _views(address: IPAddress) -> tuple[_View, ...]:
    embedded = embedded_ipv4(address)
    if embedded is None:
        return (_View((address,), classify_range(address), str(address)),)
    kind, ipv4 = embedded
    ipv4_class = classify_range(ipv4)
    if kind in (Embedding.MAPPED, Embedding.COMPATIBLE):
        # The same host written as IPv6: one view, the IPv4 host's class (rule 6).
        return (_View((ipv4, address), ipv4_class, f"{ipv4} (written as {address})"),)
    return (
        _View((address,), classify_range(address), f"{address} ({kind.value} address)"),
        _View((ipv4,), ipv4_class, f"{ipv4} (reached via {kind.value} address {address})"),
    )


_LOOPBACK: Final = ipaddress.IPv4Address("127.0.0.1")

_Endpoint = TypeVar("_Endpoint", bound=tuple[IPAddress | str, int] | tuple[str, int, int, int])


@final
@dataclass(frozen=True, slots=True)
class EgressPolicy:
    """Allow/deny rules and port lists deciding which destinations a worker may connect to.

    The decision semantics are in the module docstring of ``tcpworkers.egress._policy``; in
    short, deny wins, nothing is allowed unless a rule allows it, and port 25 is refused unless
    ``allow_ports`` names it. Build one with a preset (:meth:`dev`, :meth:`serve`), from a
    config table (:meth:`from_config`), or directly from rule objects.

    Attributes:
        allow: rules that allow addresses (classes, networks) or requested names (patterns).
        deny: rules that refuse; a match here wins over every allow rule.
        allow_ports: when not empty, the complete list of permitted ports.
        deny_ports: ports that are always refused.
        name: shown in decision reasons ("the 'serve' policy ...").
    """

    allow: tuple[Rule, ...] = ()
    deny: tuple[Rule, ...] = ()
    allow_ports: tuple[PortRange, ...] = ()
    deny_ports: tuple[PortRange, ...] = ()
    name: str = "custom"

    def __post_init__(self) -> None:
        # Accept any iterable (lists from callers) but store tuples so the policy stays
        # immutable and hashable.
        for field_name, types in (
            ("allow", _RULE_TYPES),
            ("deny", _RULE_TYPES),
            ("allow_ports", (PortRange,)),
            ("deny_ports", (PortRange,)),
        ):
            items = tuple(getattr(self, field_name))
            for item in items:
                if not isinstance(item, types):
                    raise TypeError(
                        f"EgressPolicy.{field_name} items must be "
                        f"{' or '.join(t.__name__ for t in types)}, not {type(item).__name__}; "
                        "use EgressPolicy.from_config() to build a policy from strings"
                    )
            object.__setattr__(self, field_name, items)
        if not isinstance(self.name, str):
            raise TypeError(f"EgressPolicy.name must be a str, not {type(self.name).__name__}")

    # --- presets -------------------------------------------------------------------------

    @classmethod
    def dev(cls) -> EgressPolicy:
        """Allow public, private and loopback addresses (``tcpworkers dev``)."""
        return cls(
            allow=(
                ClassRule(AddressClass.PUBLIC),
                ClassRule(AddressClass.PRIVATE),
                ClassRule(AddressClass.LOOPBACK),
            ),
            name="dev",
        )

    @classmethod
    def serve(cls) -> EgressPolicy:
        """Allow public addresses only (``tcpworkers serve`` unless configured otherwise)."""
        return cls(allow=(ClassRule(AddressClass.PUBLIC),), name="serve")

    @classmethod
    def none(cls) -> EgressPolicy:
        """Allow nothing: the base to build an explicit policy on."""
        return cls(name="none")

    @classmethod
    def default(cls) -> EgressPolicy:
        """The policy for plain asyncio programs outside the runtime: the :meth:`dev` preset.

        It reaches the internet, the LAN and local services, and still refuses cloud metadata
        (link-local), ``0.0.0.0``/``::``, multicast, reserved ranges and port 25.
        """
        return cls.dev()

    # --- config --------------------------------------------------------------------------

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, object],
        *,
        key: str = "egress",
        default_preset: str = "dev",
    ) -> EgressPolicy:
        """Build a policy from a config table, validating every value.

        ``{"preset": "serve", "allow": ["10.0.0.0/8", "*.internal"], "deny": ["link-local"],
        "allow_ports": ["5432", "8000-8100"], "deny_ports": []}``: the rules and ports are added
        to those of the preset.

        Args:
            config: the table; every key is optional. ``preset`` is ``"dev"``, ``"serve"`` or
                ``"none"``; ``allow``/``deny`` are lists of rules (see :func:`parse_rule`);
                ``allow_ports``/``deny_ports`` are lists of ports or ``"first-last"`` ranges.
            key: where the table lives in the config file, used to prefix error messages
                (``egress.allow[1]: ...``).
            default_preset: the preset when ``config`` has no ``preset`` key.

        Returns:
            The validated policy.

        Raises:
            ValueError: a key is unknown or a value is invalid; the message names the key, the
                bad value and what is expected.
        """
        config = as_table(config, key)
        preset_name = config.get("preset", default_preset)
        if not isinstance(preset_name, str) or preset_name not in _PRESETS:
            raise ValueError(
                f"{key}.preset: {_quote(preset_name)} is not a preset; "
                f"expected one of {', '.join(_quote(name) for name in _PRESETS)}"
            )
        base = _PRESETS[preset_name]()
        return cls(
            allow=base.allow + config_rules(config, "allow", key),
            deny=base.deny + config_rules(config, "deny", key),
            allow_ports=base.allow_ports + config_ports(config, "allow_ports", key),
            deny_ports=base.deny_ports + config_ports(config, "deny_ports", key),
            name=base.name,
        )

    # --- decisions -----------------------------------------------------------------------

    def decide(self, host: str, ip: IPAddress | str, port: int) -> Decision:
        """Decide whether a connection to ``ip:port``, asked for as ``host``, is permitted.

        Args:
            host: the host the user asked for (a name or an IP literal, any spelling); host
                patterns match against it.
            ip: the address to connect to (after DNS resolution), as an address object or text
                in any spelling.
            port: the TCP port.

        Returns:
            The decision, with a reason naming the rule that decided.

        Raises:
            TypeError: an argument has the wrong type.
            ValueError: ``host`` is not a valid host, ``ip`` is not an IP address, or ``port``
                is not 1-65535.
        """
        return self._decide(normalize(host), _address(ip), _port(port))

    def filter(
        self, host: str, addresses: Iterable[_Endpoint]
    ) -> tuple[list[_Endpoint], list[Decision]]:
        """Split resolved addresses into the permitted ones and the refusals.

        Args:
            host: the host the user asked for (see :meth:`decide`).
            addresses: ``(ip, port)`` pairs, or the ``sockaddr`` tuples ``getaddrinfo``
                returns (``(ip, port)`` or ``(ip, port, flowinfo, scope_id)``).

        Returns:
            ``(permitted, denied)``: the permitted items unchanged and in their original order
            (so the caller connects exactly to what was checked), and one :class:`Decision`
            per refused item.

        Raises:
            TypeError: an argument has the wrong type.
            ValueError: ``host`` is not a valid host, or an item is not an IP address and a
                port 1-65535.
        """
        requested = normalize(host)
        permitted: list[_Endpoint] = []
        denied: list[Decision] = []
        for endpoint in addresses:
            decision = self._decide(requested, _address(endpoint[0]), _port(endpoint[1]))
            if decision.allowed:
                permitted.append(endpoint)
            else:
                denied.append(decision)
        return permitted, denied

    def decide_unix(self, path: str) -> Decision:
        """Decide on a Unix-domain socket connection to ``path``.

        A Unix socket reaches a service on this machine, so it is permitted exactly when the
        loopback address is: by a class or CIDR rule covering 127.0.0.1 and no deny rule. Ports
        and host patterns do not apply (there is neither a port nor a name).
        """
        if not isinstance(path, str):
            raise TypeError(f"path must be a str, not {type(path).__name__}")
        address = _LOOPBACK
        verdict = _Verdict(address, address, 0, lead=f"unix socket {path}: ")
        views = _views(address)
        refusal = self._check_denied(views)
        if refusal is not None:
            return verdict.deny(*refusal)
        rule = self._allowing_rule(views[0], None)
        if rule is None:
            return verdict.deny(
                f"Unix sockets count as loopback, which the '{self.name}' policy does not allow",
                None,
            )
        return verdict.allow(
            f"Unix sockets count as loopback; {_allowed_by(rule, views[0], self.name)}", rule
        )

    def _decide(self, requested: IPAddress | str, address: IPAddress, port: int) -> Decision:
        name = requested if isinstance(requested, str) else None
        # Reasons about a resolved address say which name it came from: "db.internal: ...".
        verdict = _Verdict(requested, address, port, lead=f"{name}: " if name else "")
        port_refusal = self._check_port(port)
        if port_refusal is not None:
            return verdict.deny(*port_refusal)
        pattern = _matching_pattern(self.deny, name)
        if pattern is not None:
            reason = f"{name} matches deny pattern '{pattern}' of the '{self.name}' policy"
            return verdict.deny(reason, pattern, lead=False)
        views = _views(address)
        if (
            name is not None
            and is_localhost_name(name)
            and views[-1].address_class is not (AddressClass.LOOPBACK)
        ):
            reason = (
                f"{name} is a localhost name, which always means this machine (RFC 6761 6.3), "
                f"but it was paired with {views[-1].label}, which is {views[-1].address_class}"
            )
            return verdict.deny(reason, None, lead=False)
        deny_refusal = self._check_denied(views)
        if deny_refusal is not None:
            return verdict.deny(*deny_refusal)
        reasons: list[str] = []
        deciding: Rule | None = None
        for view in views:
            rule = self._allowing_rule(view, name)
            if rule is None:
                return verdict.deny(self._not_allowed(view, name), None)
            reasons.append(_allowed_by(rule, view, self.name))
            deciding = rule
        return verdict.allow("; ".join(reasons), deciding)

    def fix(self, decision: Decision) -> tuple[str, str] | None:
        """What change to the policy's config table would permit a refused destination.

        Args:
            decision: a refusal this policy made.

        Returns:
            ``("add", 'allow = ["127.0.0.1/32"]')`` (a line to add, merged with any list of
            that name already there), ``("remove", 'deny entry "10.9.0.0/16"')`` (a deny rule
            or range that refused it: deny wins, so nothing added to allow would help), or
            ``None`` when no config change can permit it (a localhost name paired with a
            non-loopback address).
        """
        if decision.allowed:
            return None
        if self._check_port(decision.port) is not None:
            if isinstance(decision.rule, PortRange):
                return "remove", f'deny_ports entry "{decision.rule}"'
            return "add", f'allow_ports = ["{decision.port}"]'
        if isinstance(decision.rule, ClassRule | NetworkRule | HostPattern):
            return "remove", f'deny entry "{decision.rule}"'
        if is_localhost_name(decision.host) and decision.address_class is not (
            AddressClass.LOOPBACK
        ):
            return None
        bits = 32 if decision.address.version == 4 else 128
        return "add", f'allow = ["{decision.address}/{bits}"]'

    def _check_port(self, port: int) -> tuple[str, PortRange | None] | None:
        for ports in self.deny_ports:
            if port in ports:
                return f"port {port} is in deny_ports ({ports}) of the '{self.name}' policy", ports
        if self.allow_ports:
            if not any(port in ports for ports in self.allow_ports):
                listed = ", ".join(str(ports) for ports in self.allow_ports)
                return (
                    f"port {port} is not in allow_ports ({listed}) of the '{self.name}' policy",
                    None,
                )
        elif port == SMTP_PORT:
            return (
                f"port {SMTP_PORT} (SMTP) is refused by default; add {SMTP_PORT} to allow_ports "
                f"of the '{self.name}' policy to permit it",
                None,
            )
        return None

    def _check_denied(self, views: tuple[_View, ...]) -> tuple[str, Rule] | None:
        for view in views:
            subject = view.label
            for rule in self.deny:
                if isinstance(rule, ClassRule) and rule.address_class is view.address_class:
                    return (
                        f"{subject} is {view.address_class}, which the '{self.name}' policy denies",
                        rule,
                    )
                if isinstance(rule, NetworkRule) and _in_network(view, rule.network):
                    return f"{subject} is in {rule}, which the '{self.name}' policy denies", rule
        return None

    def _allowing_rule(self, view: _View, name: str | None) -> Rule | None:
        # Most specific explanation first: a CIDR, then a host pattern, then a class.
        for rule in self.allow:
            if isinstance(rule, NetworkRule) and _in_network(view, rule.network):
                return rule
        if view.address_class in _NAME_ALLOW_CLASSES:
            pattern = _matching_pattern(self.allow, name)
            if pattern is not None:
                return pattern
        for rule in self.allow:
            if isinstance(rule, ClassRule) and rule.address_class is view.address_class:
                return rule
        return None

    def _not_allowed(self, view: _View, name: str | None) -> str:
        text = (
            f"{view.label} is {view.address_class}, which the '{self.name}' policy does not allow"
        )
        pattern = _matching_pattern(self.allow, name)
        if pattern is not None:
            text += (
                f" (allow pattern '{pattern}' covers only public and private addresses; "
                f"allow '{view.address_class}' or a CIDR to reach it)"
            )
        return text


_PRESETS: Final = {"dev": EgressPolicy.dev, "serve": EgressPolicy.serve, "none": EgressPolicy.none}


@dataclass(frozen=True, slots=True)
class _Verdict:
    """Builds the Decision for one destination (keeps _decide free of repetition)."""

    requested: IPAddress | str
    address: IPAddress
    port: int
    lead: str

    def allow(self, reason: str, rule: Rule | None) -> Decision:
        return self._decision(allowed=True, reason=self.lead + reason, rule=rule)

    def deny(self, reason: str, rule: Rule | PortRange | None, *, lead: bool = True) -> Decision:
        reason = self.lead + reason if lead else reason
        return self._decision(allowed=False, reason=reason, rule=rule)

    def _decision(self, *, allowed: bool, reason: str, rule: Rule | PortRange | None) -> Decision:
        return Decision(
            allowed=allowed,
            reason=reason,
            address_class=classify(self.address),
            address=self.address,
            port=self.port,
            host=str(self.requested),
            rule=rule,
        )


def _matching_pattern(rules: tuple[Rule, ...], name: str | None) -> HostPattern | None:
    if name is None:
        return None
    for rule in rules:
        if isinstance(rule, HostPattern) and rule.matches(name):
            return rule
    return None


def _allowed_by(rule: Rule, view: _View, policy: str) -> str:
    subject = view.label
    if isinstance(rule, NetworkRule):
        return f"{subject} is in {rule}, which the '{policy}' policy allows"
    if isinstance(rule, HostPattern):
        return (
            f"{subject} is {view.address_class} and matches allow pattern '{rule}' of the "
            f"'{policy}' policy"
        )
    return f"{subject} is {view.address_class}, which the '{policy}' policy allows"


def _in_network(view: _View, network: IPNetwork) -> bool:
    # Membership is False across IP versions, so an IPv4 CIDR matches the IPv4 spelling of a
    # mapped address and an IPv6 CIDR its IPv6 spelling.
    return any(spelling in network for spelling in view.spellings)


def _address(ip: IPAddress | str) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        # An address object with a zone: decide on the address, as normalize() does for text.
        return ipaddress.IPv6Address(int(ip))
    if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return ip
    if not isinstance(ip, str):
        raise TypeError(f"ip must be an IP address or a str, not {type(ip).__name__}")
    address = normalize(ip)
    if isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return address
    raise ValueError(f"ip must be an IP address, not the host name {_quote(ip)}")


def _port(port: int) -> int:
    if isinstance(port, bool) or not isinstance(port, int):
        raise TypeError(f"port must be an int, not {type(port).__name__}")
    if not is_port(port):
        raise ValueError(f"port must be {_MIN_PORT}-{_MAX_PORT}, got {port}")
    return port
