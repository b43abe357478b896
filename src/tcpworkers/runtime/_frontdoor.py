"""The front door: uvicorn's httptools protocol with bounds on what a client can hold.

uvicorn with httptools (its default, and what ``dev`` and ``serve`` run) puts no limit on a
request's head: httptools accumulates a header value in memory until its end, so one request
with a 229 MiB header grew a server from 49 to 483 MB (and was answered 200); nor on how long a
client may take to send it, so connections trickling a byte a second stay open forever; nor on
how many connections one process holds. :class:`FrontDoorProtocol` adds, per connection:

- **head size**: the request line and headers together at most ``max_header_size`` bytes
  (64 KiB). The parser is fed at most the bytes left in that budget while a head is incomplete,
  so it never holds more than the bound; past it: ``431 Request Header Fields Too Large``.
- **header count**: at most ``max_headers`` (100) header lines, else 431.
- **head time**: a head must be complete ``header_timeout`` (10 s) after the connection opened
  or the request's first byte arrived, else ``408 Request Timeout`` and the connection closes.
  A request whose head is complete is not timed here (``wall_time`` bounds the handler), and an
  idle keep-alive connection is closed by uvicorn's keep-alive timeout.

and per process:

- **connections**: at most ``max_connections`` (1000) open at once; one more is answered
  ``503`` and closed at once. The first refusal logs one warning naming the setting; while the
  cap keeps being hit, at most one line per minute follows, with how many were refused.

Every refusal answers with ``Connection: close``, then closes the connection the way nginx's
lingering close does: it sends FIN after the answer and reads (and drops) what the client still
sends for up to a second. Closing at once with unread request bytes would make the kernel send
a reset, which can destroy the answer before the client reads it. After that second the
connection is aborted, so a client that keeps sending or stops reading cannot hold the socket.
Deliberately not logged per connection: a flood would flood the log.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import weakref
from typing import Any, Final, cast, final

import httptools
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from tcpworkers.runtime._logging import LOGGER
from tcpworkers.runtime._settings import Limits

__all__ = ["FrontDoorProtocol", "front_door"]

_log = logging.getLogger(LOGGER)

# How long a refused connection lingers (answer sent, input dropped) before it is aborted.
_REFUSAL_GRACE: Final = 1.0
# While the connection cap keeps being hit, at most one log line per this many seconds.
_CAP_LOG_INTERVAL: Final = 60.0


class _HeadRefused(Exception):
    """Internal: a parser callback found the head over a bound (status, reason)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _CapLog:
    """Per server: when the connection cap was last reported, and refusals not reported."""

    __slots__ = ("last", "unreported")

    def __init__(self) -> None:
        self.last: float | None = None
        self.unreported = 0


_cap_logs: weakref.WeakKeyDictionary[ServerState, _CapLog] = weakref.WeakKeyDictionary()


def _size(n: int) -> str:
    return f"{n // 1024} KiB" if n % 1024 == 0 else f"{n} bytes"


