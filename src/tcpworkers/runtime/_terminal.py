"""Colour for the text logs, only where a person reads them.

Colour is on when the stream is a terminal, ``NO_COLOR`` is unset or empty (https://no-color.org)
and ``TERM`` is not ``dumb``; piped or redirected output never gets escape codes. The decision is
made per stream (server messages go to stderr, the access log to stdout), once, when logging is
configured, in each process that configures it.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Final, TextIO

__all__ = ["AccessTextFormatter", "TextFormatter", "paint", "wants_colour"]

_RESET: Final = "\x1b[0m"
_STYLES: Final = {
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
    "red": "\x1b[31m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "cyan": "\x1b[36m",
}
# "GET /x 200 3.1ms ..." : the status is the third field of an access line.
_ACCESS_STATUS: Final = re.compile(r"^(\S+ \S+ )(\d{3})( .*)$", re.DOTALL)
_URL: Final = re.compile(r"(https?://\S+)")


def wants_colour(stream: TextIO | None) -> bool:
    """True when ``stream`` is a terminal and neither ``NO_COLOR`` nor ``TERM=dumb`` says no."""
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # a closed or unusual stream
        return False


def paint(text: str, *styles: str) -> str:
    """``text`` wrapped in the ANSI codes of ``styles`` (``"red"``, ``"bold"``...)."""
    return "".join(_STYLES[s] for s in styles) + text + _RESET


def _stream(name: str) -> TextIO | None:
    stream: TextIO | None = getattr(sys, name, None)
    return stream


class TextFormatter(logging.Formatter):
    """Informational messages as they are; others prefixed with their level (``error: ...``).

    Tracebacks show the user's frames first and fold the runtime's (JSON logs keep them whole).

    Args:
        fmt: the ``logging`` format string.
        stream: ``"stderr"`` or ``"stdout"``: where the handler writes, to decide on colour.
    """

    def __init__(self, fmt: str | None = None, stream: str = "stderr") -> None:
        super().__init__(fmt)
        self.colour = wants_colour(_stream(stream))

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info and record.exc_info[1] is not None:
            # The user's frames first, the runtime's folded (runtime/_devpage.py); secrets
            # redacted as RedactSecrets does for the message. Imported here: _logging imports
            # this module.
            from tcpworkers.runtime._devpage import format_folded
            from tcpworkers.runtime._logging import redact

            record.exc_text = format_folded(record.exc_info[1], redact)
        text = super().format(record)
        if record.levelno == logging.INFO:
            if self.colour and record.getMessage().startswith("tcpworkers "):
                return _URL.sub(lambda m: paint(m.group(1), "bold", "cyan"), text)
            return text
        prefix = f"{record.levelname.lower()}:"
        if self.colour:
            prefix = paint(prefix, "bold", "red" if record.levelno >= logging.ERROR else "yellow")
        return f"{prefix} {text}"


class AccessTextFormatter(logging.Formatter):
    """The readable access line; on a terminal the status is coloured by its class."""

    def __init__(self, fmt: str | None = None, stream: str = "stdout") -> None:
        super().__init__(fmt)
        self.colour = wants_colour(_stream(stream))

    def format(self, record: logging.LogRecord) -> str:
        return self.colourise(super().format(record))

    def colourise(self, text: str) -> str:
        """``text`` (an access line) with its status coloured, when colour is on."""
        if not self.colour:
            return text
        match = _ACCESS_STATUS.match(text)
        if match is None:
            return text
        status = int(match.group(2))
        colour = "red" if status >= 500 else "yellow" if status >= 400 else "green"
        return match.group(1) + paint(match.group(2), colour) + match.group(3)
