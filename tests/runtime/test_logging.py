"""The access log (text and JSON), the formatters and secret redaction, without a server."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tcpworkers.errors import EgressDeniedError
from tcpworkers.runtime._access import (
    AccessLog,
    access_fields,
    format_access_line,
    format_bytes,
    format_duration,
)
from tcpworkers.runtime._logging import (
    JsonFormatter,
    RedactSecrets,
    TextFormatter,
    set_secrets,
)
from tcpworkers.runtime._settings import RequestRecord
from tcpworkers.scope import ScopeStats

from ..waiting import eventually


def record(status: int = 200, error: BaseException | None = None, **stats: Any) -> RequestRecord:
    return RequestRecord(
        method="GET",
        path="/orders",
        status=status,
        duration=0.0123,
        stats=ScopeStats(**stats),
        error=error,
    )


@pytest.fixture
def capture() -> Iterator[tuple[logging.Logger, io.StringIO, logging.Handler]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactSecrets())
    logger = logging.getLogger("tcpworkers.test-access")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    yield logger, stream, handler
    logger.handlers = []
    set_secrets(())


@pytest.mark.parametrize(
    ("count", "text"),
    [(0, "0B"), (999, "999B"), (1000, "1.0kB"), (1234, "1.2kB"), (3_400_000, "3.4MB"),
     (5 * 10**12, "5000.0GB")],
)  # fmt: skip
def test_format_bytes(count: int, text: str) -> None:
    assert format_bytes(count) == text


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.0004, "0.4ms"), (0.0123, "12.3ms"), (1.254, "1.25s")]
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_the_dev_line() -> None:
    line = format_access_line(record(sockets_opened=2, bytes_out=1234, bytes_in=3400))
    assert line == "GET /orders 200 12.3ms sockets=2 out=1.2kB in=3.4kB"


def test_the_dev_line_names_denials_and_the_error_type_only() -> None:
    error = EgressDeniedError("10.0.0.1:5432 denied; the secret is hunter22")
    line = format_access_line(record(500, error, sockets_denied=1))
    assert line == (
        "GET /orders 500 12.3ms sockets=0 out=0B in=0B denied=1 "
        "error=tcpworkers.errors.EgressDeniedError"
    )
    assert format_access_line(record(500, ValueError("x"))).endswith(" error=ValueError")


def test_access_fields() -> None:
    fields = access_fields(record(sockets_opened=1, bytes_in=5, connect_seconds=0.0021))
    assert fields == {
        "method": "GET",
        "path": "/orders",
        "status": 200,
        "duration_ms": 12.3,
        "sockets": 1,
        "bytes_out": 0,
        "bytes_in": 5,
        "connect_ms": 2.1,
        "egress_denied": 0,
        "error": None,
    }


def test_text_access_log(capture: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, stream, handler = capture
    handler.setFormatter(logging.Formatter("%(message)s"))
    AccessLog("text", logger=logger).request_finished(record(sockets_opened=1))
    assert stream.getvalue() == "GET /orders 200 12.3ms sockets=1 out=0B in=0B\n"


def test_json_access_log(capture: tuple[logging.Logger, io.StringIO, logging.Handler]) -> None:
    logger, stream, handler = capture
    handler.setFormatter(JsonFormatter())
    access = AccessLog("json", logger=logger)
    access.request_finished(record())
    access.request_finished(record(500, KeyError("k")))
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["level"] == "info"
    assert first["logger"] == "tcpworkers.test-access"
    assert first["message"] == "GET /orders 200 12.3ms sockets=0 out=0B in=0B"
    assert first["time"].endswith("+00:00")
    assert first["status"] == 200
    assert first["error"] is None
    assert second["level"] == "error"
    assert second["error"] == "KeyError"


def test_json_formatter_includes_the_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        entry = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("here",), None)
        entry.exc_info = sys.exc_info()
    data = json.loads(JsonFormatter().format(entry))
    assert data["message"] == "failed here"
    assert "RuntimeError: boom" in data["exception"]


def test_text_formatter_prefixes_levels_other_than_info() -> None:
    formatter = TextFormatter("%(message)s")
    info = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    warning = logging.LogRecord("x", logging.WARNING, __file__, 1, "careful", None, None)
    assert formatter.format(info) == "hello"
    assert formatter.format(warning) == "warning: careful"


def test_secrets_are_redacted_everywhere(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = capture
    handler.setFormatter(JsonFormatter())
    set_secrets(["hunter22", "s3cr3t-longer-hunter22", "ab"])
    logger.info("password is %s, token %s", "hunter22", "s3cr3t-longer-hunter22")
    try:
        raise ValueError("cannot log in with hunter22")
    except ValueError:
        logger.exception("login failed")
    logger.info("x", extra={"tcpworkers_fields": {"path": "/hunter22", "status": 200}})
    logger.info("ab stays: too short to be a secret")
    text = stream.getvalue()
    assert "hunter22" not in text
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines[0]["message"] == "password is [redacted], token [redacted]"
    assert "ValueError: cannot log in with [redacted]" in lines[1]["exception"]
    assert lines[2]["path"] == "/[redacted]"
    assert lines[3]["message"] == "ab stays: too short to be a secret"


def test_redaction_is_a_no_op_without_secrets(
    capture: tuple[logging.Logger, io.StringIO, logging.Handler],
) -> None:
    logger, stream, handler = capture
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.info("nothing %s", "secret")
    assert stream.getvalue() == "nothing secret\n"


class _CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


async def test_access_log_flushes_in_batches_inside_the_loop() -> None:
    from tcpworkers.runtime._logging import BatchingStreamHandler

    stream = _CountingStream()
    handler = BatchingStreamHandler(stream, interval=0.02)
    log = logging.getLogger("tcpworkers.test.batching")
    log.addHandler(handler)
    log.propagate = False
    log.setLevel(logging.INFO)
    try:
        for i in range(100):
            log.info("line %d", i)
        assert stream.getvalue().count("\n") == 100  # written at once...
        assert stream.flushes == 0  # ...flushed once, later
        await eventually(lambda: stream.flushes > 0, what="the batch was flushed")
        assert stream.flushes == 1
    finally:
        log.removeHandler(handler)


def test_access_log_flushes_every_record_outside_a_loop() -> None:
    from tcpworkers.runtime._logging import BatchingStreamHandler

    stream = _CountingStream()
    handler = BatchingStreamHandler(stream)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "hello", None, None)
    handler.handle(record)
    handler.handle(record)
    assert stream.flushes == 2
    assert stream.getvalue() == "hello\nhello\n"
