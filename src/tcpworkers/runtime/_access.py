"""The access log: one entry per finished request, as a readable line or JSON fields.

- ``text`` (dev): ``GET /orders 200 12.3ms sockets=2 out=1.2kB in=3.4kB``;
- ``json`` (serve): the same line as the message, plus the fields of :func:`access_fields` and
  a timestamp.

``out``/``in`` are the bytes the request's outbound connections sent and received (what the
gate counts), not the HTTP body sizes: they say what a request cost downstream. The access log
has no query strings, headers or exception messages (only the error's type), and the handlers
:func:`~tcpworkers.runtime._logging.log_config` builds redact secret values.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from json.encoder import encode_basestring
from math import copysign
from typing import Final, Literal, final

from tcpworkers.runtime._logging import (
    ACCESS_LOGGER,
    FIELDS_ATTR,
    LOGGER,
    BatchingStreamHandler,
    JsonFormatter,
    RedactSecrets,
    redact,
    redacting,
)
from tcpworkers.runtime._settings import RequestRecord
from tcpworkers.runtime._terminal import AccessTextFormatter

__all__ = [
    "AccessLog",
    "access_fields",
    "format_access_line",
    "format_bytes",
    "format_duration",
    "iso_millis",
    "json_access_line",
    "json_millis",
]


def format_bytes(count: int) -> str:
    """``512B``, ``1.2kB``, ``3.4MB``: decimal (SI) units, one decimal above a kilobyte."""
    if count < 1000:
        return f"{count}B"
    value = float(count)
    for unit in ("kB", "MB", "GB"):
        value /= 1000
        if value < 1000 or unit == "GB":
            return f"{value:.1f}{unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def format_duration(seconds: float) -> str:
    """``0.4ms``, ``12.3ms``, ``1.25s``."""
    if seconds < 1:
        return f"{seconds * 1000:.1f}ms"
    return f"{seconds:.2f}s"


def _error_name(error: BaseException | None) -> str | None:
    if error is None:
        return None
    kind = type(error)
    if kind.__module__ == "builtins":
        return kind.__qualname__
    return f"{kind.__module__}.{kind.__qualname__}"


def access_fields(record: RequestRecord) -> dict[str, object]:
    """The fields of one access-log entry (the JSON line's keys besides time/level/logger)."""
    stats = record.stats
    return {
        "method": record.method,
        "path": record.path,
        "status": record.status,
        "duration_ms": round(record.duration * 1000, 3),
        "sockets": stats.sockets_opened,
        "bytes_out": stats.bytes_out,
        "bytes_in": stats.bytes_in,
        "connect_ms": round(stats.connect_seconds * 1000, 3),
        "egress_denied": stats.sockets_denied,
        "error": _error_name(record.error),
    }


_NO_OUTBOUND_TEXT: Final = "sockets=0 out=0B in=0B"
# The levels of access entries, as globals (an attribute of the logging module each, else).
_INFO: Final = logging.INFO
_ERROR: Final = logging.ERROR


def format_access_line(record: RequestRecord) -> str:
    """The dev line: ``GET /path 200 12.3ms sockets=2 out=1.2kB in=3.4kB [error=Type]``."""
    stats = record.stats
    opened, out, in_ = stats.sockets_opened, stats.bytes_out, stats.bytes_in
    if opened or out or in_:
        outbound = f"sockets={opened} out={format_bytes(out)} in={format_bytes(in_)}"
    else:  # a request that made no connection (most): that part formatted once
        outbound = _NO_OUTBOUND_TEXT
    line = (
        f"{record.method} {record.path} {record.status} "
        f"{format_duration(record.duration)} {outbound}"
    )
    if stats.sockets_denied:
        line += f" denied={stats.sockets_denied}"
    if record.error is not None:
        line += f" error={_error_name(record.error)}"
    return line


@final
class AccessLog:
    """A ``RequestObserver`` that logs one entry per finished request.

    Args:
        log_format: ``"text"`` for the readable line, ``"json"`` for structured fields (the
            line is the message either way; the JSON formatter adds the fields).
        logger: where entries go; the ``tcpworkers.access`` logger by default.

    The direct path. Going through ``logging`` (a ``LogRecord``, the caller's frame, the
    filter, the formatter's dict and ``json.dumps``) cost more than serving a small request
    (~170,000 instructions per JSON line, measured with callgrind). When the logger is set up as
    :func:`log_config` sets it up (one :class:`BatchingStreamHandler`, only
    :class:`RedactSecrets` filters, the access formatter of ``log_format``, no propagation, no
    logger filters), the line the handler would write is built here, in one step, and written
    to the handler: the same text, redacted the same way (a test compares the two paths). Any
    other set-up (a test's handler, a custom formatter, ``propagate``) takes the ``logging``
    path, so nothing a user configures is bypassed. The check runs per request, so a logging
    set-up changed at run time is followed at once.
    """

    def __init__(
        self, log_format: Literal["text", "json"] = "text", *, logger: logging.Logger | None = None
    ) -> None:
        self.log_format = log_format
        self.logger = logger if logger is not None else logging.getLogger(ACCESS_LOGGER)

    def request_finished(self, record: RequestRecord) -> None:
        """Log ``record``; never raises (a logging failure must not fail a request)."""
        try:
            level = _ERROR if record.status >= 500 else _INFO
            logger = self.logger
            if not logger.isEnabledFor(level):
                return
            handler = self._direct_handler(level)
            if handler is not None:
                self._write_direct(handler, record, level)
                return
            logger.log(
                level,
                format_access_line(record),
                extra={FIELDS_ATTR: access_fields(record)} if self.log_format == "json" else None,
            )
        except Exception:  # pragma: no cover - logging.Handler.handleError covers handler errors
            logging.getLogger(LOGGER).exception("the access log failed")

    def _direct_handler(self, level: int) -> BatchingStreamHandler | None:
        """The handler to write to directly, when that writes what ``logging`` would."""
        logger = self.logger
        if logger.propagate or logger.filters or len(logger.handlers) != 1:
            return None
        handler = logger.handlers[0]
        if type(handler) is not BatchingStreamHandler or level < handler.level:
            return None
        for f in handler.filters:  # a loop, not any(): this runs once per request
            if type(f) is not RedactSecrets:
                return None
        formatter = handler.formatter
        if self.log_format == "json":
            return handler if type(formatter) is JsonFormatter else None
        if type(formatter) is AccessTextFormatter and formatter._fmt == "%(message)s":
            return handler
        return None

    def _write_direct(
        self, handler: BatchingStreamHandler, record: RequestRecord, level: int
    ) -> None:
        hide = bool(handler.filters) and redacting()
        line = format_access_line(record)
        if hide:
            line = redact(line)
        if self.log_format == "json":
            text = json_access_line(
                record,
                line,
                created=time.time(),
                level=logging.getLevelName(level).lower(),
                logger=self.logger.name,
                redacting=hide,
            )
        else:
            formatter = handler.formatter
            assert isinstance(formatter, AccessTextFormatter)
            text = formatter.colourise(line)
        lock = handler.lock
        assert lock is not None  # made by Handler.__init__ (createLock)
        with lock:  # as handler.acquire()/release() do, without their two calls
            if not handler.write_text(text):
                handler.handleError(self._record(record, level))

    def _record(self, record: RequestRecord, level: int) -> logging.LogRecord:
        # Only for handleError() after a failed write: the record logging would have built.
        return self.logger.makeRecord(
            self.logger.name, level, __file__, 0, format_access_line(record), (), None
        )


def json_access_line(
    record: RequestRecord,
    message: str,
    *,
    created: float,
    level: str,
    logger: str,
    redacting: bool = False,
) -> str:
    """The JSON access line :class:`JsonFormatter` writes for ``record``, built directly.

    The same keys in the same order, encoded as ``json.dumps(..., ensure_ascii=False)`` does
    (``encode_basestring`` for strings, ``repr`` for floats); string fields are redacted when
    ``redacting``, as :class:`RedactSecrets` does.
    """
    stats = record.stats
    error = None if record.error is None else _error_name(record.error)
    method, path = record.method, record.path
    if redacting:
        method, path = redact(method), redact(path)
        error = None if error is None else redact(error)
    head = _json_heads.get((level, logger))
    if head is None:
        head = _json_heads[level, logger] = (
            f'"level": {encode_basestring(level)}, "logger": {encode_basestring(logger)}, '
            '"message": '
        )
    connect = stats.connect_seconds
    opened, out, in_, denied = (
        stats.sockets_opened,
        stats.bytes_out,
        stats.bytes_in,
        stats.sockets_denied,
    )
    # (connect is 0.0, not -0.0, which json_millis() writes as "-0.0", if its sign is +.)
    if opened or out or in_ or denied or connect != 0.0 or copysign(1.0, connect) < 0.0:
        outbound = (
            f'"sockets": {opened}, "bytes_out": {out}, "bytes_in": {in_}, '
            f'"connect_ms": {json_millis(connect)}, "egress_denied": {denied}'
        )
    else:  # a request that made no connection (most): those fields, formatted once
        outbound = _NO_OUTBOUND
    return (
        f'{{"time": "{iso_millis(created)}", {head}{encode_basestring(message)}, '
        f'"method": {encode_basestring(method)}, "path": {encode_basestring(path)}, '
        f'"status": {record.status}, "duration_ms": {json_millis(record.duration)}, '
        f'{outbound}, "error": {"null" if error is None else encode_basestring(error)}}}'
    )


_NO_OUTBOUND: Final = (
    '"sockets": 0, "bytes_out": 0, "bytes_in": 0, "connect_ms": 0.0, "egress_denied": 0'
)


# The JSON text of the level and logger fields, by (level, logger): a handful of entries.
_json_heads: dict[tuple[str, str], str] = {}
# Below this many milliseconds the shortcut in json_millis() is exact (see there).
_EXACT_MILLIS: Final = 1e9


def json_millis(seconds: float) -> str:
    """``repr(round(seconds * 1000, 3))``, the milliseconds as ``json.dumps`` writes them, for
    a third of the cost.

    ``round(ms, 3)`` is the float nearest the decimal ``f"{ms:.3f}"`` (both round the exact
    binary value half-to-even to three places), and ``repr`` writes the shortest decimal that
    reads back as that float. Below 1e9 ms a float is exact to far better than a thousandth,
    so no decimal with fewer digits reads back as the same float: the shortest is that
    decimal without its trailing zeros (one kept after the point, as ``repr`` keeps it).
    Elsewhere (and for NaN) the long way.
    """
    millis = seconds * 1000
    if 0.0 <= millis < _EXACT_MILLIS:
        text = f"{millis:.3f}".rstrip("0")
        return text + "0" if text[-1] == "." else text
    return repr(round(millis, 3))


# The last whole second formatted and its text, replaced as one tuple (safe across threads).
_second: tuple[int, str] = (-1, "")


def iso_millis(created: float) -> str:
    """``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``, with the
    date and time of day formatted once per second.

    The microseconds are rounded half-to-even first, as ``datetime.fromtimestamp`` does.
    """
    global _second
    second = int(created) if created >= 0 else int(created // 1)  # the floor, cheaply
    micros = round((created - second) * 1e6)
    if micros >= 1_000_000:
        second += 1
        micros -= 1_000_000
    cached = _second
    if cached[0] != second:
        cached = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        _second = cached
    return cached[1] + _MILLIS[micros // 1000]


# ".000+00:00" to ".999+00:00": the end of every iso_millis() text, formatted once.
_MILLIS: Final = tuple(f".{millis:03d}+00:00" for millis in range(1000))
