"""Egress policy: which destinations a worker may open TCP connections to.

Pure, sans-IO decisions (no asyncio, no sockets, no DNS): normalising every spelling of an
address (:func:`normalize`), classifying it (:func:`classify`), and deciding on resolved
addresses (:class:`EgressPolicy`, whose ``decide()`` returns a :class:`Decision`). The gate that
resolves names and connects lives above this package (``tcpworkers.sockets``), and the request
scope that counts and closes connections is ``tcpworkers.scope``.

The rule types and parsers (``ClassRule``, ``NetworkRule``, ``HostPattern``, ``PortRange``,
``parse_rule``...) are reachable as attributes of a policy's rules; import them from
``tcpworkers.egress._policy`` only in tests.
"""

from tcpworkers.egress._classes import AddressClass, classify
from tcpworkers.egress._default import default_policy, set_default_policy
from tcpworkers.egress._ipnorm import normalize
from tcpworkers.egress._policy import Decision, EgressPolicy

__all__ = [
    "AddressClass",
    "Decision",
    "EgressPolicy",
    "classify",
    "default_policy",
    "normalize",
    "set_default_policy",
]
