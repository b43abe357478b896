"""The access log's direct path writes, byte for byte, what the ``logging`` path writes.

``AccessLog`` builds the line itself when the access logger is set up as ``log_config`` sets it
up (see ``runtime/_access.py``); these tests run both paths on the same records and compare.
"""

from __future__ import annotations

import io
import logging
import logging.config
import random
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal

import pytest

from tcpworkers.errors import EgressDeniedError
from tcpworkers.runtime._access import AccessLog, iso_millis, json_millis
from tcpworkers.runtime._logging import (
    ACCESS_LOGGER,
    BatchingStreamHandler,
    JsonFormatter,
    log_config,
    set_secrets,
)
from tcpworkers.runtime._settings import RequestRecord
from tcpworkers.scope import ScopeStats

Format = Literal["text", "json"]
_TIME = re.compile(r'"time": "[^"]*"')


def _record(path: str = "/orders", status: int = 200, **kwargs: Any) -> RequestRecord:
    error = kwargs.pop("error", None)
    duration = kwargs.pop("duration", 0.0123)
    return RequestRecord(
        method=kwargs.pop("method", "GET"),
        path=path,
        status=status,
        duration=duration,
        stats=ScopeStats(**kwargs),
        error=error,
    )


RECORDS = [
    _record(),
    _record("/", 201, sockets_opened=2, bytes_out=1234, bytes_in=3_400_000, connect_seconds=0.0021),
    _record("/ünï/😀", 404, duration=1.5),
    _record('/a"b\\c\x01\t\n', 200, method="PATCH"),
    _record("/deny", 500, error=EgressDeniedError("no"), sockets_denied=3, closed_at_end=1),
    _record("/key", 503, error=KeyError("k"), duration=0.0),
    _record("/hunter22/x", 200, method="hunter22"),
    _record("/slow", 200, duration=12.0, connect_seconds=0.0004995),
    _record("/odd", 200, duration=-0.0, connect_seconds=-0.0),
    _record("/huge", 200, duration=2e7, connect_seconds=1e-7),
]


@pytest.fixture
def access_logger() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """The access logger as ``log_config`` sets it up, writing to a StringIO."""
    logger = logging.getLogger(ACCESS_LOGGER)
    saved = (logger.handlers[:], logger.propagate, logger.level, logger.filters[:])
    stream = io.StringIO()
    yield logger, stream
    logger.handlers, logger.propagate, logger.level, logger.filters = saved
    set_secrets(())


def _configure(logger: logging.Logger, stream: io.StringIO, log_format: Format) -> None:
    config = log_config(log_format)
    config["loggers"] = {ACCESS_LOGGER: config["loggers"][ACCESS_LOGGER]}
    config["root"] = {}
    config["handlers"] = {"access": config["handlers"]["access"]}
    config["handlers"]["access"]["stream"] = stream
    logging.config.dictConfig(config)
    assert isinstance(logger.handlers[0], BatchingStreamHandler)


def _both_paths(logger: logging.Logger, stream: io.StringIO, log_format: Format) -> tuple[str, str]:
    access = AccessLog(log_format)
    assert access._direct_handler(logging.INFO) is logger.handlers[0]
    for item in RECORDS:
        access.request_finished(item)
    direct = stream.getvalue()
    stream.seek(0)
    stream.truncate()
    logger.addFilter(logging.Filter())  # passes everything, but takes the logging path
    assert access._direct_handler(logging.INFO) is None
    for item in RECORDS:
        access.request_finished(item)
    return direct, stream.getvalue()


@pytest.mark.parametrize("log_format", ["json", "text"])
@pytest.mark.parametrize("secrets", [(), ("hunter22",)])
def test_the_direct_path_writes_what_logging_writes(
    access_logger: tuple[logging.Logger, io.StringIO], log_format: Format, secrets: tuple[str, ...]
) -> None:
    logger, stream = access_logger
    _configure(logger, stream, log_format)
    set_secrets(secrets)
    direct, via_logging = _both_paths(logger, stream, log_format)
    if log_format == "json":
        assert direct.count("\n") == len(RECORDS)  # one line each: JSON escapes line breaks
        # The time is the only field that differs (when each line was written).
        direct, via_logging = _TIME.sub("", direct), _TIME.sub("", via_logging)
    assert direct == via_logging
    assert ("hunter22" in direct) is not secrets


