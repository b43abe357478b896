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
  ``tcpworkers_pool_parse_forwarded_total``: those it had to send to the server.
- ``tcpworkers_pool_resets_total``: server connections reset (DISCARD ALL...) before reuse;
  ``tcpworkers_pool_pins_total{reason}``: connections pinned to one client, by reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
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


def render_pool_metrics(all_stats: Iterable[PoolStats]) -> str:
    """The pool families in the Prometheus text format ("" when there are no bindings)."""
    stats = list(all_stats)
    if not stats:
        return ""
    out: list[str] = []

    def family(
        name: str, kind: str, help_text: str, sample: Callable[[PoolStats], list[str]]
    ) -> None:
        out.append(f"# HELP {name} {help_text}")
        out.append(f"# TYPE {name} {kind}")
        for s in stats:
            out.extend(sample(s))

    def one(name: str, value: Callable[[PoolStats], float]) -> Callable[[PoolStats], list[str]]:
        return lambda s: [f'{name}{{binding="{_label(s.name)}"}} {_num(value(s))}']

    def by(
        name: str, key: str, values: Callable[[PoolStats], dict[str, int]]
    ) -> Callable[[PoolStats], list[str]]:
        return lambda s: [
            f'{name}{{binding="{_label(s.name)}",{key}="{_label(k)}"}} {v}'
            for k, v in sorted(values(s).items())
        ]

    family(
        "tcpworkers_pool_server_connections",
        "gauge",
        "Server connections by state.",
        by(
            "tcpworkers_pool_server_connections",
            "state",
            lambda s: {state: getattr(s, state) for state in _STATES},
        ),
    )
    family(
        "tcpworkers_pool_max_size",
        "gauge",
        "The pool's max_size (per process).",
        one("tcpworkers_pool_max_size", lambda s: s.max_size),
    )
    family(
        "tcpworkers_pool_clients",
        "gauge",
        "Client connections to the binding now.",
        one("tcpworkers_pool_clients", lambda s: s.clients),
    )
    family(
        "tcpworkers_pool_waiting",
        "gauge",
        "Clients waiting for a server connection now.",
        one("tcpworkers_pool_waiting", lambda s: s.waiting),
    )
    family(
        "tcpworkers_pool_acquire_wait_seconds",
        "histogram",
        "Time a client waited for a server connection.",
        _histogram,
    )
    family(
        "tcpworkers_pool_acquire_timeouts_total",
        "counter",
        "Waits for a server connection that reached acquire_timeout.",
        one("tcpworkers_pool_acquire_timeouts_total", lambda s: s.acquire_timeouts),
    )
    family(
        "tcpworkers_pool_server_connections_opened_total",
        "counter",
        "Server connections opened.",
        one("tcpworkers_pool_server_connections_opened_total", lambda s: s.opened),
    )
    family(
        "tcpworkers_pool_connect_failures_total",
        "counter",
        "Server connections that failed to open.",
        one("tcpworkers_pool_connect_failures_total", lambda s: s.connect_failures),
    )
    family(
        "tcpworkers_pool_server_connections_closed_total",
        "counter",
        "Server connections closed, by reason.",
        by("tcpworkers_pool_server_connections_closed_total", "reason", lambda s: dict(s.closed)),
    )
    family(
        "tcpworkers_pool_parse_saved_total",
        "counter",
        "Client Parse messages answered by the pool (statement already prepared there).",
        one("tcpworkers_pool_parse_saved_total", lambda s: s.parse_saved),
    )
    family(
        "tcpworkers_pool_parse_forwarded_total",
        "counter",
        "Client Parse messages sent on to the server.",
        one("tcpworkers_pool_parse_forwarded_total", lambda s: s.parse_forwarded),
    )
    family(
        "tcpworkers_pool_resets_total",
        "counter",
        "Server connections reset before reuse.",
        one("tcpworkers_pool_resets_total", lambda s: s.resets),
    )
    family(
        "tcpworkers_pool_pins_total",
        "counter",
        "Server connections pinned to one client, by reason.",
        by("tcpworkers_pool_pins_total", "reason", lambda s: dict(s.pins)),
    )
    return "\n".join(out) + "\n"


def _histogram(s: PoolStats) -> list[str]:
    name = "tcpworkers_pool_acquire_wait_seconds"
    binding = _label(s.name)
    lines, running = [], 0
    bounds = (*s.acquire_wait_bounds, math.inf)
    for bound, count in zip(bounds, s.acquire_wait_counts, strict=True):
        running += count
        lines.append(f'{name}_bucket{{binding="{binding}",le="{_num(bound)}"}} {running}')
    lines.append(f'{name}_sum{{binding="{binding}"}} {_num(s.acquire_wait_sum)}')
    lines.append(f'{name}_count{{binding="{binding}"}} {running}')
    return lines