@final
class FrontDoorProtocol(HttpToolsProtocol):
    """uvicorn's ``HttpToolsProtocol`` with the front door's bounds (see the module docstring).

    Built by uvicorn for each accepted connection; :func:`front_door` binds the limits.
    """

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: Limits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._limits = limits
        self._at_cap = False  # refused at accept: never counted among the connections
        self._refused = False  # answered with a refusal: the rest of the input is dropped
        self._in_head = True  # waiting for (the rest of) a request line and headers
        self._head_begun = False  # a request's first byte arrived, its headers did not yet
        self._head_bytes = 0
        self._head_restarted = False  # a new head began inside the piece being parsed
        self._head_timer: asyncio.TimerHandle | None = None

    # -- asyncio.Protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self._limits.max_connections:
            self._at_cap = True
            self.transport = transport
            self._report_cap()
            self._refuse(503, "Service Unavailable", "the server is at its connection limit")
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        if self._at_cap:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        limit = self._limits.max_header_size
        # While a head is incomplete, feed the parser no more than the head budget left, so
        # that it never buffers more than max_header_size of one header. The common case (a
        # whole small request in one read) is one feed_data() call, as in uvicorn.
        while data:
            if self._in_head and len(data) > limit - self._head_bytes:
                room = limit - self._head_bytes
                piece, data = data[:room], data[room:]
            else:
                piece, data = data, b""
            self._head_restarted = False
            was_in_head = self._in_head
            try:  # parsing a piece: inline, as it runs for every request
                self.parser.feed_data(piece)
            except _PARSER_ERRORS as exc:
                if not self._feed_failed(exc):
                    return
            if self._in_head and was_in_head and not self._head_restarted:
                self._head_bytes += len(piece)
                if self._head_bytes >= limit:
                    self._refuse_head_size()
                    return
            if data and (self.parser is None or self.transport.is_closing()):
                return
        # A head that began but is not complete yet is timed (one timer per slow head, none
        # for requests that arrive whole).
        if self._head_begun and self._head_timer is None:
            self._arm_head_timer()

    def _feed_failed(self, exc: Exception) -> bool:
        """The parser raised ``exc`` on a piece: False when the connection is being closed or
        handed over, True to go on."""
        if isinstance(exc, httptools.HttpParserCallbackError):
            refused = exc.__context__
            if isinstance(refused, _HeadRefused):
                self._refuse(refused.status, _REASONS[refused.status], refused.reason)
                return False
            self._bad_request()
            return False
        if isinstance(exc, httptools.HttpParserError):
            self._bad_request()
            return False
        # HttpParserUpgrade. As uvicorn does: hand over to the WebSocket protocol, or warn
        # and carry on.
        if self._should_upgrade():
            self.handle_websocket_upgrade()
            return False
        self._unsupported_upgrade_warning()
        return True

    def _bad_request(self) -> None:
        msg = "Invalid HTTP request received."
        self.logger.warning(msg)
        self.send_400_response(msg)

    # -- httptools callbacks ---------------------------------------------------------------

    # The three callbacks below run for every request: they call uvicorn's directly, as
    # super() would resolve them (FrontDoorProtocol is not subclassed), without building a
    # super object each time.

    def on_message_begin(self) -> None:
        HttpToolsProtocol.on_message_begin(self)
        self._head_begun = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_begun = False
        if self._head_timer is not None:
            self._disarm_head_timer()
        # Counted here rather than per header: the head's bytes are bounded already, so the
        # list cannot grow past what max_header_size allows while it is being parsed.
        if len(self.headers) > self._limits.max_headers:
            raise _HeadRefused(
                431, f"more than {self._limits.max_headers} headers (limits.max_headers)"
            )
        HttpToolsProtocol.on_headers_complete(self)

    def on_message_complete(self) -> None:
        HttpToolsProtocol.on_message_complete(self)
        # The next request's head starts (in the piece being parsed, if pipelined).
        self._in_head = True
        self._head_bytes = 0
        self._head_restarted = True

    # -- bounds ----------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(self._limits.header_timeout, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._in_head:
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A response is under way (a pipelined head arrived early): look again later.
            self._arm_head_timer()
            return
        timeout = self._limits.header_timeout
        self._refuse(
            408,
            "Request Timeout",
            f"the request head took longer than {timeout:g}s (limits.header_timeout)",
        )

    def _refuse_head_size(self) -> None:
        size = _size(self._limits.max_header_size)
        self._refuse(
            431,
            _REASONS[431],
            f"the request line and headers are larger than {size} (limits.max_header_size)",
        )

    def _refuse(self, status: int, phrase: str, message: str) -> None:
        """Answer ``status`` with ``message`` and close (lingering, see the module docstring)."""
        self._disarm_head_timer()
        self._in_head = False
        self._refused = True
        transport = self.transport
        if transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A response is being sent on this connection (the refused head was pipelined
            # behind it): an answer now would land inside that response.
            transport.abort()
            return
        body = f"{status} {phrase}: {message}\n".encode()
        head = [f"HTTP/1.1 {status} {phrase}\r\n".encode()]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(
            b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        transport.write(b"".join(head) + body)
        if transport.can_write_eof():
            transport.write_eof()  # FIN after the answer; keep reading (and dropping) a while
        else:
            transport.close()
        self.loop.call_later(_REFUSAL_GRACE, transport.abort)

    def _report_cap(self) -> None:
        log = _cap_logs.setdefault(self.server_state, _CapLog())
        now = self.loop.time()
        if log.last is not None and now - log.last < _CAP_LOG_INTERVAL:
            log.unreported += 1
            return
        cap = self._limits.max_connections
        if log.unreported:
            _log.warning(
                "%d open connections in this process, the limit (limits.max_connections): "
                "answering 503; %d more refused since the last report",
                cap,
                log.unreported,
            )
        else:
            _log.warning(
                "%d open connections in this process, the limit (limits.max_connections): "
                "new connections are answered 503 until some close",
                cap,
            )
        log.last = now
        log.unreported = 0


_REASONS: Final = {408: "Request Timeout", 431: "Request Header Fields Too Large"}
# What the parser raises (HttpParserCallbackError is an HttpParserError): see _feed_failed().
_PARSER_ERRORS: Final = (httptools.HttpParserError, httptools.HttpParserUpgrade)


def front_door(limits: Limits) -> type[asyncio.Protocol]:
    """The protocol for ``uvicorn.Config(http=...)``: :class:`FrontDoorProtocol` with ``limits``.

    A ``functools.partial`` (uvicorn only calls it), so it pickles for ``--workers`` processes.
    """
    return cast(type[asyncio.Protocol], functools.partial(FrontDoorProtocol, limits=limits))
