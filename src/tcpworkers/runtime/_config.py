"""One typed configuration, resolved once: ``tcpworkers.toml`` plus command-line flags.

Size: over the ~450-line guideline on purpose: this is the one reader of one file format, and
each key's check sits next to the others of its section with the shared reader that words every
error the same way (file, key, value, what was expected); splitting it by section would scatter
that reader.

The file lives next to the worker (or is named with ``--config``). Every section is optional::

    worker = "worker.py"          # used when the command line names no worker

    [vars]                        # plain values on env: strings, numbers, booleans
    GREETING = "hello"
    PAGE_SIZE = 50

    [secrets]                     # env.NAME = the value of an environment variable
    API_KEY = "MY_SERVICE_API_KEY"
    # or, when the names are the same:  secrets = ["API_KEY", "DB_PASSWORD"]  (top level)

    [egress]                      # see tcpworkers.egress.EgressPolicy.from_config
    preset = "serve"              # default: the mode's preset (dev or serve)
    allow = ["10.0.0.0/8", "*.internal"]
    allow_ports = ["5432", "6379"]

    [limits]
    max_sockets = 6               # simultaneous connections per request
    slot_timeout = 30             # seconds a connection may wait for a slot
    wall_time = 30                # seconds to respond (then 504, or the response is aborted)
    wait_until_time = 30          # seconds ctx.wait_until work may run after the response
    max_header_size = 65536       # bytes of request line + headers (more: 431)
    max_headers = 100             # header lines per request (more: 431)
    header_timeout = 10           # seconds to send a request head (then 408, closed)
    max_connections = 1000        # open connections per server process (more: 503)

    [server]
    host = "127.0.0.1"
    port = 8787
    workers = 4                   # processes (serve only; dev always runs one)
    metrics = true                # or false, or a path such as "/metrics"
    log_format = "json"           # or "text"
    shutdown_timeout = 30         # seconds in-flight requests get after SIGTERM

    [bindings.DB]                 # kept as typed data; the pool binding plugs in here
    type = "postgres"
    url = "postgres://app@db.internal:5432/app"

Resolution order: built-in defaults of the mode, then the file, then command-line flags.
Every problem is a :class:`ConfigError` whose message names the file, the dotted key, the bad
value and what is expected, e.g. ``tcpworkers.toml: limits.max_sockets: expected a positive
integer, got "six"``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, cast, final

from tcpworkers.egress import EgressPolicy
from tcpworkers.egress._ports import MAX_PORT, is_port
from tcpworkers.errors import ConfigError
from tcpworkers.runtime._config_values import integer, seconds, show, suggest
from tcpworkers.runtime._pgbinding import PostgresOptions, parse_postgres_options
from tcpworkers.runtime._settings import (
    DEFAULT_WAIT_UNTIL_TIME,
    DEFAULT_WALL_TIME,
    Limits,
    Mode,
    RuntimeSettings,
    VarValue,
)

__all__ = [
    "BINDING_TYPES",
    "CONFIG_FILENAME",
    "DEFAULT_METRICS_PATH",
    "DEFAULT_PORT",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "BindingConfig",
    "Config",
    "ConfigError",
    "LogFormat",
    "Overrides",
    "ServerSettings",
    "display_path",
    "display_worker",
    "load_config",
    "worker_path",
]

CONFIG_FILENAME: Final = "tcpworkers.toml"
# The port `wrangler dev` uses, so a worker's local URL looks familiar.
DEFAULT_PORT: Final = 8787
DEFAULT_METRICS_PATH: Final = "/__tcpworkers/metrics"
# How long in-flight requests may run after SIGTERM before they are cancelled. 30 s is the
# default grace period Kubernetes gives a pod between SIGTERM and SIGKILL.
DEFAULT_SHUTDOWN_TIMEOUT: Final = 30.0
# Binding types the runtime knows (runtime/_pgbinding.py validates a postgres binding's keys).
BINDING_TYPES: Final = ("postgres",)

LogFormat = Literal["text", "json"]
_LOG_FORMATS: Final = ("text", "json")
_ENV_VAR_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_TOP_KEYS: Final = ("worker", "vars", "secrets", "egress", "limits", "server", "bindings")
_LIMITS_KEYS: Final = (
    "max_sockets",
    "slot_timeout",
    "wall_time",
    "wait_until_time",
    "max_header_size",
    "max_headers",
    "header_timeout",
    "max_connections",
)
_SERVER_KEYS: Final = ("host", "port", "workers", "metrics", "log_format", "shutdown_timeout")


@final
@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How the HTTP server runs (the CLI's concern; the runtime never reads these).

    Attributes:
        host: the address to listen on.
        port: the TCP port; ``0`` lets the OS choose (the startup line shows the real one).
        workers: server processes; each has its own runtime state and metrics.
        reload: restart the server process when the worker or the config file changes.
        log_format: ``"text"`` (one readable line per request) or ``"json"`` (one object per
            line).
        metrics_path: where Prometheus metrics are served, or ``None``.
        shutdown_timeout: seconds in-flight requests may take to finish after SIGTERM.
    """

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    reload: bool = False
    log_format: LogFormat = "text"
    metrics_path: str | None = DEFAULT_METRICS_PATH
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT


