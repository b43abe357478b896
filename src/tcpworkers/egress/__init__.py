"""Egress policy: which destinations a worker may open TCP connections to.

Pure, sans-IO decisions (no asyncio, no sockets, no DNS): normalising every spelling of an
address (:func:`normalize`), classifying it (:func:`classify`), and deciding on resolved
addresses (:class:`EgressPolicy`). The gate that resolves names and connects lives above this
package and asks it for a :class:`Decision` per resolved address.

The request scope (:class:`RequestScope`, :func:`request_scope`) is the one asyncio part: it owns
the connections opened while handling a request, limits how many are open at once, counts them
and closes what is left when the request ends.
"""

from tcpworkers.egress._classes import AddressClass, classify
from tcpworkers.egress._ipnorm import Embedding, IPAddress, embedded_ipv4, normalize, parse_ip
from tcpworkers.egress._policy import (
    SMTP_PORT,
    ClassRule,
    Decision,
    EgressPolicy,
    HostPattern,
    NetworkRule,
    PortRange,
    Rule,
    parse_port_range,
    parse_rule,
)
from tcpworkers.egress._scope import (
    DEFAULT_MAX_SOCKETS,
    DEFAULT_SLOT_TIMEOUT,
    RequestScope,
    ScopedResource,
    ScopeStats,
    check_connections_allowed,
    current_scope,
    default_policy,
    forbid_connections,
    request_scope,
    set_default_policy,
    use_scope,
)

__all__ = [
    "DEFAULT_MAX_SOCKETS",
    "DEFAULT_SLOT_TIMEOUT",
    "RequestScope",
    "ScopeStats",
    "ScopedResource",
    "check_connections_allowed",
    "current_scope",
    "default_policy",
    "forbid_connections",
    "request_scope",
    "set_default_policy",
    "use_scope",
    "SMTP_PORT",
    "AddressClass",
    "ClassRule",
    "Decision",
    "EgressPolicy",
    "Embedding",
    "HostPattern",
    "IPAddress",
    "NetworkRule",
    "PortRange",
    "Rule",
    "classify",
    "embedded_ipv4",
    "normalize",
    "parse_ip",
    "parse_port_range",
    "parse_rule",
]
