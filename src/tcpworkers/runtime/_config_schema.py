"""The schema of ``tcpworkers.toml``: every key, its type, its default in each mode, its meaning.

This table is data, not the validator: the configuration loader validates, and a test
(``tests/docs/test_config_reference.py``) checks that the loader and this table agree on the keys
it accepts and on every default, mode by mode. The docs site's ``tcpworkers.toml`` reference is
rendered from this table (``docs/hooks/config_reference.py``), so the reference cannot drift from
the code without that test failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, final

__all__ = ["SCHEMA", "ConfigKey", "Section", "render_markdown", "section_keys"]


@final
@dataclass(frozen=True, slots=True)
class ConfigKey:
    """One key of ``tcpworkers.toml``.

    Attributes:
        key: the dotted key (``"limits.max_sockets"``); ``NAME`` stands for a name you choose.
        type: the TOML type, as a reader would say it.
        dev: the default under ``tcpworkers dev`` (TOML spelling; ``None`` when there is none).
        serve: the default under ``tcpworkers serve``.
        doc: what the key does (one or two sentences).
        example: a TOML value that the loader accepts (used by the test and the docs).
        flag: the command-line flag that overrides the key, if any.
    """

    key: str
    type: str
    dev: str | None
    serve: str | None
    doc: str
    example: str
    flag: str | None = None

    @property
    def name(self) -> str:
        """The key's last part, as written inside its table."""
        return self.key.rpartition(".")[2]


@final
@dataclass(frozen=True, slots=True)
class Section:
    """One table of ``tcpworkers.toml`` (``""`` for the top level)."""

    table: str
    doc: str
    keys: tuple[ConfigKey, ...]


_NO: Final = None

