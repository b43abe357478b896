"""The gate's decision step: resolve once, keep only the addresses the egress policy permits.

The addresses returned here are the very ones the dialer connects to, so the policy check and
the connection see the same IP and DNS rebinding has no window.
"""

from __future__ import annotations

from tcpworkers.egress import EgressPolicy
from tcpworkers.egress._scope import RequestScope
from tcpworkers.errors import ConnectError, EgressDeniedError
from tcpworkers.sockets._address import format_hostport
from tcpworkers.sockets._dial import Dialer, Target

__all__ = ["permitted_targets"]


async def permitted_targets(
    dialer: Dialer, policy: EgressPolicy, host: str, port: int, scope: RequestScope | None
) -> list[Target]:
    """Resolve ``host`` and return the addresses ``policy`` permits, in resolver order.

    Raises:
        EgressDeniedError: the name resolved, but the policy permits none of its addresses.
        ConnectError: the name has no addresses at all.
        OSError: resolution failed (translated by the caller).
    """
    where = format_hostport(host, port)
    targets = await dialer.resolve(host, port)
    if not targets:
        raise ConnectError(f"could not connect to {where}: the name has no addresses")
    permitted: list[Target] = []
    first_refusal = None
    for target in targets:
        decision = policy.decide(host, target.ip, port)
        if decision.allowed:
            permitted.append(target)
        elif first_refusal is None:
            first_refusal = decision
    if permitted:
        return permitted
    if scope is not None:
        scope.record_denial()
    assert first_refusal is not None
    raise EgressDeniedError(
        f"could not connect to {where}: denied by the egress policy ({first_refusal.reason}); "
        "if this destination is intended, add an allow rule for it to the egress policy"
    )
