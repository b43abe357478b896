"""The ``tcpworkers.toml`` reference on the docs site is rendered from ``_config_schema.SCHEMA``;
these tests fail when that table and the configuration loader disagree (a key added, renamed or
removed on one side only, or a default changed), so the docs cannot drift from the code.

No event loop and no network: files in a temporary directory.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

from tcpworkers.egress import _rules
from tcpworkers.runtime import _config as config_module
from tcpworkers.runtime import _pgbinding
from tcpworkers.runtime._config import Config, load_config
from tcpworkers.runtime._config_schema import SCHEMA, render_markdown, section_keys

pytestmark = [pytest.mark.unit, pytest.mark.filterwarnings("error")]

ENV = {"HOME": "/root"}


def _toml(value: object) -> str | None:
    """A loaded value in the TOML spelling the schema uses for defaults (None: no default)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple | list):
        return "[" + ", ".join(str(_toml(v)) for v in value) + "]"
    return repr(value)


# How to read each key's effective value from a loaded Config. A key in the schema without an
# entry here fails test_every_default_matches_the_loader: add one when you add a key.
READ: dict[str, Callable[[Config], object]] = {
    "worker": lambda c: None,  # no default: the command line or the file must name one
    "vars.NAME": lambda c: None,
    "secrets.NAME": lambda c: None,
    "egress.preset": lambda c: c.runtime.policy.name,
    "egress.allow": lambda c: [],
    "egress.deny": lambda c: [],
    "egress.allow_ports": lambda c: [],
    "egress.deny_ports": lambda c: [],
    "limits.max_sockets": lambda c: c.runtime.limits.max_sockets,
    "limits.slot_timeout": lambda c: c.runtime.limits.slot_timeout,
    "limits.wall_time": lambda c: c.runtime.limits.wall_time,
    "limits.wait_until_time": lambda c: c.runtime.limits.wait_until_time,
    "limits.max_header_size": lambda c: c.runtime.limits.max_header_size,
    "limits.max_headers": lambda c: c.runtime.limits.max_headers,
    "limits.header_timeout": lambda c: c.runtime.limits.header_timeout,
    "limits.max_connections": lambda c: c.runtime.limits.max_connections,
    "server.host": lambda c: c.server.host,
    "server.port": lambda c: c.server.port,
    "server.workers": lambda c: c.server.workers,
    "server.metrics": lambda c: c.server.metrics_path or False,
    "server.log_format": lambda c: c.server.log_format,
    "server.shutdown_timeout": lambda c: c.server.shutdown_timeout,
    "bindings.NAME.type": lambda c: None,
    # The postgres binding's keys are checked against runtime/_pgbinding.py below.
}
BINDING_KEYS_WITH_DEFAULTS = {
    "min_size",
    "max_size",
    "idle_timeout",
    "max_lifetime",
    "acquire_timeout",
}


def _load(tmp_path: Path, mode: str, text: str) -> Config:
    (tmp_path / "worker.py").write_text("async def fetch(request, env, ctx): ...\n")
    path = tmp_path / "tcpworkers.toml"
    path.write_text(text)
    return load_config(mode, str(tmp_path / "worker.py"), config_path=path, environ=ENV)  # type: ignore[arg-type]


def _full_file() -> str:
    """A file that sets every key of the schema to its example value (for a binding: ``url``,
    not the secret-based alternatives, which test_the_postgres_binding_keys_match_the_binding
    covers)."""
    lines: list[str] = []
    for section in SCHEMA:
        table = section.table.replace("NAME", "EXAMPLE")
        if table:
            lines.append(f"[{table}]")
        for key in section.keys:
            if key.name in ("url_secret", "password_secret"):
                continue
            name = key.name.replace("NAME", "EXAMPLE_" + table.split(".")[0].upper())
            lines.append(f"{name} = {key.example}")
        lines.append("")
    return "\n".join(lines)


