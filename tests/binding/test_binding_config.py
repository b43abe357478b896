"""[bindings.NAME] type = "postgres" options: defaults, secrets, errors naming key and fix."""

from __future__ import annotations

import pytest

from tcpworkers.errors import ConfigError
from tcpworkers.runtime._pgbinding import parse_postgres_options

pytestmark = pytest.mark.unit

URL = "postgresql://app@db.internal:5432/app"


def parse(options: dict[str, object], secrets: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return parse_postgres_options("DB", options, secrets or {}, label="tcpworkers.toml")


def test_defaults() -> None:
    o = parse({"url": URL})
    assert (o.min_size, o.max_size) == (1, 10)
    assert (o.idle_timeout, o.max_lifetime, o.acquire_timeout) == (300.0, 3600.0, 10.0)
    assert o.upstream.host == "db.internal"
    assert o.upstream.password is None
    assert o.prepared_statements is True


def test_prepared_statements_off_for_pgbouncer_in_transaction_mode() -> None:
    assert parse({"url": URL, "prepared_statements": False}).prepared_statements is False


def test_password_from_secrets() -> None:
    o = parse({"url": URL, "password_secret": "PW", "max_size": 5}, {"PW": "s3cret"})
    assert o.upstream.password == "s3cret"
    assert o.max_size == 5
    assert "s3cret" not in repr(o)


def test_url_from_secrets() -> None:
    o = parse({"url_secret": "DATABASE_URL"}, {"DATABASE_URL": "postgresql://u:p@h/d"})
    assert (o.upstream.user, o.upstream.password) == ("u", "p")


@pytest.mark.parametrize(
    ("options", "secrets", "key", "needle"),
    [
        ({"url": URL, "max_szie": 3}, {}, "bindings.DB.max_szie", 'did you mean "max_size"'),
        ({}, {}, "bindings.DB.url", "missing; add url ="),
        ({"url": 5}, {}, "bindings.DB.url", "expected a string"),
        ({"url": "postgresql://u@h/d?sslmode=on"}, {}, "bindings.DB.url", "sslmode: expected"),
        ({"url_secret": "NOPE"}, {}, "bindings.DB.url_secret", "add it under [secrets]"),
        ({"url": URL, "url_secret": "X"}, {"X": URL}, "bindings.DB.url_secret", "not both"),
        ({"url": URL, "password_secret": "PW"}, {}, "bindings.DB.password_secret", "[secrets]"),
        (
            {"url": "postgresql://u:p@h/d", "password_secret": "PW"},
            {"PW": "x"},
            "bindings.DB.password_secret",
            "already has a password",
        ),
        ({"url": URL, "min_size": 11}, {}, "bindings.DB.min_size", "above max_size (10)"),
        # The loader's wording for the same mistakes (runtime/_config_values.py), value as TOML.
        (
            {"url": URL, "max_size": 0, "min_size": 0},
            {},
            "bindings.DB.max_size",
            "expected a positive integer, got 0",
        ),
        (
            {"url": URL, "max_size": "ten"},
            {},
            "bindings.DB.max_size",
            'positive integer, got "ten"',
        ),
        ({"url": URL, "max_size": True}, {}, "bindings.DB.max_size", "positive integer, got true"),
        ({"url": URL, "max_size": 2.0}, {}, "bindings.DB.max_size", "positive integer, got 2.0"),
        ({"url": URL, "min_size": -1}, {}, "bindings.DB.min_size", "an integer >= 0, got -1"),
        (
            {"url": URL, "acquire_timeout": 0},
            {},
            "bindings.DB.acquire_timeout",
            "expected a positive number of seconds, got 0",
        ),
        ({"url": URL, "idle_timeout": "5m"}, {}, "bindings.DB.idle_timeout", 'seconds, got "5m"'),
        # "never" is not a number of seconds: TOML's inf and nan are refused like the loader does.
        ({"url": URL, "idle_timeout": float("inf")}, {}, "bindings.DB.idle_timeout", "got inf"),
        ({"url": URL, "max_lifetime": float("nan")}, {}, "bindings.DB.max_lifetime", "got nan"),
        ({"url": URL, "acquire_timeout": -float("inf")}, {}, "bindings.DB.acquire_timeout", "-inf"),
        (
            {"url": URL, "prepared_statements": "no"},
            {},
            "bindings.DB.prepared_statements",
            "true or",
        ),
    ],
)
def test_errors(options: dict[str, object], secrets: dict[str, str], key: str, needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(options, secrets)
    assert info.value.key == key
    assert str(info.value).startswith(f"tcpworkers.toml: {key}: ")
    assert needle in str(info.value)


def test_url_error_hides_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        parse({"url": "postgresql://u:hunter2@h:port/d"})
    assert "hunter2" not in str(info.value)
