"""Prometheus metrics for one server process, and the ASGI middleware that serves them.

:class:`Metrics` is a ``RequestObserver``: it learns about each request when it ends and
renders the Prometheus text exposition format (version 0.0.4) itself, which is small and
stable enough not to need a client library.

Metrics (all per process: with ``serve --workers N`` each process keeps and serves its own, and
a scrape reaches whichever process accepts it; scrape each process, or run one per container):

- ``tcpworkers_requests_total{method,status}``: finished requests. Unusual methods are counted
  as ``method="OTHER"`` so a client cannot create unbounded label values.
- ``tcpworkers_request_duration_seconds``: histogram of request time, from the start of the
  handler until the response is sent and every ``ctx.wait_until`` task is done.
- ``tcpworkers_sockets_opened_total``: outbound connections requests opened.
- ``tcpworkers_sockets_open``: outbound connections open now, in requests that are still in
  flight. A request served by ``WorkerApp`` is seen from its start (the app shows
  :meth:`Metrics.watch_requests` its requests in flight, an observer's optional hook); behind
  any other application the middleware notices a request's scope when its response starts, so
  there a connection opened and closed before the response starts is counted in the totals but
  not in this gauge.
- ``tcpworkers_request_sockets_peak``: histogram of the most connections one request had open
  at the same time.
- ``tcpworkers_bytes_total{direction="in"|"out"}``: bytes received/sent by outbound
  connections (as the gate counts them; see the README on drivers).
- ``tcpworkers_connect_seconds``: histogram, one observation per request that opened at least
  one connection, of the *total* time that request spent opening connections (DNS, TCP, TLS).
- ``tcpworkers_egress_denied_total``: connection attempts the egress policy refused.
- ``tcpworkers_sockets_closed_at_end_total``: connections a request left open, which the
  runtime closed for it when the request ended (a leak in the worker, usually harmless).
"""

from __future__ import annotations

import bisect
import math
import weakref
from collections.abc import Callable, Iterable, Sequence
from typing import Final, final

from tcpworkers.runtime._asgi import ASGIApp, Message, Receive, Scope, Send
from tcpworkers.runtime._settings import RequestRecord
from tcpworkers.scope import RequestScope, current_scope

__all__ = [
    "CONTENT_TYPE",
    "DURATION_BUCKETS",
    "Metrics",
    "MetricsEndpoint",
]


# The text exposition format's media type (Prometheus "Exposition formats", text format 0.0.4).
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
# The Prometheus client libraries' default buckets: 5 ms to 10 s, for request latency.
DURATION_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Connecting is faster than a request (a loopback connect is well under a millisecond; a TLS
# handshake across a region tens of milliseconds), so the connect histogram starts lower.
CONNECT_BUCKETS: Final = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Around the default limit of 6 simultaneous connections per request.
PEAK_BUCKETS: Final = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 16.0, 32.0)
# Methods counted under their own name (RFC 9110 §9 plus PATCH, RFC 5789).
_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}
)


