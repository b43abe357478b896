"""Prometheus metrics of the Postgres pool bindings (per process, one label per binding).

- ``tcpworkers_pool_server_connections{binding,state}``: server connections by state
  (``idle``, ``active``, ``pinned``, ``resetting``, ``opening``); ``tcpworkers_pool_max_size``.
- ``tcpworkers_pool_clients{binding}``: client connections to the binding now;
  ``tcpworkers_pool_waiting{binding}``: clients waiting for a server connection now.
- ``tcpworkers_pool_acquire_wait_seconds{binding}``: histogram of the wait for a server
  connection; ``tcpworkers_pool_acquire_timeouts_total``: waits that hit ``acquire_timeout``.
- ``tcpworkers_pool_server_connections_opened_total``, ``..._connect_failures_total`` and
  ``..._closed_total{reason}``: server connections opened, failed to open, closed and why.
- ``tcpworkers_pool_parse_saved_total``: client Parse messages the pool answered itself (the
  statement was already prepared on that server connection: one round trip saved);
  ``tcpworkers_pool_parse_forwarded_total``: those it had to send to the server;
  ``tcpworkers_pool_describe_saved_total``: Describes of such a statement it answered itself.
- ``tcpworkers_pool_resets_total``: server connections reset (DISCARD ALL...) before reuse;
  ``tcpworkers_pool_pins_total{reason}``: connections pinned to one client, by reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from tcpworkers.pool._pool import PoolStats

__all__ = ["render_pool_metrics"]

_STATES: Final = ("idle", "active", "pinned", "resetting", "opening")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    if math.isinf(value):
        return "+Inf"
    return str(int(value)) if value == int(value) else repr(value)


# A family's sample lines for one pool, given the family's name.
_Sampler = Callable[[str, PoolStats], list[str]]


def _one(value: Callable[[PoolStats], float]) -> _Sampler:
    return lambda name, s: [f'{name}{{binding="{_label(s.name)}"}} {_num(value(s))}']


def _by(key: str, values: Callable[[PoolStats], Mapping[str, int]]) -> _Sampler:
    return lambda name, s: [
        f'{name}{{binding="{_label(s.name)}",{key}="{_label(k)}"}} {v}'
        for k, v in sorted(values(s).items())
    ]


def _histogram(name: str, s: PoolStats) -> list[str]:
    binding = _label(s.name)
    lines, running = [], 0
    bounds = (*s.acquire_wait_bounds, math.inf)
    for bound, count in zip(bounds, s.acquire_wait_counts, strict=True):
        running += count
        lines.append(f'{name}_bucket{{binding="{binding}",le="{_num(bound)}"}} {running}')
    lines.append(f'{name}_sum{{binding="{binding}"}} {_num(s.acquire_wait_sum)}')
    lines.append(f'{name}_count{{binding="{binding}"}} {running}')
    return lines


_P: Final = "tcpworkers_pool_"

# (name, type, help, sampler), in output order.
_FAMILIES: Final[tuple[tuple[str, str, str, _Sampler], ...]] = (
    (
        _P + "server_connections",
        "gauge",
        "Server connections by state.",
        _by("state", lambda s: {state: getattr(s, state) for state in _STATES}),
    ),
    (_P + "max_size", "gauge", "The pool's max_size (per process).", _one(lambda s: s.max_size)),
    (_P + "clients", "gauge", "Client connections to the binding now.", _one(lambda s: s.clients)),
    (
        _P + "waiting",
        "gauge",
        "Clients waiting for a server connection now.",
        _one(lambda s: s.waiting),
    ),
    (
        _P + "acquire_wait_seconds",
        "histogram",
        "Time a client waited for a server connection.",
        _histogram,
    ),
    (
        _P + "acquire_timeouts_total",
        "counter",
        "Waits for a server connection that reached acquire_timeout.",
        _one(lambda s: s.acquire_timeouts),
    ),
    (
        _P + "server_connections_opened_total",
        "counter",
        "Server connections opened.",
        _one(lambda s: s.opened),
    ),
    (
        _P + "connect_failures_total",
        "counter",
        "Server connections that failed to open.",
        _one(lambda s: s.connect_failures),
    ),
    (
        _P + "server_connections_closed_total",
        "counter",
        "Server connections closed, by reason.",
        _by("reason", lambda s: s.closed),
    ),
    (
        _P + "parse_saved_total",
        "counter",
        "Client Parse messages answered by the pool (statement already prepared there).",
        _one(lambda s: s.parse_saved),
    ),
    (
        _P + "parse_forwarded_total",
        "counter",
        "Client Parse messages sent on to the server.",
        _one(lambda s: s.parse_forwarded),
    ),
    (
        _P + "describe_saved_total",
        "counter",
        "Client Describe messages of a prepared statement answered by the pool.",
        _one(lambda s: s.describe_saved),
    ),
    (
        _P + "resets_total",
        "counter",
        "Server connections reset before reuse.",
        _one(lambda s: s.resets),
    ),
    (
        _P + "pins_total",
        "counter",
        "Server connections pinned to one client, by reason.",
        _by("reason", lambda s: s.pins),
    ),
)


def render_pool_metrics(all_stats: Iterable[PoolStats]) -> str:
    """The pool families in the Prometheus text format ("" when there are no bindings)."""
    stats = list(all_stats)
    if not stats:
        return ""
    out: list[str] = []
    for name, kind, help_text, sample in _FAMILIES:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for s in stats:
            out.extend(sample(name, s))
    return "\n".join(out) + "\n"
