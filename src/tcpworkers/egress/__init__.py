"""Egress policy: which destinations a worker may open TCP connections to.

Pure, sans-IO decisions (no asyncio, no sockets, no DNS): normalising every spelling of an
address (:func:`normalize`), classifying it (:func:`classify`), and deciding on resolved
addresses (:class:`EgressPolicy`). The gate that resolves names and connects lives above this
package and asks it for a :class:`Decision` per resolved address.
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

__all__ = [
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
