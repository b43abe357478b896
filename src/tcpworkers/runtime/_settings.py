"""What the runtime needs to serve a worker, resolved once (from tcpworkers.toml + CLI flags).

``RuntimeSettings`` is the contract between the configuration/CLI layer (which builds it and
validates every value, naming file and key in its errors) and the ASGI application (which only
reads it). Nothing here parses files or touches the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal, NamedTuple, Protocol, final

from tcpworkers.egress import EgressPolicy
from tcpworkers.scope import DEFAULT_MAX_SOCKETS, DEFAULT_SLOT_TIMEOUT, ScopeStats

__all__ = ["Limits", "Mode", "RequestObserver", "RequestRecord", "RuntimeSettings", "VarValue"]

Mode = Literal["dev", "serve"]

# The front door's bounds (see runtime/_frontdoor.py). 64 KiB of request line + headers is
# above what browsers send with large cookies (a few KiB to ~16 KiB) and below what a flood can
# use (nginx allows 4 x 8 KiB, Node.js 16 KiB); 100 headers is Apache's LimitRequestFields;
# 10 s for a head is generous for a real client on a slow link (nginx: 60 s, for a line at a
# time); 1000 connections per process, each request with up to 6 sockets of its own, wants a
# file descriptor limit of several thousand (`ulimit -n`; raise both together).
DEFAULT_MAX_HEADER_SIZE: Final = 64 * 1024
# Every request ends: 30 s to respond and 30 s more for its ctx.wait_until work (Cloudflare
# Workers gives waitUntil 30 s after the response too). Without a default, one
# wait_until(asyncio.sleep(10**6)) kept its request, and its memory, forever.
DEFAULT_WALL_TIME: Final = 30.0
DEFAULT_WAIT_UNTIL_TIME: Final = 30.0
DEFAULT_MAX_HEADERS: Final = 100
DEFAULT_HEADER_TIMEOUT: Final = 10.0
DEFAULT_MAX_CONNECTIONS: Final = 1000
VarValue = str | int | float | bool


@final
@dataclass(frozen=True, slots=True)
class Limits:
    """Per-request limits.

    Attributes:
        max_sockets: simultaneous open connections per request; more wait for a slot.
        slot_timeout: seconds a connection may wait for a slot before failing.
        wall_time: seconds a request may take to respond, from the start of the handler until
            the response is fully sent (504 if nothing was sent yet, else the response is
            aborted); ``None`` for no limit.
        wait_until_time: seconds ``ctx.wait_until`` work may run on after the response was
            sent; then it is cancelled; ``None`` for no limit.
        max_header_size: bytes a request line and its headers may take together; more is
            answered 431 (the front door, per connection).
        max_headers: header lines a request may have; more is answered 431.
        header_timeout: seconds a client has to send a complete request head, counted from
            the connection's start or the request's first byte; then 408 and the connection
            closes.
        max_connections: connections one server process holds open at once; more are
            answered 503 and closed.
    """

    max_sockets: int = DEFAULT_MAX_SOCKETS
    slot_timeout: float = DEFAULT_SLOT_TIMEOUT
    wall_time: float | None = DEFAULT_WALL_TIME
    wait_until_time: float | None = DEFAULT_WAIT_UNTIL_TIME
    max_header_size: int = DEFAULT_MAX_HEADER_SIZE
    max_headers: int = DEFAULT_MAX_HEADERS
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS


@final
@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """Everything the runtime reads while serving; built by the config layer.

    Attributes:
        mode: ``"dev"`` (tracebacks in 500 responses, readable logs) or ``"serve"``.
        policy: the egress policy for every request.
        limits: per-request limits.
        vars: plain configuration values, exposed on ``env``.
        secrets: secret values (already read from the environment), exposed on ``env`` and
            never logged.
        metrics_path: where Prometheus metrics are served, or ``None`` for nowhere.
    """

    mode: Mode = "dev"
    policy: EgressPolicy = field(default_factory=EgressPolicy.dev)
    limits: Limits = field(default_factory=Limits)
    vars: Mapping[str, VarValue] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)  # never printed
    metrics_path: str | None = "/__tcpworkers/metrics"


@final
class RequestRecord(NamedTuple):
    """What happened in one request, reported to every ``RequestObserver`` when it ends.

    Immutable (a named tuple: one is built per request, and a frozen dataclass cost about
    10,000 instructions to build, most of a small request's observation).

    Attributes:
        method: the HTTP method.
        path: the request path (without the query string).
        status: the response status sent (500 when the handler failed before responding; 499
            when the client went away before the response was complete).
        duration: seconds from request start to the end of its scope.
        stats: the request scope's statistics (sockets, bytes, connect time).
        error: the handler's exception, if it raised.
    """

    method: str
    path: str
    status: int
    duration: float
    stats: ScopeStats
    error: BaseException | None = None


class RequestObserver(Protocol):
    """Told about every finished request (logging, metrics). Must not raise or block.

    An observer may also have ``watch_requests(source)``: ``WorkerApp`` then calls it once with
    a function returning the ``RequestScope`` of every request in flight (the metrics'
    open-sockets gauge). Else, if it has ``request_started(scope)``, ``WorkerApp`` calls that
    with the request's ``RequestScope`` when each request starts.
    """

    def request_finished(self, record: RequestRecord) -> None: ...
