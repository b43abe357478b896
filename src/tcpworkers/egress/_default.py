"""The process-wide egress policy: what connections made outside any request may reach.

A request scope carries its own policy; code that runs outside every scope (a plain asyncio
program, or work that escaped its request) is decided by this one. Sans-IO: a value and its
setter, nothing else.
"""

from __future__ import annotations

from tcpworkers.egress._policy import EgressPolicy

__all__ = ["default_policy", "set_default_policy"]

_default_policy: list[EgressPolicy] = [EgressPolicy.default()]


def default_policy() -> EgressPolicy:
    """The process-wide policy for connections made outside any request scope."""
    return _default_policy[0]


def set_default_policy(policy: EgressPolicy) -> None:
    """Replace the process-wide policy (plain asyncio programs; the runtime sets per-request
    policies on its scopes instead)."""
    if not isinstance(policy, EgressPolicy):
        raise TypeError(f"policy must be an EgressPolicy, not {type(policy).__name__}")
    _default_policy[0] = policy
