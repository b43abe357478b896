"""LocalPostgres checks its arguments when constructed, before any process runs."""

from __future__ import annotations

import pytest

from tcpworkers.localpg import LocalPostgres

pytestmark = pytest.mark.unit


def test_arguments_are_checked_at_once() -> None:
    with pytest.raises(ValueError, match="auth must be one of"):
        LocalPostgres(auth="ident")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="both ssl_cert and ssl_key"):
        LocalPostgres(ssl_cert="/x.crt")
    with pytest.raises(ValueError, match="without quotes"):
        LocalPostgres(password="it's")