@pytest.mark.parametrize("mode", ["dev", "serve"])
def test_every_default_matches_the_loader(tmp_path: Path, mode: str) -> None:
    loaded = _load(tmp_path, mode, "")
    for section in SCHEMA:
        for key in section.keys:
            if key.key.startswith("bindings.NAME.") and key.name != "type":
                continue  # test_the_postgres_binding_keys_match_the_binding
            assert key.key in READ, f"no reader for {key.key}: add one to READ"
            documented = key.dev if mode == "dev" else key.serve
            assert documented == _toml(READ[key.key](loaded)), f"{mode}: {key.key}"


@pytest.mark.parametrize("mode", ["dev", "serve"])
def test_every_documented_key_and_example_is_accepted(tmp_path: Path, mode: str) -> None:
    text = _full_file()
    tomllib.loads(text)  # the examples are valid TOML
    loaded = _load(tmp_path, mode, text)
    assert loaded.runtime.vars["EXAMPLE_VARS"] == "hello"
    assert "EXAMPLE" in loaded.bindings


def test_the_loader_knows_exactly_the_documented_keys() -> None:
    assert set(config_module._TOP_KEYS) == {
        s.table.split(".")[0] or k.name for s in SCHEMA for k in s.keys
    }
    assert set(config_module._LIMITS_KEYS) == set(section_keys("limits"))
    assert set(config_module._SERVER_KEYS) == set(section_keys("server"))
    assert set(_rules.CONFIG_KEYS) == {"preset", *section_keys("egress")}


def test_an_unknown_key_is_refused_so_the_reference_is_complete(tmp_path: Path) -> None:
    with pytest.raises(config_module.ConfigError, match="unknown key"):
        _load(tmp_path, "dev", "[limits]\nmax_socket = 3\n")


def test_the_rendered_reference_lists_every_key() -> None:
    page = render_markdown()
    for section in SCHEMA:
        for key in section.keys:
            assert f"`{key.key}`" in page
    assert "`limits.max_sockets` | positive integer | `6` | `6`" in page


def test_the_docs_page_includes_the_generated_reference() -> None:
    page = Path(__file__).parents[2] / "docs" / "runtime.md"
    assert "<!-- config-reference -->" in page.read_text()
    assert "<!-- limits-reference -->" in page.read_text()
    limits = render_markdown("limits")
    assert "`limits.max_sockets`" in limits
    assert "`server.port`" not in limits


def test_the_postgres_binding_keys_match_the_binding() -> None:
    keys = {k.name: k for k in next(s for s in SCHEMA if s.table == "bindings.NAME").keys}
    assert set(keys) == {"type", *_pgbinding.POSTGRES_KEYS}
    for name in _pgbinding.POSTGRES_KEYS:
        key = keys[name]
        expected = _pgbinding._DEFAULTS.get(name)
        assert key.dev == key.serve
        if expected is None:
            assert key.dev is None, name
        else:
            assert key.dev == (_toml(expected) if isinstance(expected, bool) else repr(expected)), (
                name
            )
    # Every example is accepted by the binding's own validation.
    url = tomllib.loads(f"v = {keys['url'].example}")["v"]
    examples = {n: tomllib.loads(f"v = {keys[n].example}")["v"] for n in BINDING_KEYS_WITH_DEFAULTS}
    options = _pgbinding.parse_postgres_options("DB", {"url": url, **examples}, {}, label="t")
    assert options.max_size == examples["max_size"]
    by_secret = _pgbinding.parse_postgres_options(
        "DB", {"url_secret": "DATABASE_URL"}, {"DATABASE_URL": url}, label="t"
    )
    assert by_secret.upstream.host == "127.0.0.1"
    with_password = _pgbinding.parse_postgres_options(
        "DB", {"url": url, "password_secret": "DB_PASSWORD"}, {"DB_PASSWORD": "pw"}, label="t"
    )
    assert with_password.upstream.password == "pw"