@final
@dataclass(frozen=True, slots=True)
class BindingConfig:
    """One ``[bindings.NAME]`` table, validated for its type and otherwise kept as parsed.

    Attributes:
        name: the binding's name on ``env``.
        type: one of :data:`BINDING_TYPES`.
        options: every other key of the table, as TOML parsed it.
        postgres: for ``type = "postgres"``, the options validated (url parsed, secrets
            applied); see :mod:`tcpworkers.runtime._pgbinding`.
    """

    name: str
    type: str
    options: Mapping[str, object]
    postgres: PostgresOptions | None = field(default=None, repr=False)


@final
@dataclass(frozen=True, slots=True)
class Overrides:
    """Command-line flags that override the file; ``None`` means "not given".

    Attributes:
        host: ``--host``.
        port: ``--port``.
        workers: ``--workers`` (serve).
        reload: ``False`` for ``--no-reload`` (dev).
        vars: ``--var NAME=VALUE`` pairs; values stay strings.
        metrics: ``--metrics``: ``True`` (the default path), ``False`` (off) or a path.
        log_format: ``--log-format``.
        shutdown_timeout: ``--shutdown-timeout``.
    """

    host: str | None = None
    port: int | None = None
    workers: int | None = None
    reload: bool | None = None
    vars: Mapping[str, str] = field(default_factory=dict)
    metrics: bool | str | None = None
    log_format: LogFormat | None = None
    shutdown_timeout: float | None = None

    def to_json(self) -> str:
        """Serialise for a server process started by the CLI (see :meth:`from_json`)."""
        data = dataclasses.asdict(self)
        data["vars"] = dict(self.vars)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Overrides:
        """Rebuild what :meth:`to_json` wrote.

        Raises:
            ValueError: ``text`` is not JSON.
            TypeError: ``text`` is not what :meth:`to_json` writes.
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise TypeError(f"expected a JSON object of overrides, got {text!r}")
        return cls(**data)


@final
@dataclass(frozen=True, slots=True, repr=False)
class Config:
    """Everything ``tcpworkers dev|serve|check`` needs, validated.

    Attributes:
        mode: ``"dev"`` or ``"serve"``.
        worker: the worker to load, as given to ``load_worker`` (a path, relative to the
            current directory or absolute, or ``module:attribute``).
        path: the config file that was read (absolute), or ``None`` when there is none.
        runtime: what the runtime reads while serving.
        server: how the HTTP server runs.
        bindings: ``[bindings.NAME]`` tables by name.
        secret_sources: for each secret, the environment variable it was read from (the
            values are only in ``runtime.secrets``).
        egress: a one-line description of the egress policy, e.g. ``"serve + 2 rules"``.
    """

    mode: Mode
    worker: str
    path: Path | None
    runtime: RuntimeSettings
    server: ServerSettings
    bindings: Mapping[str, BindingConfig] = field(default_factory=dict)
    secret_sources: Mapping[str, str] = field(default_factory=dict)
    egress: str = ""

    def __repr__(self) -> str:
        # A config gets logged and printed while debugging: secret values never are.
        hidden = dict.fromkeys(self.runtime.secrets, "[secret]")
        runtime = dataclasses.replace(self.runtime, secrets=hidden)
        fields = [
            f"mode={self.mode!r}",
            f"worker={self.worker!r}",
            f"path={self.path!r}",
            f"runtime={runtime!r}",
            f"server={self.server!r}",
            f"bindings={self.bindings!r}",
            f"secret_sources={self.secret_sources!r}",
            f"egress={self.egress!r}",
        ]
        return f"Config({', '.join(fields)})"


def worker_path(spec: str) -> Path | None:
    """The file or directory a worker spec names, or ``None`` for a ``module:attribute`` spec.

    A spec is a path when it ends in ``.py`` or contains a path separator, optionally followed
    by ``:attribute`` (``workers/api.py:app``).
    """
    head, sep, attr = spec.rpartition(":")
    candidate = head if sep and attr.isidentifier() else spec
    if candidate.endswith(".py") or "/" in candidate or os.sep in candidate:
        return Path(candidate)
    return None


def load_config(
    mode: Mode,
    worker: str | None = None,
    *,
    config_path: str | os.PathLike[str] | None = None,
    overrides: Overrides | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Find, read and validate the configuration, and apply command-line overrides.

    Args:
        mode: ``"dev"`` or ``"serve"``; chooses the defaults (see the README).
        worker: the worker spec from the command line; ``None`` to use ``worker`` from the file.
        config_path: ``--config``; when ``None``, ``tcpworkers.toml`` next to the worker (the
            current directory for a ``module:attribute`` spec) is used if it exists.
        overrides: command-line flags.
        environ: where secrets are read from; defaults to ``os.environ``.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the file is missing (when named), is not valid TOML, or a value is
            invalid; a secret's environment variable is not set; there is no worker to run.
    """
    overrides = overrides if overrides is not None else Overrides()
    environ = environ if environ is not None else os.environ
    path = _find_config(worker, config_path)
    label = display_path(path) if path is not None else "command line"
    data = _read_toml(path, label) if path is not None else {}
    return _Resolver(mode, label, path, environ).resolve(data, worker, overrides)


