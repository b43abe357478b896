"""libpq connection strings -> :class:`UpstreamParams` (sans-IO: no sockets, no asyncio).

Both forms libpq accepts are parsed, with libpq's rules:

* URL: ``postgresql://[user[:password]@][host][:port][/dbname][?key=value&...]`` (also
  ``postgres://``); every part percent-decoded; ``[::1]`` for IPv6; query parameters override
  the parts before them (``?host=/run/postgresql`` names a unix socket directory);
* keyword/value: ``host=db port=5432 dbname=app password='it''s \\' quoted'`` (values may be
  single-quoted, with ``\\'`` and ``\\\\`` escapes).

A host that starts with ``/`` is a unix socket directory: the server listens on
``DIR/.s.PGSQL.PORT`` there. ``sslmode`` follows libpq (``prefer`` by default, ignored on unix
sockets, ``require`` with a ``sslrootcert`` behaves as ``verify-ca``). Keys libpq knows that the
pooler does not implement, and keys nobody knows, are errors that name the key; nothing is
silently dropped. Messages never include the password.
"""

from __future__ import annotations

import difflib
import getpass
import os
from dataclasses import dataclass, field, replace
from typing import Final
from urllib.parse import quote, unquote

from tcpworkers.egress._ports import MAX_PORT, MIN_PORT, is_port
from tcpworkers.errors import DsnError

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "SSLMODES",
    "UpstreamParams",
    "parse_dsn",
]

# libpq's sslmode values, weakest first (libpq-connect, "sslmode").
SSLMODES: Final = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
DEFAULT_PORT: Final = 5432
# libpq waits forever when connect_timeout is unset; a pool must not, so: 10 s.
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
# libpq: "the minimum allowed timeout is 2 seconds, therefore a value of 1 is interpreted as 2".
_MIN_CONNECT_TIMEOUT: Final = 2.0

_SUPPORTED: Final = (
    "host",
    "hostaddr",
    "port",
    "user",
    "password",
    "dbname",
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "connect_timeout",
    "application_name",
    "options",
)
# libpq keywords that are valid elsewhere but that the pooler does not implement (yet).
_UNSUPPORTED_LIBPQ: Final = (
    "passfile",
    "channel_binding",
    "client_encoding",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslnegotiation",
    "sslcompression",
    "sslpassword",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
    "require_auth",
    "requiressl",
)


@dataclass(frozen=True, slots=True)
class UpstreamParams:
    """Where and how the pooler opens its server connections (one parsed connection string).

    ``host`` is a name, an IP literal, or a unix socket directory (starts with ``/``).
    ``sslmode`` is one of :data:`SSLMODES`; ``sslrootcert`` is a CA file path or ``"system"``.
    """

    host: str
    port: int
    user: str
    password: str | None = field(repr=False)
    database: str
    sslmode: str = "prefer"
    sslrootcert: str | None = None
    sslcert: str | None = None
    sslkey: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    application_name: str | None = None
    options: str | None = None
    hostaddr: str | None = None

    @property
    def is_unix(self) -> bool:
        """True when the server is reached through a unix socket (``host`` is a directory)."""
        return self.host.startswith("/")

    @property
    def unix_path(self) -> str:
        """The socket file: ``HOST/.s.PGSQL.PORT`` (libpq's naming)."""
        return os.path.join(self.host, f".s.PGSQL.{self.port}")

    @property
    def address(self) -> str:
        """``host:port`` or the socket path, for messages."""
        if self.is_unix:
            return self.unix_path
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def effective_sslmode(self) -> str:
        """The sslmode actually applied: ``disable`` on unix sockets (libpq ignores sslmode
        there), ``verify-ca`` for ``require`` with a root certificate (libpq's rule)."""
        if self.is_unix:
            return "disable"
        if self.sslmode == "require" and self.sslrootcert is not None:
            return "verify-ca"
        return self.sslmode

    def redacted(self) -> str:
        """The connection string as a URL with the password replaced by ``***``."""
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":***"
        query = [("sslmode", self.sslmode)]
        if self.is_unix:
            netloc = f"{auth}@"
            query.insert(0, ("host", self.host))
            query.insert(1, ("port", str(self.port)))
        else:
            host = f"[{self.host}]" if ":" in self.host else self.host
            netloc = f"{auth}@{quote(host, safe='[]:')}:{self.port}"
        extra = {
            "sslrootcert": self.sslrootcert,
            "application_name": self.application_name,
            "options": self.options,
        }
        query += [(k, v) for k, v in extra.items() if v is not None]
        qs = "&".join(f"{k}={quote(v, safe='/')}" for k, v in query)
        return f"postgresql://{netloc}/{quote(self.database, safe='')}?{qs}"

    def with_password(self, password: str | None) -> UpstreamParams:
        """A copy with another password (e.g. one taken from ``[secrets]``)."""
        return replace(self, password=password)


