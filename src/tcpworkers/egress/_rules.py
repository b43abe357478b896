"""Egress rules and their parsing: address classes, networks, host patterns, port ranges, and
the ``[egress]`` config table they come from. Sans-IO, like the rest of ``tcpworkers.egress``;
the decisions over them are ``_policy.py``.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias, TypeVar, final

from tcpworkers.egress._classes import AddressClass
from tcpworkers.egress._ipnorm import normalize
from tcpworkers.egress._localhost import is_localhost_name
from tcpworkers.egress._ports import MAX_PORT, MIN_PORT

__all__ = [
    "CONFIG_KEYS",
    "ClassRule",
    "HostPattern",
    "IPNetwork",
    "NetworkRule",
    "PortRange",
    "Rule",
    "as_table",
    "config_ports",
    "config_rules",
    "parse_port_range",
    "parse_rule",
]

T = TypeVar("T")

IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network

_MIN_PORT: Final = MIN_PORT
_MAX_PORT: Final = MAX_PORT
CONFIG_KEYS: Final = ("preset", "allow", "deny", "allow_ports", "deny_ports")
_CONFIG_KEYS: Final = CONFIG_KEYS

_CLASS_WORDS: Final[Mapping[str, AddressClass]] = {
    **{address_class.value: address_class for address_class in AddressClass},
    "link_local": AddressClass.LINK_LOCAL,
}
_CLASS_LIST: Final = ", ".join(address_class.value for address_class in AddressClass)
_RULE_KINDS: Final = f"CIDR, IP address, address class ({_CLASS_LIST}) or host pattern"
_RULE_EXAMPLES: Final = 'e.g. "10.0.0.0/8", "private", "db.internal" or "*.internal"'
_PORT_EXPECTED: Final = (
    f'expected a port {_MIN_PORT}-{_MAX_PORT} such as "5432" or a range such as "8000-8100"'
)
_PORT_RANGE_RE: Final = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
_PREFIX_RE: Final = re.compile(r"[0-9]{1,3}")


def _quote(value: object) -> str:
    # JSON quoting shows stray spaces and control characters in error messages.
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


# --- rules ---------------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class ClassRule:
    """A rule that matches every address of one class (``"private"``, ``"link-local"``...)."""

    address_class: AddressClass

    def __str__(self) -> str:
        return self.address_class.value


@final
@dataclass(frozen=True, slots=True)
class NetworkRule:
    """A rule that matches the addresses inside one network (a single IP is a /32 or /128)."""

    network: IPNetwork

    def __str__(self) -> str:
        return str(self.network)


@final
@dataclass(frozen=True, slots=True)
class HostPattern:
    """A rule that matches the requested host name: exact, or ``*.suffix``.

    ``*`` stands for one or more whole labels, and only as the first label: ``*.internal``
    matches ``db.internal`` and ``a.b.internal`` but not ``internal``. A lone ``*`` matches
    every name (and never an IP literal).
    """

    suffix: str
    wildcard: bool = False

    def matches(self, name: str) -> bool:
        """Return whether ``name`` (already normalised) matches this pattern."""
        if not self.wildcard:
            return name == self.suffix
        if not self.suffix:
            return bool(name)
        return name.endswith("." + self.suffix)

    def __str__(self) -> str:
        if not self.wildcard:
            return self.suffix
        return f"*.{self.suffix}" if self.suffix else "*"


Rule: TypeAlias = ClassRule | NetworkRule | HostPattern
_RULE_TYPES: Final = (ClassRule, NetworkRule, HostPattern)


@final
@dataclass(frozen=True, slots=True)
class PortRange:
    """An inclusive range of TCP ports; a single port is ``PortRange(p, p)``."""

    first: int
    last: int

    def __post_init__(self) -> None:
        for bound in (self.first, self.last):
            if isinstance(bound, bool) or not isinstance(bound, int):
                raise TypeError(f"port must be an int, not {type(bound).__name__}")
        if not _MIN_PORT <= self.first <= self.last <= _MAX_PORT:
            raise ValueError(
                f"port range {self.first}-{self.last} must satisfy "
                f"{_MIN_PORT} <= first <= last <= {_MAX_PORT}"
            )

    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and self.first <= port <= self.last

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


def parse_rule(text: str) -> Rule:
    """Parse one allow/deny rule.

    Args:
        text: an address class (``"public"``, ``"private"``, ``"loopback"``, ``"link-local"``,
            ``"unspecified"``, ``"multicast"``, ``"reserved"``), a CIDR (``"10.1.0.0/16"``), an
            IP address in any spelling (``"169.254.169.254"``), or a host pattern
            (``"db.internal"``, ``"*.internal"``). Class words win over host names.

    Returns:
        A :class:`ClassRule`, :class:`NetworkRule` or :class:`HostPattern`.

    Raises:
        TypeError: ``text`` is not a ``str``.
        ValueError: ``text`` is none of the above; the message says why and what is expected.
    """
    if not isinstance(text, str):
        raise TypeError(
            f"{_quote(text)} is not a string; expected a {_RULE_KINDS}, {_RULE_EXAMPLES}"
        )
    word = text.strip()
    if word.lower() in _CLASS_WORDS:
        return ClassRule(_CLASS_WORDS[word.lower()])
    if "/" in word:
        return NetworkRule(_parse_cidr(word, text))
    if "*" in word:
        return _parse_wildcard(word, text)
    try:
        host = normalize(word)
    except ValueError as exc:
        raise _rule_error(text, str(exc)) from None
    if isinstance(host, str):
        return HostPattern(host)
    return NetworkRule(ipaddress.ip_network(host))


def _parse_cidr(word: str, text: str) -> IPNetwork:
    address_text, _, prefix_text = word.partition("/")
    try:
        address = normalize(address_text)
    except ValueError:
        address = None
    if not isinstance(address, ipaddress.IPv4Address | ipaddress.IPv6Address):
        raise _rule_error(text, f"{_quote(address_text)} before the '/' is not an IP address")
    max_prefix = address.max_prefixlen
    if not _PREFIX_RE.fullmatch(prefix_text) or int(prefix_text) > max_prefix:
        raise _rule_error(
            text, f"the prefix length must be 0-{max_prefix} for an IPv{address.version} network"
        )
    prefix = int(prefix_text)
    try:
        return ipaddress.ip_network((address, prefix))
    except ValueError:
        suggestion = ipaddress.ip_network((address, prefix), strict=False)
        raise _rule_error(
            text, f'it has host bits set (did you mean "{suggestion}"?)', examples=False
        ) from None


def _parse_wildcard(word: str, text: str) -> HostPattern:
    if word == "*":
        return HostPattern("", wildcard=True)
    rest = word[2:]
    if not word.startswith("*.") or "*" in rest:
        raise _rule_error(text, "'*' may only be the whole first label, as in \"*.internal\"")
    try:
        suffix = normalize(rest)
    except ValueError as exc:
        raise _rule_error(text, str(exc)) from None
    if not isinstance(suffix, str):
        raise _rule_error(text, "a wildcard pattern must end in a host name, not an IP address")
    return HostPattern(suffix, wildcard=True)


def _rule_error(text: str, detail: str, *, examples: bool = True) -> ValueError:
    message = f"{_quote(text)} is not a valid {_RULE_KINDS}: {detail}"
    return ValueError(f"{message}; {_RULE_EXAMPLES}" if examples else message)


def parse_port_range(value: str | int) -> PortRange:
    """Parse one ``allow_ports``/``deny_ports`` entry.

    Args:
        value: a port (``5432`` or ``"5432"``) or an inclusive range (``"8000-8100"``).

    Returns:
        The port range.

    Raises:
        TypeError: ``value`` is neither a ``str`` nor an ``int``.
        ValueError: ``value`` is not a port 1-65535 or a range ``first-last`` of such ports with
            ``first <= last``.
    """
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TypeError(f"{_quote(value)} is not a port or port range; {_PORT_EXPECTED}")
    if isinstance(value, int):
        first = last = value
    else:
        match = _PORT_RANGE_RE.fullmatch(value.strip())
        if match is None:
            raise ValueError(f"{_quote(value)} is not a valid port or port range; {_PORT_EXPECTED}")
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else first
    if not _MIN_PORT <= first <= last <= _MAX_PORT:
        raise ValueError(f"{_quote(value)} is not a valid port or port range; {_PORT_EXPECTED}")
    return PortRange(first, last)


# --- config parsing ------------------------------------------------------------------------
# Every config problem is a ValueError (also a wrong type inside the table), so a config loader
# catches one exception type and reports "file: key: message".


def as_table(config: object, key: str) -> Mapping[str, object]:
    if isinstance(config, Mapping):
        for config_key in config:
            if config_key not in _CONFIG_KEYS:
                close = difflib.get_close_matches(str(config_key), _CONFIG_KEYS, n=1)
                hint = f'; did you mean "{close[0]}"?' if close else ""
                raise ValueError(
                    f"{key}: unknown key {_quote(config_key)}; expected one of "
                    f"{', '.join(_CONFIG_KEYS)}{hint}"
                )
        return config
    raise ValueError(
        f"{key}: expected a table with keys {', '.join(_CONFIG_KEYS)}, got {_quote(config)}"
    )


def _config_list(
    config: Mapping[str, object], field_name: str, where: str, example: str
) -> list[object]:
    value = config.get(field_name, [])
    # A bare string is iterable too; refusing it avoids rules made of single characters.
    if isinstance(value, list | tuple):
        return list(value)
    raise ValueError(f"{where}: expected a list such as {example}, got {_quote(value)}")


def config_rules(config: Mapping[str, object], field_name: str, key: str) -> tuple[Rule, ...]:
    """``config[field_name]`` as rules (``allow``/``deny``); errors name ``key.field[i]``."""
    check = _check_can_allow if field_name == "allow" else None
    return _config_items(
        config, field_name, key, _rule_item, '["10.0.0.0/8", "*.internal"]', check=check
    )


def config_ports(config: Mapping[str, object], field_name: str, key: str) -> tuple[PortRange, ...]:
    """``config[field_name]`` as port ranges (``allow_ports``/``deny_ports``)."""
    return _config_items(config, field_name, key, _port_item, '["5432", "8000-8100"]')


def _config_items(
    config: Mapping[str, object],
    field_name: str,
    key: str,
    parse: Callable[[object], T],
    example: str,
    *,
    check: Callable[[T, object, str], None] | None = None,
) -> tuple[T, ...]:
    where = f"{key}.{field_name}"
    items = _config_list(config, field_name, where, example)
    parsed: list[T] = []
    for index, item in enumerate(items):
        try:
            value = parse(item)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}[{index}]: {exc}") from None
        if check is not None:
            check(value, item, f"{where}[{index}]")
        parsed.append(value)
    return tuple(parsed)


def _check_can_allow(rule: Rule, item: object, where: str) -> None:
    if _never_matches(rule):
        field_name = where.rpartition(".")[2].partition("[")[0]
        raise ValueError(
            f"{where}: {_quote(item)} can never allow anything: it is a host "
            "pattern, host patterns only cover public and private addresses, and a "
            "localhost name always means a loopback address (RFC 6761 6.3). To let workers "
            "reach services on this machine, allow the address or the class instead: "
            f'{field_name} = ["127.0.0.1/32"] or {field_name} = ["loopback"]'
        )


def _never_matches(rule: Rule) -> bool:
    """An allow rule that cannot permit any connection: a pattern for localhost names."""
    return isinstance(rule, HostPattern) and bool(rule.suffix) and is_localhost_name(rule.suffix)


def _rule_item(item: object) -> Rule:
    if not isinstance(item, str):
        raise TypeError(f"{_quote(item)} is not a string; expected a {_RULE_KINDS}")
    return parse_rule(item)


def _port_item(item: object) -> PortRange:
    if isinstance(item, bool) or not isinstance(item, str | int):
        raise TypeError(f"{_quote(item)} is not a port or port range; {_PORT_EXPECTED}")
    return parse_port_range(item)