def _find_config(worker: str | None, config_path: str | os.PathLike[str] | None) -> Path | None:
    if config_path is not None:
        path = Path(config_path)
        if not path.is_file():
            shown = display_path(path)
            raise ConfigError(f"{shown}: config file not found (named by --config)", path=shown)
        return path.resolve()
    base = Path.cwd()
    if worker is not None:
        named = worker_path(worker)
        if named is not None:
            base = named if named.is_dir() else named.parent
    candidate = base / CONFIG_FILENAME
    return candidate.resolve() if candidate.is_file() else None


def display_path(path: Path) -> str:
    """A path as messages show it: relative when it is below the current directory (as the
    user probably typed it), absolute otherwise."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def display_worker(spec: str) -> str:
    """A worker spec as messages show it: a path relative to the current directory when it is
    below it (``worker.py``, ``app/api.py:handler``); a ``module:attribute`` spec unchanged."""
    named = worker_path(spec)
    if named is None:
        return spec
    head, sep, attr = spec.rpartition(":")
    suffix = f":{attr}" if sep and attr.isidentifier() and worker_path(head) is not None else ""
    return display_path(named) + suffix


def _read_toml(path: Path, label: str) -> dict[str, object]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{label}: invalid TOML: {exc}", path=label) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{label}: invalid TOML: the file is not UTF-8 (byte {exc.start})", path=label
        ) from None
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read the config file: {exc}", path=label) from None


class _Resolver:
    """Validates one parsed file for one mode; every error names ``label`` and the key."""

    def __init__(
        self, mode: Mode, label: str, path: Path | None, environ: Mapping[str, str]
    ) -> None:
        if mode not in ("dev", "serve"):
            raise ValueError(f'mode must be "dev" or "serve", got {mode!r}')
        self.mode: Mode = mode
        self.label = label
        self.path = path
        self.environ = environ
        self.names: dict[str, str] = {}  # env name -> the key that defined it

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self.label}: {key}: {message}", path=self.label, key=key)

    def expected(self, key: str, what: str, value: object) -> ConfigError:
        return self.error(key, f"expected {what}, got {show(value)}")

    def check_keys(self, table: Mapping[str, object], known: tuple[str, ...], where: str) -> None:
        for key in table:
            if key not in known:
                dotted = f"{where}.{key}" if where else key
                raise self.error(
                    dotted,
                    f"unknown key{suggest(key, known)} (expected one of {', '.join(known)})",
                )

    def table(self, data: Mapping[str, object], key: str) -> Mapping[str, object]:
        value = data.get(key, {})
        if not isinstance(value, dict):
            raise self.expected(key, f"a table ([{key}])", value)
        return cast(Mapping[str, object], value)

    def claim(self, name: str, key: str) -> None:
        # vars, secrets and bindings share one namespace: env.NAME.
        if not name.isidentifier():
            raise self.error(
                key, f"{show(name)} is not a valid name; env names are Python identifiers"
            )
        previous = self.names.get(name)
        if previous is not None:
            raise self.error(key, f"{name} is already defined by {previous}; env names are unique")
        self.names[name] = key

    # --- sections ------------------------------------------------------------------------

    def resolve(
        self, data: Mapping[str, object], worker: str | None, overrides: Overrides
    ) -> Config:
        self.check_keys(data, _TOP_KEYS, "")
        file_worker = self.worker(data)  # validated even when the command line names one
        spec = worker if worker is not None else file_worker
        if spec is None:
            where = f' or set worker = "..." in {self.label}' if self.path else ""
            raise ConfigError(
                "no worker to run: name it on the command line (a path such as worker.py, or "
                f"module:attribute){where}",
                path=self.label if self.path else None,
            )
        file_vars = self.vars(data)
        secrets, sources = self.secrets(data)
        bindings = self.bindings(data, secrets)
        cli_vars = self.cli_vars(overrides.vars, file_vars)
        policy, egress = self.egress(data)
        server = self.server(data, overrides)
        runtime = RuntimeSettings(
            mode=self.mode,
            policy=policy,
            limits=self.limits(data),
            vars={**file_vars, **cli_vars},
            secrets=secrets,
            metrics_path=server.metrics_path,
        )
        return Config(
            mode=self.mode,
            worker=spec,
            path=self.path,
            runtime=runtime,
            server=server,
            bindings=bindings,
            secret_sources=sources,
            egress=egress,
        )

    def worker(self, data: Mapping[str, object]) -> str | None:
        value = data.get("worker")
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.expected(
                "worker", 'a worker path or module:attribute such as "worker.py"', value
            )
        named = worker_path(value)
        if named is None or named.is_absolute() or self.path is None:
            return value
        # A path in the file is relative to the file, wherever tcpworkers was started.
        return str(self.path.parent / value)

    def vars(self, data: Mapping[str, object]) -> dict[str, VarValue]:
        result: dict[str, VarValue] = {}
        for name, value in self.table(data, "vars").items():
            key = f"vars.{name}"
            self.claim(name, key)
            if not isinstance(value, str | int | float | bool):
                raise self.expected(key, "a string, number or boolean", value)
            result[name] = value
        return result

    def cli_vars(
        self, given: Mapping[str, str], file_vars: Mapping[str, VarValue]
    ) -> dict[str, str]:
        for name in given:
            if name in file_vars:
                continue  # overriding a [vars] value is the point of --var
            key = f"--var {name}"
            if not name.isidentifier():
                raise ConfigError(
                    f"{key}: {show(name)} is not a valid name; env names are Python identifiers",
                    key=key,
                )
            previous = self.names.get(name)
            if previous is not None:
                raise ConfigError(
                    f"{key}: {name} is already defined by {previous} in {self.label}; "
                    "env names are unique",
                    key=key,
                )
        return dict(given)

    def secrets(self, data: Mapping[str, object]) -> tuple[dict[str, str], dict[str, str]]:
        raw = data.get("secrets", {})
        pairs: list[tuple[str, str, str]] = []  # (env name, environment variable, key)
        if isinstance(raw, list):
            for index, item in enumerate(raw):
                key = f"secrets[{index}]"
                if not isinstance(item, str):
                    raise self.expected(key, "the name of an environment variable", item)
                pairs.append((item, item, key))
        elif isinstance(raw, dict):
            for name, variable in raw.items():
                key = f"secrets.{name}"
                if not isinstance(variable, str):
                    raise self.expected(
                        key, 'the name of an environment variable, such as "API_KEY"', variable
                    )
                pairs.append((name, variable, key))
        else:
            raise self.expected(
                "secrets",
                'a table (NAME = "ENV_VAR") or a list of environment variable names',
                raw,
            )
        values: dict[str, str] = {}
        sources: dict[str, str] = {}
        for name, variable, key in pairs:
            self.claim(name, key)
            if not _ENV_VAR_RE.fullmatch(variable):
                raise self.expected(
                    key, "the name of an environment variable (letters, digits, _)", variable
                )
            value = self.environ.get(variable)
            if value is None:
                raise self.error(
                    key,
                    f"environment variable {variable} is not set; set it before starting "
                    f"tcpworkers (export {variable}=...)",
                )
            values[name] = value
            sources[name] = variable
        return values, sources

    def bindings(
        self, data: Mapping[str, object], secrets: Mapping[str, str]
    ) -> dict[str, BindingConfig]:
        result: dict[str, BindingConfig] = {}
        for name, value in self.table(data, "bindings").items():
            key = f"bindings.{name}"
            self.claim(name, key)
            if not isinstance(value, dict):
                raise self.expected(key, f'a table ([{key}] with type = "postgres")', value)
            kind = value.get("type")
            if kind is None:
                raise self.error(
                    f"{key}.type",
                    f"missing; expected one of {', '.join(map(show, BINDING_TYPES))}",
                )
            if kind not in BINDING_TYPES:
                raise self.error(
                    f"{key}.type",
                    f"unknown binding type {show(kind)}"
                    f"{suggest(str(kind), BINDING_TYPES)} (known types: "
                    f"{', '.join(map(show, BINDING_TYPES))})",
                )
            options = {k: v for k, v in value.items() if k != "type"}
            postgres = parse_postgres_options(name, options, secrets, label=self.label)
            result[name] = BindingConfig(name, str(kind), options, postgres)
        return result

    def egress(self, data: Mapping[str, object]) -> tuple[EgressPolicy, str]:
        raw = data.get("egress", {})
        if not isinstance(raw, dict):
            raise self.expected("egress", "a table ([egress])", raw)
        try:
            policy = EgressPolicy.from_config(raw, key="egress", default_preset=self.mode)
        except ValueError as exc:
            # from_config's messages already start with the dotted key.
            key = str(exc).split(":", 1)[0]
            raise ConfigError(f"{self.label}: {exc}", path=self.label, key=key) from None
        added = sum(
            len(raw.get(name, ())) for name in ("allow", "deny", "allow_ports", "deny_ports")
        )
        summary = policy.name if not added else f"{policy.name} + {added} rule{'s' * (added > 1)}"
        return policy, summary

    def limits(self, data: Mapping[str, object]) -> Limits:
        table = self.table(data, "limits")
        self.check_keys(table, _LIMITS_KEYS, "limits")
        defaults = Limits()
        return Limits(
            max_sockets=self.positive_int(table, "max_sockets", "limits", defaults.max_sockets),
            slot_timeout=self.seconds(table, "slot_timeout", "limits", defaults.slot_timeout),
            wall_time=self.seconds(table, "wall_time", "limits", DEFAULT_WALL_TIME),
            wait_until_time=self.seconds(
                table, "wait_until_time", "limits", DEFAULT_WAIT_UNTIL_TIME
            ),
            max_header_size=self.positive_int(
                table, "max_header_size", "limits", defaults.max_header_size
            ),
            max_headers=self.positive_int(table, "max_headers", "limits", defaults.max_headers),
            header_timeout=self.seconds(table, "header_timeout", "limits", defaults.header_timeout),
            max_connections=self.positive_int(
                table, "max_connections", "limits", defaults.max_connections
            ),
        )

    def server(self, data: Mapping[str, object], overrides: Overrides) -> ServerSettings:
        table = self.table(data, "server")
        self.check_keys(table, _SERVER_KEYS, "server")
        dev = self.mode == "dev"
        host = table.get("host", "127.0.0.1")
        if not isinstance(host, str) or not host.strip():
            raise self.expected("server.host", 'an address to listen on, such as "0.0.0.0"', host)
        port = table.get("port", DEFAULT_PORT)
        if not is_port(port, allow_zero=True):
            raise self.expected("server.port", f"a port number 0-{MAX_PORT}", port)
        workers = self.positive_int(table, "workers", "server", 1)
        log_format = table.get("log_format", "text" if dev else "json")
        if log_format not in _LOG_FORMATS:
            raise self.expected(
                "server.log_format", " or ".join(map(show, _LOG_FORMATS)), log_format
            )
        metrics = self.metrics(table.get("metrics", dev))
        shutdown_timeout = self.seconds(
            table, "shutdown_timeout", "server", DEFAULT_SHUTDOWN_TIMEOUT, allow_zero=True
        )
        if overrides.metrics is not None:
            metrics = _metrics_path(overrides.metrics)
        return ServerSettings(
            host=overrides.host if overrides.host is not None else host,
            port=overrides.port if overrides.port is not None else port,
            # dev runs one process (the reloader restarts it); workers is a serve setting.
            workers=1 if dev else (overrides.workers or workers),
            reload=dev and overrides.reload is not False,
            log_format=overrides.log_format or log_format,
            metrics_path=metrics,
            shutdown_timeout=(
                overrides.shutdown_timeout
                if overrides.shutdown_timeout is not None
                else shutdown_timeout
            ),
        )

    def metrics(self, value: object) -> str | None:
        if isinstance(value, bool) or (isinstance(value, str) and value.startswith("/")):
            return _metrics_path(value)
        raise self.expected(
            "server.metrics", 'true, false or a path starting with "/" such as "/metrics"', value
        )

    # --- scalars -------------------------------------------------------------------------

    def positive_int(self, table: Mapping[str, object], name: str, where: str, default: int) -> int:
        return integer(table.get(name, default), f"{where}.{name}", self.error)

    def seconds(
        self,
        table: Mapping[str, object],
        name: str,
        where: str,
        default: float,
        *,
        allow_zero: bool = False,
    ) -> float:
        value = table.get(name, default)
        return seconds(value, f"{where}.{name}", self.error, allow_zero=allow_zero)


def _metrics_path(value: bool | str) -> str | None:
    if value is True:
        return DEFAULT_METRICS_PATH
    if value is False:
        return None
    return value
