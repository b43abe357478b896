"""The gate's decision step: resolve once, keep only the addresses the egress policy permits.

The addresses returned here are the very ones the dialer connects to, so the policy check and
the connection see the same IP and DNS rebinding has no window.
"""

from __future__ import annotations

import socket
from typing import Final

from tcpworkers.egress import Decision, EgressPolicy
from tcpworkers.egress._localhost import is_localhost_name, localhost_addresses
from tcpworkers.errors import ConnectError, EgressDeniedError
from tcpworkers.scope import RequestScope
from tcpworkers.sockets._address import format_hostport
from tcpworkers.sockets._dial import (
    Dialer,
    Target,
    _dialer,
    literal_target,
    system_connect,
    system_resolve,
)

__all__ = [
    "decide",
    "denial_advice",
    "permitted_targets",
    "remembered_target",
    "remembered_targets",
]

# Decisions are pure functions of (policy, host, ip, port) and cost ~13 us each (normalising
# spellings, walking the class tables); a worker talks to the same few destinations over and
# over, so a small bounded cache makes the check nearly free. The policy is kept in the entry
# and compared by identity, so a recycled id() can never return another policy's decision.
_DECISION_CACHE_SIZE: Final = 1024
_decisions: dict[tuple[int, str, str, int], tuple[EgressPolicy, Decision]] = {}


def decide(policy: EgressPolicy, host: str, ip: str, port: int) -> Decision:
    """``policy.decide(host, ip, port)``, remembered (see ``_DECISION_CACHE_SIZE``)."""
    key = (id(policy), host, ip, port)
    entry = _decisions.get(key)
    if entry is not None and entry[0] is policy:
        return entry[1]
    decision = policy.decide(host, ip, port)
    if len(_decisions) >= _DECISION_CACHE_SIZE:
        del _decisions[next(iter(_decisions))]  # drop the oldest entry
    _decisions[key] = (policy, decision)
    return decision


# A host that needs no resolver (an IP literal, with the system resolver; a localhost name) has
# the same permitted addresses every time under one policy: what the gate permitted is
# remembered too, keyed and checked like the decisions. Denials are not: they are rare, and each
# must be counted and explained.
_fixed: dict[tuple[int, str, int], tuple[EgressPolicy, tuple[Target, ...]]] = {}


def remembered_targets(policy: EgressPolicy, host: str, port: int) -> list[Target] | None:
    """What :func:`permitted_targets` with the system resolver permitted before for a host that
    needs no resolver, or ``None`` (ask it). Synchronous: the common case costs no coroutine."""
    entry = _fixed.get((id(policy), host, port))
    if entry is not None and entry[0] is policy:
        return list(entry[1])
    return None


def remembered_target(
    policy: EgressPolicy, host: str, port: int, *, dials: bool = False
) -> Target | None:
    """The one address :func:`remembered_targets` holds for ``host``, when the current dialer
    resolves with the system resolver (and, with ``dials``, connects with the system connector:
    the caller then has its loop dial the address itself, as ``open_gated`` does); else
    ``None`` (ask :func:`permitted_targets`, or ``open_gated``).

    With one address, a family filter keeps it whatever its family (the filters fall back to
    every address), so the caller needs no list at all. For the gated loop's per-connection
    path: one call (the dialer's context variable read here) and no coroutine.
    """
    dialer = _dialer.get()
    if dialer.resolve is not system_resolve or (dials and dialer.connect is not system_connect):
        return None
    entry = _fixed.get((id(policy), host, port))
    if entry is not None and entry[0] is policy and len(entry[1]) == 1:
        return entry[1][0]
    return None


async def permitted_targets(
    dialer: Dialer, policy: EgressPolicy, host: str, port: int, scope: RequestScope | None
) -> list[Target]:
    """Resolve ``host`` and return the addresses ``policy`` permits, in resolver order.

    Raises:
        EgressDeniedError: the name resolved, but the policy permits none of its addresses.
        ConnectError: the name has no addresses at all.
        OSError: resolution failed (translated by the caller).
    """
    system = dialer.resolve is system_resolve
    if system:
        known = remembered_targets(policy, host, port)
        if known is not None:
            return known
    fixed = True
    if is_localhost_name(host):
        # RFC 6761 6.3: this machine, by name; no resolver is asked (nor can it redirect it).
        targets = [_loopback_target(ip, port) for ip in localhost_addresses()]
    else:
        literal = literal_target(host, port) if system else None
        if literal is not None:
            targets = [literal]
        else:
            fixed = False
            targets = await dialer.resolve(host, port)
    if not targets:
        where = format_hostport(host, port)
        raise ConnectError(f"could not connect to {where}: the name has no addresses")
    permitted: list[Target] = []
    first_refusal = None
    for target in targets:
        decision = decide(policy, host, target.ip, port)
        if decision.allowed:
            permitted.append(target)
        elif first_refusal is None:
            first_refusal = decision
    if permitted:
        if fixed and system:
            if len(_fixed) >= _DECISION_CACHE_SIZE:
                del _fixed[next(iter(_fixed))]  # drop the oldest entry
            _fixed[(id(policy), host, port)] = (policy, tuple(permitted))
        return permitted
    if scope is not None:
        scope.record_denial()
    assert first_refusal is not None
    where = format_hostport(host, port)
    raise EgressDeniedError(
        f"could not connect to {where}: denied by the egress policy ({first_refusal.reason})"
        + denial_advice(policy, first_refusal, in_request=scope is not None)
    )


def denial_advice(policy: EgressPolicy, decision: Decision, *, in_request: bool) -> str:
    """The end of a denial message: the exact config change that would permit it.

    In a request (the runtime) it is the line for ``[egress]`` in ``tcpworkers.toml``; outside
    one, the same rule for the process-wide default policy.
    """
    fix = policy.fix(decision)
    if fix is None:
        return ""
    action, text = fix
    if action == "remove":
        return (
            f"; if this destination is intended, remove the {text} from the policy "
            "([egress] in tcpworkers.toml)"
        )
    if in_request:
        return f"; if this destination is intended, add under [egress] in tcpworkers.toml: {text}"
    name, _, value = text.partition(" = ")
    return (
        f"; if this destination is intended, allow it: {text} under [egress] in "
        f'tcpworkers.toml when tcpworkers serves the code, or EgressPolicy.from_config({{"{name}": '
        f"{value}}}) given to tcpworkers.egress.set_default_policy() in a plain asyncio program"
    )


def _loopback_target(ip: str, port: int) -> Target:
    if ":" in ip:
        return Target(socket.AF_INET6, (ip, port, 0, 0))
    return Target(socket.AF_INET, (ip, port))
