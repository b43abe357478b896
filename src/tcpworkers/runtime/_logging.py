"""Logging for served workers: the access log, text and JSON formats, secret redaction.

Two formats, one per mode by default:

- ``text`` (dev): one readable line per request,
  ``GET /orders 200 12.3ms sockets=2 out=1.2kB in=3.4kB``, and server messages as they are;
- ``json`` (serve): one JSON object per line for everything, access lines carrying the same
  fields plus a timestamp and the error type.

``out``/``in`` are the bytes the request's outbound connections sent and received (what the
gate counts), not the HTTP body sizes: they say what a request cost downstream.

Secrets never reach the log: the access log has no query strings, headers or exception
messages (only the error's type), and every handler :func:`log_config` builds passes records
through :class:`RedactSecrets`, which replaces any configured secret value (see
:func:`set_secrets`) in messages, tracebacks and fields with ``[redacted]``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final, Literal, final

from tcpworkers.runtime import _terminal as _terminal_module
from tcpworkers.runtime._settings import RequestRecord
from tcpworkers.runtime._terminal import TextFormatter

__all__ = [
    "ACCESS_LOGGER",
    "FIELDS_ATTR",
    "LOGGER",
    "AccessLog",
    "JsonFormatter",
    "RedactSecrets",
    "TextFormatter",
    "access_fields",
    "format_access_line",
    "format_bytes",
    "flush_logs",
    "format_duration",
    "log_config",
    "redact",
    "set_secrets",
]

LOGGER: Final = "tcpworkers"
ACCESS_LOGGER: Final = "tcpworkers.access"
# Attribute of a LogRecord that carries structured fields for the JSON format.
FIELDS_ATTR: Final = "tcpworkers_fields"
REDACTED: Final = "[redacted]"
# Shorter values are not redacted: replacing every "on" or "42" would garble the log and a value
# that short protects nothing anyway.
MIN_REDACTED_LENGTH: Final = 4

_secrets: frozenset[str] = frozenset()
_secrets_lock = threading.Lock()


def set_secrets(values: Iterable[str]) -> None:
    """Set the secret values :class:`RedactSecrets` removes from every log record."""
    global _secrets
    with _secrets_lock:
        _secrets = frozenset(v for v in values if len(v) >= MIN_REDACTED_LENGTH)


def redact(text: str) -> str:
    """``text`` with every configured secret value (see :func:`set_secrets`) replaced."""
    return _redact(text)


def _redact(text: str) -> str:
    # Longest first, so a secret that contains another is replaced whole.
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


# --- the access log -----------------------------------------------------------------------


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


def format_access_line(record: RequestRecord) -> str:
    """The dev line: ``GET /path 200 12.3ms sockets=2 out=1.2kB in=3.4kB [error=Type]``."""
    stats = record.stats
    line = (
        f"{record.method} {record.path} {record.status} {format_duration(record.duration)} "
        f"sockets={stats.sockets_opened} out={format_bytes(stats.bytes_out)} "
        f"in={format_bytes(stats.bytes_in)}"
    )
    if stats.sockets_denied:
        line += f" denied={stats.sockets_denied}"
    error = _error_name(record.error)
    if error is not None:
        line += f" error={error}"
    return line


@final
class AccessLog:
    """A ``RequestObserver`` that logs one entry per finished request.

    Args:
        log_format: ``"text"`` for the readable line, ``"json"`` for structured fields (the
            line is the message either way; the JSON formatter adds the fields).
        logger: where entries go; the ``tcpworkers.access`` logger by default.
    """

    def __init__(
        self, log_format: Literal["text", "json"] = "text", *, logger: logging.Logger | None = None
    ) -> None:
        self.log_format = log_format
        self.logger = logger if logger is not None else logging.getLogger(ACCESS_LOGGER)

    def request_finished(self, record: RequestRecord) -> None:
        """Log ``record``; never raises (a logging failure must not fail a request)."""
        try:
            level = logging.ERROR if record.status >= 500 else logging.INFO
            self.logger.log(
                level,
                format_access_line(record),
                extra={FIELDS_ATTR: access_fields(record)} if self.log_format == "json" else None,
            )
        except Exception:  # pragma: no cover - logging.Handler.handleError covers handler errors
            logging.getLogger(LOGGER).exception("the access log failed")


# --- formatters and the redaction filter --------------------------------------------------


class RedactSecrets(logging.Filter):
    """Replaces every configured secret value (see :func:`set_secrets`) with ``[redacted]``.

    Applied to the message, the formatted traceback and string fields. Attach it to handlers
    (not loggers) so it also sees records propagated from child loggers.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _secrets:
            return True
        message = record.getMessage()
        redacted = _redact(message)
        if redacted != message:
            record.msg = redacted
            record.args = None
        if record.exc_info and not record.exc_text:
            # Format the traceback now, so the redacted text is what every formatter uses.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = _redact(record.exc_text)
        fields = getattr(record, FIELDS_ATTR, None)
        if isinstance(fields, dict):
            setattr(
                record,
                FIELDS_ATTR,
                {k: _redact(v) if isinstance(v, str) else v for k, v in fields.items()},
            )
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, the record's structured fields, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, FIELDS_ATTR, None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A ``StreamHandler`` that, inside a running event loop, flushes at most every
    ``interval`` seconds instead of after every record.

    ``StreamHandler`` flushes per record: one ``write`` system call per request, measured at
    about half of the served process's CPU on a trivial route at 32 concurrent clients
    (benchmarks/bench_http.py). Batching bounds how stale the log is (``interval``, 50 ms); at
    interpreter exit ``logging.shutdown()`` flushes what is left. Outside a loop (start-up,
    shutdown, other threads) every record is flushed at once, as before.
    """

    def __init__(self, stream: Any = None, interval: float = 0.05) -> None:
        super().__init__(stream)
        self.interval = interval
        self._flush_scheduled = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + self.terminator)
        except RecursionError:  # as logging.StreamHandler does
            raise
        except Exception:
            self.handleError(record)
            return
        if self._flush_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_scheduled = True
        loop.call_later(self.interval, self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_scheduled = False
        self.flush()


def flush_logs() -> None:
    """Write out what batching handlers still hold (before the server's last log line)."""
    for name in (None, LOGGER, ACCESS_LOGGER):
        for handler in logging.getLogger(name).handlers:
            handler.flush()


def log_config(log_format: Literal["text", "json"], *, quiet: bool = False) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` dictionary for the CLI and uvicorn.

    Server messages (uvicorn's and ours) go to stderr, access entries to stdout, both in
    ``log_format``, every handler through :class:`RedactSecrets`. uvicorn's own access log is
    replaced by :class:`AccessLog` (run uvicorn with ``access_log=False``). ``quiet`` (dev)
    drops uvicorn's life-cycle lines (``runtime._devloop.QuietServerLog``).
    """
    _terminal = _terminal_module.__name__
    formatter = (
        {"()": f"{__name__}.JsonFormatter"}
        if log_format == "json"
        else {"()": f"{_terminal}.TextFormatter", "fmt": "%(message)s", "stream": "stderr"}
    )
    redact = {"()": f"{__name__}.RedactSecrets"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "redact": redact,
            "quiet": {"()": "tcpworkers.runtime._devloop.QuietServerLog"},
        },
        # The names "default" and "access" are the ones uvicorn's configure_logging() expects.
        # Text access lines carry no level prefix: a 500 is visible in the line itself.
        "formatters": {
            "default": formatter,
            "access": formatter
            if log_format == "json"
            else {
                "()": f"{_terminal}.AccessTextFormatter",
                "fmt": "%(message)s",
                "stream": "stdout",
            },
        },
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["redact", "quiet"] if quiet else ["redact"],
                "stream": "ext://sys.stderr",
            },
            "access": {
                "class": f"{__name__}.BatchingStreamHandler",
                "formatter": "access",
                "filters": ["redact"],
                "stream": "ext://sys.stdout",
            },
        },
        "loggers": {
            "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
            "uvicorn.error": {"level": "INFO"},
            "uvicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
            LOGGER: {"handlers": ["default"], "level": "INFO", "propagate": False},
            ACCESS_LOGGER: {"handlers": ["access"], "level": "INFO", "propagate": False},
        },
        # A worker's own logging (logging.getLogger(__name__)) gets the same format and
        # redaction; the level stays Python's default.
        "root": {"handlers": ["default"], "level": "WARNING"},
    }