def parse_dsn(dsn: str, *, what: str = "connection string") -> UpstreamParams:
    """Parse a libpq connection string (URL or keyword form).

    Args:
        dsn: the connection string.
        what: how messages name it (e.g. ``"bindings.DB.url"``).

    Raises:
        DsnError: (a ``ValueError``) naming the key, what is wrong and the fix.
    """
    if not isinstance(dsn, str):
        raise DsnError(f"{what}: expected a string, got {type(dsn).__name__}")
    if "\x00" in dsn:
        raise DsnError(f"{what}: contains a NUL character; remove it")
    text = dsn.strip()
    if not text:
        raise DsnError(
            f"{what}: is empty; expected e.g. postgresql://user:password@host:5432/dbname"
        )
    if text.startswith(("postgresql://", "postgres://")):
        values = _parse_url(text, what)
    elif "://" in text.split("=", 1)[0]:
        scheme = text.split("://", 1)[0]
        raise DsnError(f"{what}: unsupported scheme {scheme!r}; use postgresql:// (or postgres://)")
    else:
        values = _parse_keywords(text, what)
    return _build(values, what)


def _parse_url(text: str, what: str) -> dict[str, str]:
    rest = text.split("://", 1)[1]
    fragment = rest.find("#")
    if fragment >= 0:
        raise DsnError(f"{what}: URL has a '#' fragment; percent-encode '#' as %23")
    query = ""
    if "?" in rest:
        rest, query = rest.split("?", 1)
    path = None
    if "/" in rest:
        rest, path = rest.split("/", 1)
    values: dict[str, str] = {}
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
        user, sep, password = userinfo.partition(":")
        if user:
            values["user"] = _decode(user, "user", what)
        if sep:
            values["password"] = _decode(password, "password", what)
    if rest:
        if "," in rest:
            raise DsnError(
                f"{what}: host: several hosts ({rest!r}) are not supported; name one host "
                "(put a load balancer or PgBouncer in front for failover)"
            )
        host, port = _split_netloc(rest, what)
        if host:
            values["host"] = host
        if port is not None:
            values["port"] = port
    if path:
        values["dbname"] = _decode(path, "dbname", what)
    if query:
        for item in query.split("&"):
            if not item:
                continue
            key, sep, value = item.partition("=")
            key = _decode(key, "a query parameter name", what)
            if not sep:
                raise DsnError(f"{what}: query parameter {key!r} has no value; write {key}=...")
            values[key] = _decode(value, key, what)
    return values


def _split_netloc(netloc: str, what: str) -> tuple[str, str | None]:
    if netloc.startswith("["):
        end = netloc.find("]")
        if end < 0:
            raise DsnError(f"{what}: host: unclosed '[' in {netloc!r}; write [::1]:5432")
        host, tail = netloc[1:end], netloc[end + 1 :]
        if tail and not tail.startswith(":"):
            raise DsnError(f"{what}: host: unexpected {tail!r} after ]; write [::1]:5432")
        return host, (tail[1:] if tail else None)
    if netloc.count(":") > 1:
        raise DsnError(f"{what}: host: IPv6 addresses need brackets: [{netloc}]")
    host, sep, port = netloc.partition(":")
    return _decode(host, "host", what), (port if sep else None)


def _decode(value: str, key: str, what: str) -> str:
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise DsnError(
            f"{what}: {key}: percent-encoding does not decode as UTF-8; encode the value "
            "with urllib.parse.quote"
        ) from None


def _parse_keywords(text: str, what: str) -> dict[str, str]:
    values: dict[str, str] = {}
    i, n = 0, len(text)
    while True:
        while i < n and text[i].isspace():
            i += 1
        if i >= n:
            return values
        start = i
        while i < n and text[i] != "=" and not text[i].isspace():
            i += 1
        key = text[start:i]
        while i < n and text[i].isspace():
            i += 1
        if i >= n or text[i] != "=" or not key:
            shown = key or text[start : start + 20]
            raise DsnError(
                f"{what}: expected key=value, found {shown!r} without '='; write e.g. "
                "host=db.internal port=5432 dbname=app (or a postgresql:// URL)"
            )
        i += 1
        while i < n and text[i].isspace():
            i += 1
        if i < n and text[i] == "'":
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise DsnError(f"{what}: {key}: unterminated quoted value; close it with '")
                c = text[i]
                if c == "\\" and i + 1 < n:
                    chars.append(text[i + 1])
                    i += 2
                    continue
                i += 1
                if c == "'":
                    break
                chars.append(c)
            value = "".join(chars)
        else:
            start = i
            chars = []
            while i < n and not text[i].isspace():
                if text[i] == "\\" and i + 1 < n:
                    chars.append(text[i + 1])
                    i += 2
                    continue
                chars.append(text[i])
                i += 1
            value = "".join(chars)
        values[key] = value