def test_the_direct_text_path_colours_as_the_formatter_does(
    access_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = access_logger
    _configure(logger, stream, "text")
    formatter = logger.handlers[0].formatter
    formatter.colour = True  # type: ignore[union-attr]
    direct, via_logging = _both_paths(logger, stream, "text")
    assert "\x1b[" in direct
    assert direct == via_logging


def test_other_set_ups_take_the_logging_path(
    access_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = access_logger
    _configure(logger, stream, "json")
    access = AccessLog("json")
    handler = logger.handlers[0]
    assert access._direct_handler(logging.INFO) is handler
    assert AccessLog("text")._direct_handler(logging.INFO) is None  # a JSON formatter
    logger.propagate = True
    assert access._direct_handler(logging.INFO) is None
    logger.propagate = False
    handler.addFilter(logging.Filter())
    assert access._direct_handler(logging.INFO) is None
    handler.filters.pop()

    class OwnFormatter(JsonFormatter):
        pass

    handler.setFormatter(OwnFormatter())
    assert access._direct_handler(logging.INFO) is None
    handler.setFormatter(JsonFormatter())
    logger.addHandler(logging.StreamHandler(io.StringIO()))
    assert access._direct_handler(logging.INFO) is None
    logger.handlers.pop()
    assert access._direct_handler(logging.INFO) is handler


def test_levels_and_disable_are_honoured(
    access_logger: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = access_logger
    _configure(logger, stream, "json")
    access = AccessLog("json")
    logger.handlers[0].setLevel(logging.WARNING)
    access.request_finished(_record("/fine"))
    access.request_finished(_record("/broken", 500))
    assert "/fine" not in stream.getvalue()
    assert '"path": "/broken"' in stream.getvalue()
    logging.disable(logging.CRITICAL)
    try:
        access.request_finished(_record("/disabled", 500))
    finally:
        logging.disable(logging.NOTSET)
    assert "/disabled" not in stream.getvalue()


@pytest.mark.parametrize(
    "created",
    [0.0, 1.5, 1764756000.0, 1764756000.0005, 1764756000.9994999, 1764756000.9995,
     1764756000.9999994, 1764756000.9999996, 1764756059.9999999, 1.0000005, 1.0000015,
     1.9999995, 1.9999985,
     1767225599.9999997, 1764756000.123456, -1.5, -0.0004, -0.9999996, -86400.25],
)  # fmt: skip
def test_iso_millis_is_datetimes_isoformat(created: float) -> None:
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert iso_millis(created) == expected


def test_iso_millis_over_many_timestamps() -> None:
    start = 1764756000.0
    for step in range(20_000):
        created = start + step * 0.0001234567
        expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
        assert iso_millis(created) == expected, created


@pytest.mark.parametrize(
    "seconds",
    [0.0, -0.0, 1e-7, 4.9e-7, 5e-7, 5.1e-7, 0.0005, 0.0004995, 0.0123, 0.1, 1.0, 1.5, 12.345678,
     999_999.9999994, 999_999.9999996, 1e6, 2e7, 1e12, 1e20, -1.5, float("inf"), float("nan")],
)  # fmt: skip
def test_json_millis_is_what_json_dumps_writes(seconds: float) -> None:
    assert json_millis(seconds) == repr(round(seconds * 1000, 3))


def test_json_millis_over_many_values() -> None:
    value = 1e-7
    while value < 2e6:  # every magnitude the shortcut takes, and past it
        for seconds in (value, value * 1.0000001, value * 0.9999999, value + 5e-7):
            assert json_millis(seconds) == repr(round(seconds * 1000, 3)), seconds
        value *= 1.0137
    rng = random.Random(7)
    for _ in range(20_000):  # every digit pattern, around half-way points too
        seconds = rng.uniform(0, 10) if rng.random() < 0.5 else rng.randrange(10**7) / 10**7
        assert json_millis(seconds) == repr(round(seconds * 1000, 3)), seconds