def _number(value: float) -> str:
    # Prometheus parses Go's float syntax; Python's repr is compatible, infinities excepted.
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _label(value: str) -> str:
    # Label values escape backslash, double quote and line feed (exposition format spec).
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@final
class _Histogram:
    """Cumulative buckets, a sum and a count, rendered in the exposition format."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        result = []
        running = 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            result.append(f'{name}_bucket{{le="{_number(bound)}"}} {running}')
        result.append(f"{name}_sum {_number(self.sum)}")
        result.append(f"{name}_count {self.count}")
        return result


@final
class Metrics:
    """Collects the runtime's Prometheus metrics for this process (a ``RequestObserver``).

    Observers run on the event loop thread, and so does :meth:`render`: no locking is needed.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.duration = _Histogram(DURATION_BUCKETS)
        self.connect = _Histogram(CONNECT_BUCKETS)
        self.peak = _Histogram(PEAK_BUCKETS)
        self.sockets_opened = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.egress_denied = 0
        self.closed_at_end = 0
        # Scopes of requests in flight we were told about (request_started, or the middleware
        # noticing a response); weak, so a request that ends without telling us (or whose
        # record never arrives) does not keep its scope alive.
        self._live: weakref.WeakSet[RequestScope] = weakref.WeakSet()
        # Where to find more requests in flight (watch_requests: a WorkerApp's).
        self._sources: list[Callable[[], Iterable[RequestScope]]] = []
        # More families rendered after ours (the pool bindings' metrics).
        self._collectors: list[Callable[[], str]] = []

    def add_collector(self, collector: Callable[[], str]) -> None:
        """Append what ``collector()`` returns (complete families, text format) to renders."""
        self._collectors.append(collector)

    def request_started(self, scope: RequestScope) -> None:
        """Count ``scope``'s open connections in ``tcpworkers_sockets_open`` while it lives."""
        self._live.add(scope)

    def watch_requests(self, source: Callable[[], Iterable[RequestScope]]) -> None:
        """Count the open connections of the scopes ``source()`` returns, when rendering.

        ``WorkerApp`` calls this once with its requests in flight, instead of calling
        :meth:`request_started` for each request (a weak reference each, ~3,000
        instructions per request).
        """
        self._sources.append(source)

    def request_finished(self, record: RequestRecord) -> None:
        """Add one finished request to the metrics."""
        method, stats = record.method, record.stats
        key = (method if method in _METHODS else "OTHER", record.status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        self.duration.observe(record.duration)
        opened = stats.sockets_opened
        self.sockets_opened += opened
        self.bytes_in += stats.bytes_in
        self.bytes_out += stats.bytes_out
        self.egress_denied += stats.sockets_denied
        self.closed_at_end += stats.closed_at_end
        self.peak.observe(stats.peak_open)
        if opened:
            self.connect.observe(stats.connect_seconds)

    def sockets_open(self) -> int:
        """Outbound connections open now in the requests this object knows are in flight."""
        scopes = set(self._live)
        for source in self._sources:
            scopes.update(source())
        return sum(len(scope.open_resources) for scope in scopes if not scope.closed)

    def render(self) -> str:
        """The metrics in the Prometheus text exposition format."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[str]) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")
            out.extend(samples)

        family(
            "tcpworkers_requests_total",
            "counter",
            "Requests handled, by method and status.",
            [
                f'tcpworkers_requests_total{{method="{_label(method)}",status="{status}"}} {n}'
                for (method, status), n in sorted(self.requests.items())
            ],
        )
        family(
            "tcpworkers_request_duration_seconds",
            "histogram",
            "Request time, until the response is sent and ctx.wait_until work is done.",
            self.duration.lines("tcpworkers_request_duration_seconds"),
        )
        family(
            "tcpworkers_sockets_opened_total",
            "counter",
            "Outbound connections opened by requests.",
            [f"tcpworkers_sockets_opened_total {self.sockets_opened}"],
        )
        family(
            "tcpworkers_sockets_open",
            "gauge",
            "Outbound connections open now in requests in flight.",
            [f"tcpworkers_sockets_open {self.sockets_open()}"],
        )
        family(
            "tcpworkers_request_sockets_peak",
            "histogram",
            "Most outbound connections one request had open at the same time.",
            self.peak.lines("tcpworkers_request_sockets_peak"),
        )
        family(
            "tcpworkers_bytes_total",
            "counter",
            "Bytes received (in) and sent (out) by outbound connections.",
            [
                f'tcpworkers_bytes_total{{direction="in"}} {self.bytes_in}',
                f'tcpworkers_bytes_total{{direction="out"}} {self.bytes_out}',
            ],
        )
        family(
            "tcpworkers_connect_seconds",
            "histogram",
            "Per request that connected: total time spent opening connections (DNS, TCP, TLS).",
            self.connect.lines("tcpworkers_connect_seconds"),
        )
        family(
            "tcpworkers_egress_denied_total",
            "counter",
            "Connection attempts refused by the egress policy.",
            [f"tcpworkers_egress_denied_total {self.egress_denied}"],
        )
        family(
            "tcpworkers_sockets_closed_at_end_total",
            "counter",
            "Connections left open by a request and closed by the runtime when it ended.",
            [f"tcpworkers_sockets_closed_at_end_total {self.closed_at_end}"],
        )
        return "\n".join(out) + "\n" + "".join(collect() for collect in self._collectors)


@final
class MetricsEndpoint:
    """ASGI middleware: serves ``metrics`` at ``path`` and passes everything else to ``app``.

    ``GET`` and ``HEAD`` on ``path`` answer with the exposition format; other methods get
    ``405``. For every other HTTP request it notices the request's scope when the response
    starts, for the ``tcpworkers_sockets_open`` gauge (see the module docstring).

    Args:
        app: the ASGI application (the worker runtime).
        metrics: what to serve.
        path: the exact request path to answer, e.g. ``"/__tcpworkers/metrics"``.
    """

    def __init__(self, app: ASGIApp, metrics: Metrics, path: str) -> None:
        if not path.startswith("/"):
            raise ValueError(f'the metrics path must start with "/", got {path!r}')
        self.app = app
        self.metrics = metrics
        self.path = path
        # WorkerApp shows Metrics its requests itself (read once: checked per request).
        self._app_reports_start = bool(getattr(app, "reports_request_start", False))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == self.path:
            await self._serve(scope, send)
            return
        if self._app_reports_start:
            await self.app(scope, receive, send)  # it shows Metrics its requests itself
            return
        await self.app(scope, receive, self._tracking(send))

    def _tracking(self, send: Send) -> Send:
        seen = False

        async def tracking_send(message: Message) -> None:
            nonlocal seen
            if not seen:
                seen = True
                # The runtime sends from inside the request's scope, so the contextvar names
                # the request whose response this is.
                request = current_scope()
                if request is not None:
                    self.metrics.request_started(request)
            await send(message)

        return tracking_send

    async def _serve(self, scope: Scope, send: Send) -> None:
        method = scope["method"]
        if method in ("GET", "HEAD"):
            status = 200
            body = self.metrics.render().encode()
            headers = [(b"content-type", CONTENT_TYPE.encode())]
        else:
            status = 405
            body = b"method not allowed: the metrics endpoint answers GET and HEAD\n"
            headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"allow", b"GET, HEAD")]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