SCHEMA: Final = (
    Section(
        "",
        "Top-level keys.",
        (
            ConfigKey(
                "worker",
                "string",
                _NO,
                _NO,
                "The worker to run when the command line names none: a path (relative to this "
                "file) such as `worker.py` or `app/api.py:handler`, or `module:attribute`.",
                '"worker.py"',
            ),
        ),
    ),
    Section(
        "vars",
        "Plain values, exposed as `env.NAME`. Names are Python identifiers and are unique across "
        "`[vars]`, `[secrets]` and `[bindings]`.",
        (
            ConfigKey(
                "vars.NAME",
                "string, integer, float or boolean",
                _NO,
                _NO,
                "`env.NAME` in the worker. `--var NAME=VALUE` overrides it (as a string).",
                '"hello"',
                "--var NAME=VALUE",
            ),
        ),
    ),
    Section(
        "secrets",
        "Values read from environment variables at start-up, exposed as `env.NAME` and never "
        'logged or printed. Also accepted as a top-level list, `secrets = ["API_KEY"]`, when '
        "the env name and the variable name are the same. A secret whose variable is not set is "
        "a configuration error.",
        (
            ConfigKey(
                "secrets.NAME",
                "string (the name of an environment variable)",
                _NO,
                _NO,
                "`env.NAME` is the value of that environment variable.",
                '"HOME"',
            ),
        ),
    ),
    Section(
        "egress",
        "Where workers may connect. The rules are added to those of the preset; deny wins over "
        "allow, and port 25 is refused unless allowed. See [egress policy](runtime.md#egress).",
        (
            ConfigKey(
                "egress.preset",
                'string: "dev", "serve" or "none"',
                '"dev"',
                '"serve"',
                "The base policy: `dev` allows public, private and loopback addresses; `serve` "
                "allows public addresses only; `none` allows nothing.",
                '"serve"',
            ),
            ConfigKey(
                "egress.allow",
                "array of strings",
                "[]",
                "[]",
                "Rules to allow: an address class (`public`, `private`, `loopback`, "
                "`link-local`, `unspecified`, `multicast`, `reserved`), a CIDR (`10.0.0.0/8`), "
                "an IP address, or a host pattern (`db.internal`, `*.internal`).",
                '["10.0.0.0/8", "*.internal"]',
            ),
            ConfigKey(
                "egress.deny",
                "array of strings",
                "[]",
                "[]",
                "Rules to deny, in the same forms as `allow`; a deny rule always wins.",
                '["10.9.0.0/16"]',
            ),
            ConfigKey(
                "egress.allow_ports",
                'array of strings: ports or "first-last" ranges',
                "[]",
                "[]",
                "Ports to allow that a preset refuses (port 25).",
                '["25"]',
            ),
            ConfigKey(
                "egress.deny_ports",
                'array of strings: ports or "first-last" ranges',
                "[]",
                "[]",
                "Ports to refuse whatever the address.",
                '["6000-6010"]',
            ),
        ),
    ),
    Section(
        "limits",
        "Per-request limits, and the front door's bounds per connection and per process.",
        (
            ConfigKey(
                "limits.max_sockets",
                "positive integer",
                "6",
                "6",
                "Connections one request may have open at once; further `connect()` calls wait "
                "for a slot (as on Cloudflare Workers).",
                "6",
            ),
            ConfigKey(
                "limits.slot_timeout",
                "positive number of seconds",
                "30.0",
                "30.0",
                "How long a connection waits for a slot before failing with `SocketLimitError`.",
                "30",
            ),
            ConfigKey(
                "limits.wall_time",
                "positive number of seconds",
                "30.0",
                "30.0",
                "How long one request may take to respond, from the handler's start until the "
                "response is sent; 504 when nothing was sent yet, else the response is aborted. "
                "Logged once, naming what was still running.",
                "60",
            ),
            ConfigKey(
                "limits.wait_until_time",
                "positive number of seconds",
                "30.0",
                "30.0",
                "How long `ctx.wait_until` work may run on after the response was sent; then it "
                "is cancelled and logged once, naming each task.",
                "60",
            ),
            ConfigKey(
                "limits.max_header_size",
                "positive integer (bytes)",
                "65536",
                "65536",
                "Bytes a request line and its headers may take together; more is answered 431.",
                "65536",
            ),
            ConfigKey(
                "limits.max_headers",
                "positive integer",
                "100",
                "100",
                "Header lines one request may have; more is answered 431.",
                "100",
            ),
            ConfigKey(
                "limits.header_timeout",
                "positive number of seconds",
                "10.0",
                "10.0",
                "Seconds a client has to send a complete request head (from the connection's "
                "start or the request's first byte); then 408 and the connection is closed.",
                "10",
            ),
            ConfigKey(
                "limits.max_connections",
                "positive integer",
                "1000",
                "1000",
                "Client connections one server process holds open at once; more are answered "
                "503 and closed. Raise the file descriptor limit (`ulimit -n`) with it.",
                "1000",
            ),
        ),
    ),
    Section(
        "server",
        "How the HTTP server runs.",
        (
            ConfigKey(
                "server.host",
                "string",
                '"127.0.0.1"',
                '"127.0.0.1"',
                'The address to listen on. Use `"0.0.0.0"` to accept connections from other '
                "machines (in a container, behind a load balancer).",
                '"0.0.0.0"',
                "--host",
            ),
            ConfigKey(
                "server.port",
                "integer 0-65535",
                "8787",
                "8787",
                "The TCP port; 0 lets the OS choose and the start-up line prints it.",
                "8080",
                "--port",
            ),
            ConfigKey(
                "server.workers",
                "positive integer",
                "1",
                "1",
                "Server processes sharing one listening socket (`serve` only; `dev` always runs "
                "one). Each process has its own runtime state, pools and metrics.",
                "4",
                "--workers",
            ),
            ConfigKey(
                "server.metrics",
                'boolean, or a path starting with "/"',
                '"/__tcpworkers/metrics"',
                "false",
                "Serve Prometheus metrics: `true` at `/__tcpworkers/metrics`, `false` for off, "
                "or at a path of your choice. The flag takes `on`, `off` or a path.",
                '"/metrics"',
                "--metrics",
            ),
            ConfigKey(
                "server.log_format",
                '"text" or "json"',
                '"text"',
                '"json"',
                "One readable line per request, or one JSON object per line.",
                '"json"',
                "--log-format",
            ),
            ConfigKey(
                "server.shutdown_timeout",
                "number of seconds >= 0",
                "30.0",
                "30.0",
                "After SIGTERM, how long requests in flight may take to finish.",
                "30",
                "--shutdown-timeout",
            ),
        ),
    ),
    Section(
        "bindings.NAME",
        "A binding: an object on `env.NAME` that the runtime provides. See "
        "[the pool binding](pool.md).",
        (
            ConfigKey(
                "bindings.NAME.type",
                'string: "postgres"',
                _NO,
                _NO,
                "The kind of binding. Required.",
                '"postgres"',
            ),
            ConfigKey(
                "bindings.NAME.url",
                "string (a libpq URL)",
                _NO,
                _NO,
                "The upstream PostgreSQL (or PgBouncer): `postgresql://user@host:5432/db`, with "
                "libpq's query parameters (`sslmode`, `sslrootcert`, `connect_timeout`...). "
                "This or `url_secret` is required.",
                '"postgresql://app@127.0.0.1:5432/app"',
            ),
            ConfigKey(
                "bindings.NAME.url_secret",
                "string (a `[secrets]` name)",
                _NO,
                _NO,
                "Instead of `url`: the `[secrets]` entry holding the whole URL (when it has a "
                "password).",
                '"DATABASE_URL"',
            ),
            ConfigKey(
                "bindings.NAME.password_secret",
                "string (a `[secrets]` name)",
                _NO,
                _NO,
                "The `[secrets]` entry holding the password for a `url` without one.",
                '"DB_PASSWORD"',
            ),
            ConfigKey(
                "bindings.NAME.min_size",
                "integer >= 0",
                "1",
                "1",
                "Server connections kept open even when idle, per process.",
                "1",
            ),
            ConfigKey(
                "bindings.NAME.max_size",
                "positive integer",
                "10",
                "10",
                "Server connections at most, per process (`serve --workers N`: N times this).",
                "10",
            ),
            ConfigKey(
                "bindings.NAME.idle_timeout",
                "positive number of seconds",
                "300.0",
                "300.0",
                "An idle server connection above `min_size` is closed after this.",
                "300",
            ),
            ConfigKey(
                "bindings.NAME.max_lifetime",
                "positive number of seconds",
                "3600.0",
                "3600.0",
                "A server connection this old is replaced when it is next idle.",
                "3600",
            ),
            ConfigKey(
                "bindings.NAME.acquire_timeout",
                "positive number of seconds",
                "10.0",
                "10.0",
                "How long a client waits for a server connection; then it gets a PostgreSQL "
                "error with SQLSTATE 53300 naming the binding and the setting to raise.",
                "10",
            ),
            ConfigKey(
                "bindings.NAME.prepared_statements",
                "boolean",
                "true",
                "true",
                "Keep the statements the pool prepares on each server connection (a repeated "
                "Parse costs no round trip). Set `false` when `url` points at a PgBouncer in "
                "transaction mode, which moves server connections between backends: statements "
                "are then prepared unnamed, per transaction.",
                "false",
            ),
        ),
    ),
)


