"""``[bindings.NAME] type = "postgres"``: validated options -> a :class:`PostgresBinding`.

```toml
[bindings.DB]
type = "postgres"
url = "postgresql://app@db.internal:5432/app?sslmode=verify-full"   # libpq syntax
password_secret = "DB_PASSWORD"   # optional: a [secrets] name holding the password
# or: url_secret = "DATABASE_URL" # a [secrets] name holding the whole url
min_size = 1            # server connections kept open, per process
max_size = 10           # at most, per process (serve --workers N: N times this)
idle_timeout = 300      # close idle connections above min_size after this many seconds
max_lifetime = 3600     # replace a connection this old when it is next idle
acquire_timeout = 10    # a client waits this long for a connection, then gets SQLSTATE 53300
prepared_statements = true  # false when url is a PgBouncer in transaction mode
```

Every error names the file, the key and the fix, like the rest of ``tcpworkers.toml``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from tcpworkers.errors import ConfigError, DsnError
from tcpworkers.pool._dsn import UpstreamParams, parse_dsn
from tcpworkers.runtime._config_values import Error, integer, seconds, suggest

if TYPE_CHECKING:
    from tcpworkers.pool._binding import PostgresBinding

__all__ = [
    "POSTGRES_KEYS",
    "check_postgres_bindings",
    "PostgresOptions",
    "make_postgres_binding",
    "parse_postgres_options",
    "pool_metrics",
]

POSTGRES_KEYS: Final = (
    "url",
    "url_secret",
    "password_secret",
    "min_size",
    "max_size",
    "idle_timeout",
    "max_lifetime",
    "acquire_timeout",
    "prepared_statements",
)
_DEFAULTS: Final[Mapping[str, float]] = {
    "min_size": 1,
    "max_size": 10,
    "idle_timeout": 300.0,
    "max_lifetime": 3600.0,
    "acquire_timeout": 10.0,
    "prepared_statements": True,
}


@dataclass(frozen=True, slots=True)
class PostgresOptions:
    """One postgres binding's validated options (the url parsed, secrets applied)."""

    name: str
    upstream: UpstreamParams  # has the password: log ``upstream.redacted()``
    min_size: int
    max_size: int
    idle_timeout: float
    max_lifetime: float
    acquire_timeout: float
    prepared_statements: bool = True


def parse_postgres_options(
    name: str, options: Mapping[str, object], secrets: Mapping[str, str], *, label: str
) -> PostgresOptions:
    """Validate ``[bindings.NAME]``'s options (``type`` already checked).

    Args:
        name: the binding's name.
        options: its keys other than ``type``.
        secrets: the resolved ``[secrets]`` (name -> value).
        label: how messages name the config file.

    Raises:
        ConfigError: naming ``bindings.NAME.KEY`` and the fix.
    """
    where = f"bindings.{name}"

    def error(key: str, message: str) -> ConfigError:
        dotted = f"{where}.{key}" if key else where
        return ConfigError(f"{label}: {dotted}: {message}", path=label, key=dotted)

    for key in options:
        if key not in POSTGRES_KEYS:
            raise error(
                key,
                f"unknown key{suggest(key, POSTGRES_KEYS)} (a postgres binding takes "
                f"{', '.join(POSTGRES_KEYS)})",
            )
    url = _url(options, secrets, error)
    try:
        upstream = parse_dsn(url, what=f"{label}: {where}.url")
    except DsnError as exc:
        raise ConfigError(str(exc), path=label, key=f"{where}.url") from None
    password_secret = options.get("password_secret")
    if password_secret is not None:
        if not isinstance(password_secret, str) or password_secret not in secrets:
            raise error(
                "password_secret",
                f"expected the name of a [secrets] entry, got {password_secret!r}; add it "
                f'under [secrets] (e.g. {password_secret} = "ENV_VAR_NAME")',
            )
        if upstream.password is not None:
            raise error("password_secret", "the url already has a password; remove one of the two")
        upstream = upstream.with_password(secrets[password_secret])
    sizes = {
        key: integer(_option(options, key), key, error, minimum=minimum)
        for key, minimum in (("min_size", 0), ("max_size", 1))
    }
    if sizes["min_size"] > sizes["max_size"]:
        raise error(
            "min_size",
            f"{sizes['min_size']} is above max_size ({sizes['max_size']}); lower min_size or "
            "raise max_size",
        )
    return PostgresOptions(
        name=name,
        upstream=upstream,
        min_size=sizes["min_size"],
        max_size=sizes["max_size"],
        idle_timeout=seconds(_option(options, "idle_timeout"), "idle_timeout", error),
        max_lifetime=seconds(_option(options, "max_lifetime"), "max_lifetime", error),
        acquire_timeout=seconds(_option(options, "acquire_timeout"), "acquire_timeout", error),
        prepared_statements=_prepared_statements(options, error),
    )