def _build(values: dict[str, str], what: str) -> UpstreamParams:
    for key in values:
        if key in _SUPPORTED:
            continue
        if key in _UNSUPPORTED_LIBPQ:
            raise DsnError(
                f"{what}: {key}: this libpq parameter is not supported by the tcpworkers pool; "
                "remove it (supported: " + ", ".join(_SUPPORTED) + ")"
            )
        guess = difflib.get_close_matches(key, _SUPPORTED, n=1)
        hint = f"did you mean {guess[0]!r}? " if guess else ""
        raise DsnError(
            f"{what}: unknown parameter {key!r}; {hint}supported: " + ", ".join(_SUPPORTED)
        )
    host = values.get("host", "") or _default_host()
    if "," in host:
        raise DsnError(f"{what}: host: several hosts ({host!r}) are not supported; name one host")
    if host.startswith("@"):
        raise DsnError(f"{what}: host: abstract unix sockets ({host!r}) are not supported")
    hostaddr = values.get("hostaddr") or None
    port = _port(values.get("port"), what)
    user = values.get("user") or _default_user()
    database = values.get("dbname") or user
    sslmode = values.get("sslmode", "prefer")
    if sslmode not in SSLMODES:
        guess = difflib.get_close_matches(sslmode, SSLMODES, n=1)
        hint = f" (did you mean {guess[0]!r}?)" if guess else ""
        raise DsnError(
            f"{what}: sslmode: expected one of {', '.join(SSLMODES)}, got {sslmode!r}{hint}"
        )
    sslrootcert = values.get("sslrootcert") or None
    if sslrootcert == "system" and sslmode != "verify-full":
        raise DsnError(
            f"{what}: sslrootcert=system needs sslmode=verify-full (as in libpq); set "
            "sslmode=verify-full"
        )
    sslcert, sslkey = values.get("sslcert") or None, values.get("sslkey") or None
    if sslkey is not None and sslcert is None:
        raise DsnError(f"{what}: sslkey: given without sslcert; add sslcert=PATH")
    return UpstreamParams(
        host=host,
        port=port,
        user=user,
        password=values.get("password"),
        database=database,
        sslmode=sslmode,
        sslrootcert=sslrootcert,
        sslcert=sslcert,
        sslkey=sslkey,
        connect_timeout=_timeout(values.get("connect_timeout"), what),
        application_name=values.get("application_name") or None,
        options=values.get("options") or None,
        hostaddr=hostaddr,
    )


def _port(raw: str | None, what: str) -> int:
    if raw is None or raw == "":
        return DEFAULT_PORT
    if "," in raw:
        raise DsnError(f"{what}: port: several ports ({raw!r}) are not supported; name one")
    if not (raw.isascii() and raw.isdigit()) or not is_port(int(raw)):
        raise DsnError(
            f"{what}: port: expected a number from {MIN_PORT} to {MAX_PORT}, got {raw!r}"
        )
    return int(raw)


def _timeout(raw: str | None, what: str) -> float:
    if raw is None or raw == "":
        return DEFAULT_CONNECT_TIMEOUT
    text = raw.strip()
    sign = text[1:] if text.startswith("-") else text
    if not (sign.isascii() and sign.isdigit()) or len(sign) > 9:
        raise DsnError(
            f"{what}: connect_timeout: expected whole seconds (e.g. connect_timeout=10), "
            f"got {raw!r}"
        )
    seconds = int(text)
    if seconds <= 0:
        # libpq: zero or negative means "wait forever"; a pool must not hang, so refuse.
        raise DsnError(
            f"{what}: connect_timeout: {seconds} would wait forever (libpq's meaning); "
            "give a positive number of seconds"
        )
    return max(float(seconds), _MIN_CONNECT_TIMEOUT)


def _default_host() -> str:
    # libpq's compiled-in default is a unix socket directory; Debian's is /var/run/postgresql.
    for directory in ("/var/run/postgresql", "/tmp"):
        if os.path.isdir(directory):
            return directory
    return "localhost"


def _default_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "postgres"
