"""The pool's typed input (:class:`PoolSettings`) and output (:class:`PoolStats`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["WAIT_BOUNDS", "PoolSettings", "PoolStats"]

# Acquire waits in seconds: 100 us .. 10 s, then +Inf.
WAIT_BOUNDS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0)


@dataclass(frozen=True, slots=True)
class PoolSettings:
    """Sizes and timeouts of one binding's pool, per process (seconds)."""

    min_size: int = 1
    max_size: int = 10
    idle_timeout: float = 300.0
    max_lifetime: float = 3600.0
    acquire_timeout: float = 10.0
    # False: keep no statements on server connections; every statement a client prepares is
    # re-prepared unnamed in the transaction that uses it. For an upstream that does not keep
    # one backend per connection between transactions: PgBouncer in transaction mode.
    prepared_statements: bool = True

    def __post_init__(self) -> None:
        if not 0 <= self.min_size <= self.max_size or self.max_size < 1:
            raise ValueError(
                f"pool sizes need 0 <= min_size <= max_size and max_size >= 1, "
                f"got min_size={self.min_size} max_size={self.max_size}"
            )
        for name in ("idle_timeout", "max_lifetime", "acquire_timeout"):
            if getattr(self, name) <= 0:
                raise ValueError(f"pool {name} must be > 0 seconds, got {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of one pool's gauges and counters."""

    name: str
    min_size: int
    max_size: int
    idle: int
    active: int
    pinned: int
    resetting: int
    opening: int
    waiting: int
    clients: int
    opened: int
    connect_failures: int
    closed: Mapping[str, int]  # by reason
    acquires: int
    acquire_timeouts: int
    acquire_wait_bounds: tuple[float, ...]
    acquire_wait_counts: tuple[int, ...]  # per bucket, the last one is +Inf (not cumulative)
    acquire_wait_sum: float
    parse_saved: int  # client Parses answered locally: the statement was on that server already
    parse_forwarded: int
    describe_saved: int  # client Describes of a statement answered from the server's last answer
    resets: int
    pins: Mapping[str, int]  # by reason
