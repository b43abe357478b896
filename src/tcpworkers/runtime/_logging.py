"""Logging for served workers: text and JSON formats, secret redaction, the handlers.

Two formats, one per mode by default:

- ``text`` (dev): one readable line per request,
  ``GET /orders 200 12.3ms sockets=2 out=1.2kB in=3.4kB``, and server messages as they are;
- ``json`` (serve): one JSON object per line for everything, access lines carrying the same
  fields plus a timestamp and the error type.

The access log itself (its line, its fields, and the observer that writes it) is in
``_access.py``.

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
from typing import Any, Final, Literal

from tcpworkers.runtime import _terminal as _terminal_module
from tcpworkers.runtime._terminal import TextFormatter

__all__ = [
    "ACCESS_LOGGER",
    "FIELDS_ATTR",
    "LOGGER",
    "BatchingStreamHandler",
    "JsonFormatter",
    "RedactSecrets",
    "TextFormatter",
    "flush_logs",
    "log_config",
    "redact",
    "redacting",
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

# Longest first, so a secret that contains another is replaced whole (sorted once, here).
_secrets: tuple[str, ...] = ()
_secrets_lock = threading.Lock()


def set_secrets(values: Iterable[str]) -> None:
    """Set the secret values :class:`RedactSecrets` removes from every log record."""
    global _secrets
    with _secrets_lock:
        kept = {v for v in values if len(v) >= MIN_REDACTED_LENGTH}
        _secrets = tuple(sorted(kept, key=lambda v: (-len(v), v)))


def redacting() -> bool:
    """True when secret values are configured (so :func:`redact` may change a text)."""
    return bool(_secrets)


def redact(text: str) -> str:
    """``text`` with every configured secret value (see :func:`set_secrets`) replaced."""
    return _redact(text)


def _redact(text: str) -> str:
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


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
            text = self.format(record)
        except RecursionError:  # as logging.StreamHandler does
            raise
        except Exception:
            self.handleError(record)
            return
        if not self.write_text(text):
            self.handleError(record)

    def write_text(self, text: str) -> bool:
        """Write one formatted line; False if that failed (the caller then reports it with
        ``handleError``, as ``emit`` does). The caller holds the handler's lock, as
        ``Handler.handle`` does for ``emit``."""
        try:
            self.stream.write(text + self.terminator)
        except RecursionError:
            raise
        except Exception:
            return False
        if self._flush_scheduled:
            return True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return True
        self._flush_scheduled = True
        loop.call_later(self.interval, self._scheduled_flush)
        return True

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