def _prepared_statements(options: Mapping[str, object], error: Error) -> bool:
    # False: the upstream moves server connections between backends under us (PgBouncer in
    # transaction mode), so nothing the pool prepares may outlive the transaction that uses it.
    value = options.get("prepared_statements", _DEFAULTS["prepared_statements"])
    if not isinstance(value, bool):
        raise error(
            "prepared_statements",
            f"expected true or false, got {value!r} (false when url points at a PgBouncer in "
            "transaction mode)",
        )
    return value


def _url(options: Mapping[str, object], secrets: Mapping[str, str], error: Error) -> str:
    url, url_secret = options.get("url"), options.get("url_secret")
    if url is not None and url_secret is not None:
        raise error("url_secret", "give url or url_secret, not both")
    if url_secret is not None:
        if not isinstance(url_secret, str) or url_secret not in secrets:
            raise error(
                "url_secret",
                f"expected the name of a [secrets] entry, got {url_secret!r}; add it under "
                f'[secrets] (e.g. {url_secret} = "DATABASE_URL")',
            )
        return secrets[url_secret]
    if url is None:
        raise error(
            "url",
            'missing; add url = "postgresql://user@host:5432/db" (or url_secret = "NAME" '
            "for a url kept in [secrets])",
        )
    if not isinstance(url, str):
        raise error("url", f"expected a string, got {type(url).__name__}")
    return url


def _option(options: Mapping[str, object], key: str) -> object:
    return options.get(key, _DEFAULTS[key])


def make_postgres_binding(options: PostgresOptions) -> PostgresBinding:
    """The binding object ``env.NAME`` will be (not started: the app starts it at lifespan)."""
    from tcpworkers.pool._binding import PostgresBinding
    from tcpworkers.pool._pool import PoolSettings

    settings = PoolSettings(
        min_size=options.min_size,
        max_size=options.max_size,
        idle_timeout=options.idle_timeout,
        max_lifetime=options.max_lifetime,
        acquire_timeout=options.acquire_timeout,
        prepared_statements=options.prepared_statements,
    )
    return PostgresBinding(options.name, options.upstream, settings)


def pool_metrics(bindings: Iterable[PostgresBinding]) -> str:
    """The Prometheus families of the started ``bindings`` (``""`` before any started)."""
    from tcpworkers.runtime._poolmetrics import render_pool_metrics

    return render_pool_metrics(s for b in bindings if (s := b.stats()) is not None)


def check_postgres_bindings(
    bindings: Iterable[PostgresOptions], workers: int
) -> tuple[list[str], list[str]]:
    """For ``tcpworkers check``: connect upstream once per binding.

    Returns:
        (lines to print, errors): a line per binding with the server version, authentication
        method, TLS and the connection total (``workers`` processes x ``max_size``); an error
        per binding whose server connection failed, saying what failed.
    """
    import asyncio

    from tcpworkers.errors import UpstreamError
    from tcpworkers.pool._binding import check_upstream

    lines: list[str] = []
    errors: list[str] = []
    for options in bindings:
        upstream = options.upstream
        total = workers * options.max_size
        sizes = (
            f"pool {options.min_size}..{options.max_size} per process x {workers} "
            f"process{'es' * (workers > 1)} = up to {total} server connections"
        )
        try:
            result = asyncio.run(check_upstream(upstream))
        except UpstreamError as exc:
            errors.append(f"bindings.{options.name}: {exc}")
            lines.append(f"  {options.name}: {upstream.redacted()} -> FAILED; {sizes}")
            continue
        tls = result.tls or "no TLS"
        lines.append(
            f"  {options.name}: {upstream.redacted()} -> PostgreSQL {result.server_version}, "
            f"auth {result.auth_method}, {tls}; {sizes}"
        )
    return lines, errors