def section_keys(table: str) -> tuple[str, ...]:
    """The key names (last part) the schema lists for ``table`` (``""`` for the top level)."""
    for section in SCHEMA:
        if section.table == table:
            return tuple(key.name for key in section.keys)
    raise KeyError(table)


def render_markdown(table: str | None = None) -> str:
    """The reference of every key (or of one ``table``'s keys, without its heading), as Markdown
    (what the docs site shows)."""
    lines: list[str] = []
    for section in SCHEMA:
        if table is not None and section.table != table:
            continue
        title = "Top level" if not section.table else f"`[{section.table}]`"
        if table is None:
            lines += [f"### {title}", "", section.doc, ""]
        lines += [
            "| key | type | default (`dev`) | default (`serve`) | flag | meaning |",
            "|---|---|---|---|---|---|",
        ]
        for key in section.keys:
            cells = (
                f"`{key.key}`",
                key.type,
                _default(key.dev),
                _default(key.serve),
                f"`{key.flag}`" if key.flag else "",
                f"{key.doc} Example: `{key.name} = {key.example}`",
            )
            if any("|" in cell for cell in cells):
                raise ValueError(f"{key.key}: a table cell cannot contain '|'")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _default(value: str | None) -> str:
    return "none" if value is None else f"`{value}`"
