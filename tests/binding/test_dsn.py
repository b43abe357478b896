"""libpq connection strings: both forms, libpq's defaults and rules, errors that name the key."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tcpworkers.errors import DsnError
from tcpworkers.pool._dsn import DEFAULT_CONNECT_TIMEOUT, UpstreamParams, parse_dsn


def test_url_all_parts() -> None:
    p = parse_dsn(
        "postgresql://app:s%40cret@db.internal:6432/orders?sslmode=verify-full"
        "&sslrootcert=/etc/ca.pem&connect_timeout=5&application_name=shop&options=-c%20x%3D1"
    )
    assert p == UpstreamParams(
        host="db.internal",
        port=6432,
        user="app",
        password="s@cret",
        database="orders",
        sslmode="verify-full",
        sslrootcert="/etc/ca.pem",
        connect_timeout=5.0,
        application_name="shop",
        options="-c x=1",
    )
    assert p.address == "db.internal:6432"
    assert not p.is_unix


def test_postgres_scheme_and_defaults() -> None:
    p = parse_dsn("postgres://bob@localhost")
    assert (p.host, p.port, p.user, p.database, p.password) == (
        "localhost",
        5432,
        "bob",
        "bob",
        None,
    )
    assert p.sslmode == "prefer"
    assert p.connect_timeout == DEFAULT_CONNECT_TIMEOUT


def test_ipv6_in_brackets() -> None:
    p = parse_dsn("postgresql://u@[::1]:5433/d")
    assert (p.host, p.port) == ("::1", 5433)
    assert p.address == "[::1]:5433"


def test_unix_socket_dir_in_query() -> None:
    p = parse_dsn("postgresql://worker:tok@/app?host=/run/tcpw&port=7")
    assert p.is_unix
    assert p.unix_path == "/run/tcpw/.s.PGSQL.7"
    assert p.database == "app"
    assert p.effective_sslmode == "disable"  # libpq ignores sslmode on unix sockets


def test_unix_socket_dir_percent_encoded_host() -> None:
    p = parse_dsn("postgresql://u@%2Fvar%2Frun%2Fpostgresql/d")
    assert p.unix_path == "/var/run/postgresql/.s.PGSQL.5432"


def test_keyword_form_with_quotes_and_escapes() -> None:
    p = parse_dsn(
        r"host=db port = 5433 user=app password='it\'s a \\ secret' dbname=x sslmode=require"
    )
    assert (p.host, p.port, p.user, p.database) == ("db", 5433, "app", "x")
    assert p.password == "it's a \\ secret"
    assert p.effective_sslmode == "require"


def test_require_with_root_cert_acts_as_verify_ca() -> None:
    p = parse_dsn("host=db sslmode=require sslrootcert=/ca.pem")
    assert p.effective_sslmode == "verify-ca"


def test_connect_timeout_minimum_is_two_seconds() -> None:
    assert parse_dsn("host=db connect_timeout=1").connect_timeout == 2.0


@pytest.mark.parametrize(
    ("dsn", "needle"),
    [
        ("", "is empty"),
        ("mysql://u@h/d", "unsupported scheme 'mysql'"),
        ("host=db sslmode=requir", "did you mean 'require'"),
        ("host=db prot=5432", "did you mean 'port'"),
        ("host=db target_session_attrs=any", "target_session_attrs: this libpq parameter"),
        ("postgresql://u@h:99999/d", "port: expected a number from 1 to 65535"),
        ("postgresql://u@h:abc/d", "port: expected a number"),
        ("postgresql://u@h1,h2/d", "several hosts"),
        ("host=db connect_timeout=0", "wait forever"),
        ("host=db connect_timeout=ten", "connect_timeout: expected whole seconds"),
        ("host=db password='open", "unterminated quoted value"),
        ("host db", "without '='"),
        ("postgresql://u@::1/d", "need brackets"),
        ("postgresql://u@[::1/d", "unclosed '['"),
        ("host=db sslrootcert=system", "needs sslmode=verify-full"),
        ("host=db sslkey=/k", "without sslcert"),
        ("postgresql://u@h/d?sslmode", "has no value"),
        ("postgresql://u@h/d#x", "fragment"),
        ("postgresql://u:p%ff@h/d", "percent-encoding"),
    ],
)
def test_errors_name_the_key_and_fix(dsn: str, needle: str) -> None:
    with pytest.raises(DsnError, match=None) as info:
        parse_dsn(dsn, what="bindings.DB.url")
    assert needle in str(info.value)
    assert str(info.value).startswith("bindings.DB.url: ")
    assert isinstance(info.value, ValueError)


def test_password_never_in_messages_or_repr() -> None:
    with pytest.raises(DsnError) as info:
        parse_dsn("postgresql://u:hunter2@h:bad/d")
    assert "hunter2" not in str(info.value)
    p = parse_dsn("postgresql://u:hunter2@h/d")
    assert "hunter2" not in repr(p)
    assert "hunter2" not in p.redacted()


def test_redacted_round_trips() -> None:
    for dsn in (
        "postgresql://a%20b:pw@[::1]:5433/my%2Fdb?sslmode=verify-ca&sslrootcert=/c.pem",
        "postgresql://w:pw@/app?host=/tmp/x y&port=9&application_name=a&options=-c%20a%3Db",
    ):
        p = parse_dsn(dsn)
        again = parse_dsn(p.redacted())
        assert again.with_password("pw") == p


def _outcome(text: str) -> UpstreamParams | DsnError:
    try:
        return parse_dsn(text)
    except DsnError as exc:
        return exc


@settings(max_examples=400, deadline=None)
@given(st.text(max_size=80))
def test_garbage_gives_a_clear_error_never_a_crash(text: str) -> None:
    outcome = _outcome(text)
    assert isinstance(outcome, UpstreamParams) or str(outcome).startswith("connection string: ")


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["postgresql://", "postgres://"]),
    st.text(alphabet="abc:@/?&=[]%,.1 \\'#", max_size=40),
)
def test_url_shaped_garbage_never_crashes(scheme: str, tail: str) -> None:
    outcome = _outcome(scheme + tail)
    assert isinstance(outcome, UpstreamParams | DsnError)


@settings(max_examples=200, deadline=None)
@given(
    st.text(min_size=1, max_size=20).filter(lambda s: "\x00" not in s),
    st.text(max_size=20).filter(lambda s: "\x00" not in s),
)
def test_keyword_quoting_round_trips(user: str, password: str) -> None:
    def q(v: str) -> str:
        return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"

    p = parse_dsn(f"host=db user={q(user)} password={q(password)}")
    assert (p.user, p.password) == (user, password)
