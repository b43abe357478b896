"""tcpworkers.toml + command-line flags -> one validated Config; every error names file and key.

No event loop and no network: files in a temporary directory, environments as dictionaries.
"""

# The error table asserts whole messages; one line per case reads better than wrapped strings.
# ruff: noqa: E501

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tcpworkers.egress import EgressPolicy
from tcpworkers.errors import TcpworkersError
from tcpworkers.runtime._config import (
    DEFAULT_METRICS_PATH,
    Config,
    ConfigError,
    Overrides,
    ServerSettings,
    load_config,
    worker_path,
)
from tcpworkers.runtime._settings import Limits

# Test tier: in memory (config files under tmp_path count as memory); see tests/_tiers.py.
pytestmark = pytest.mark.unit

ENV = {"MY_API_KEY": "s3cr3t-value", "DB_PASSWORD": "hunter22"}

SAMPLE = """\
worker = "worker.py"

[vars]
GREETING = "hello"
PAGE_SIZE = 50
RATIO = 0.5
DEBUG = true

[secrets]
API_KEY = "MY_API_KEY"

[egress]
preset = "serve"
allow = ["10.0.0.0/8", "*.internal"]
allow_ports = ["5432", "6379"]

[limits]
max_sockets = 4
slot_timeout = 2.5
wall_time = 60
max_header_size = 32768
max_headers = 50
header_timeout = 5
max_connections = 200

[server]
host = "0.0.0.0"
port = 9000
workers = 3
metrics = "/metrics"
log_format = "text"
shutdown_timeout = 10

[bindings.DB]
type = "postgres"
url = "postgres://app@db.internal:5432/app"
max_size = 10
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory that is also the current directory."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "worker.py").write_text("")
    return tmp_path


def write(directory: Path, text: str, name: str = "tcpworkers.toml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


def error_for(text: str, mode: str = "dev", **kwargs: object) -> ConfigError:
    write(Path.cwd(), text)
    with pytest.raises(ConfigError) as info:
        load_config(mode, "worker.py", environ=ENV, **kwargs)  # type: ignore[arg-type]
    return info.value


# --- defaults -----------------------------------------------------------------------------


def test_dev_defaults_without_a_file(project: Path) -> None:
    config = load_config("dev", "worker.py", environ={})
    assert config.path is None
    assert config.worker == "worker.py"
    assert config.server == ServerSettings(
        host="127.0.0.1",
        port=8787,
        workers=1,
        reload=True,
        log_format="text",
        metrics_path=DEFAULT_METRICS_PATH,
        shutdown_timeout=30.0,
    )
    assert config.runtime.mode == "dev"
    assert config.runtime.policy == EgressPolicy.dev()
    assert config.runtime.limits == Limits()
    assert config.runtime.metrics_path == DEFAULT_METRICS_PATH
    assert dict(config.runtime.vars) == {}
    assert dict(config.runtime.secrets) == {}
    assert config.egress == "dev"


def test_serve_defaults_are_strict(project: Path) -> None:
    config = load_config("serve", "worker.py", environ={})
    # Loopback by default even in serve: listening on every interface is a deliberate choice.
    assert config.server.host == "127.0.0.1"
    assert config.server.reload is False
    assert config.server.log_format == "json"
    assert config.server.metrics_path is None
    assert config.runtime.metrics_path is None
    assert config.runtime.policy == EgressPolicy.serve()
    assert config.egress == "serve"


def test_the_sample_file(project: Path) -> None:
    write(project, SAMPLE)
    config = load_config("serve", environ=ENV)
    assert config.path == project / "tcpworkers.toml"
    assert config.worker == str(project / "worker.py")
    assert dict(config.runtime.vars) == {
        "GREETING": "hello",
        "PAGE_SIZE": 50,
        "RATIO": 0.5,
        "DEBUG": True,
    }
    assert dict(config.runtime.secrets) == {"API_KEY": "s3cr3t-value"}
    assert dict(config.secret_sources) == {"API_KEY": "MY_API_KEY"}
    assert config.runtime.limits == Limits(
        max_sockets=4,
        slot_timeout=2.5,
        wall_time=60.0,
        max_header_size=32768,
        max_headers=50,
        header_timeout=5.0,
        max_connections=200,
    )
    assert config.runtime.policy == EgressPolicy.from_config(
        {"preset": "serve", "allow": ["10.0.0.0/8", "*.internal"], "allow_ports": ["5432", "6379"]}
    )
    assert config.egress == "serve + 4 rules"
    assert config.server == ServerSettings(
        host="0.0.0.0",
        port=9000,
        workers=3,
        reload=False,
        log_format="text",
        metrics_path="/metrics",
        shutdown_timeout=10.0,
    )
    assert list(config.bindings) == ["DB"]
    db = config.bindings["DB"]
    assert (db.name, db.type) == ("DB", "postgres")
    assert db.options == {"url": "postgres://app@db.internal:5432/app", "max_size": 10}
    assert db.postgres is not None
    assert (db.postgres.upstream.host, db.postgres.max_size) == ("db.internal", 10)


def test_secrets_as_a_list_of_names(project: Path) -> None:
    write(project, 'secrets = ["MY_API_KEY", "DB_PASSWORD"]\n')
    config = load_config("dev", "worker.py", environ=ENV)
    assert dict(config.runtime.secrets) == {"MY_API_KEY": "s3cr3t-value", "DB_PASSWORD": "hunter22"}
    assert dict(config.secret_sources) == {"MY_API_KEY": "MY_API_KEY", "DB_PASSWORD": "DB_PASSWORD"}


def test_an_empty_secret_is_still_set(project: Path) -> None:
    write(project, '[secrets]\nTOKEN = "EMPTY"\n')
    config = load_config("dev", "worker.py", environ={"EMPTY": ""})
    assert dict(config.runtime.secrets) == {"TOKEN": ""}


def test_dev_runs_one_process_whatever_the_file_says(project: Path) -> None:
    write(project, "[server]\nworkers = 4\n")
    assert load_config("dev", "worker.py", environ={}).server.workers == 1
    assert load_config("serve", "worker.py", environ={}).server.workers == 4


def test_the_egress_preset_follows_the_mode_unless_the_file_names_one(project: Path) -> None:
    write(project, '[egress]\nallow = ["10.1.0.0/16"]\n')
    assert load_config("dev", "worker.py", environ={}).runtime.policy.name == "dev"
    assert load_config("serve", "worker.py", environ={}).egress == "serve + 1 rule"
    write(project, '[egress]\npreset = "dev"\n')
    assert load_config("serve", "worker.py", environ={}).runtime.policy == EgressPolicy.dev()


@pytest.mark.parametrize(("value", "path"), [(True, DEFAULT_METRICS_PATH), (False, None)])
def test_metrics_true_or_false(project: Path, value: bool, path: str | None) -> None:
    write(project, f"[server]\nmetrics = {json.dumps(value)}\n")
    assert load_config("serve", "worker.py", environ={}).server.metrics_path == path


# --- finding the file and the worker ------------------------------------------------------


def test_the_file_next_to_the_worker_is_used(project: Path) -> None:
    app = project / "app"
    app.mkdir()
    (app / "worker.py").write_text("")
    write(app, '[vars]\nWHERE = "app"\n')
    write(project, '[vars]\nWHERE = "cwd"\n')
    config = load_config("dev", "app/worker.py", environ={})
    assert config.runtime.vars["WHERE"] == "app"
    assert config.path == project / "app" / "tcpworkers.toml"


def test_a_module_spec_uses_the_file_in_the_current_directory(project: Path) -> None:
    write(project, '[vars]\nWHERE = "cwd"\n')
    config = load_config("dev", "myapp.worker:Default", environ={})
    assert config.worker == "myapp.worker:Default"
    assert config.runtime.vars["WHERE"] == "cwd"


def test_config_names_the_file(project: Path) -> None:
    other = project / "conf"
    other.mkdir()
    write(project, '[vars]\nWHERE = "default"\n')
    path = write(other, '[vars]\nWHERE = "named"\n', name="prod.toml")
    config = load_config("serve", "worker.py", config_path=path, environ={})
    assert config.runtime.vars["WHERE"] == "named"
    assert config.path == path


def test_the_worker_in_the_file_is_relative_to_the_file(project: Path, tmp_path: Path) -> None:
    conf = project / "deploy"
    conf.mkdir()
    path = write(conf, 'worker = "../worker.py"\n')
    assert load_config("serve", config_path=path, environ={}).worker == str(conf / "../worker.py")
    write(conf, 'worker = "pkg.worker:app"\n')
    assert load_config("serve", config_path=path, environ={}).worker == "pkg.worker:app"


def test_the_command_line_worker_wins_over_the_file(project: Path) -> None:
    write(project, 'worker = "other.py"\n')
    assert load_config("dev", "worker.py", environ={}).worker == "worker.py"


def test_no_worker_anywhere(project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("dev", environ={})
    assert str(info.value) == (
        "no worker to run: name it on the command line (a path such as worker.py, or "
        "module:attribute)"
    )
    write(project, "[vars]\nA = 1\n")
    with pytest.raises(ConfigError) as info:
        load_config("dev", environ={})
    assert str(info.value).endswith('or set worker = "..." in tcpworkers.toml')


def test_a_missing_config_file(project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("dev", "worker.py", config_path="nope.toml", environ={})
    assert str(info.value) == "nope.toml: config file not found (named by --config)"


def test_paths_outside_the_current_directory_are_shown_absolute(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    path = write(elsewhere, "[limits]\nmax_sockets = 0\n")
    with pytest.raises(ConfigError) as info:
        load_config("dev", "worker.py", config_path=path, environ={})
    assert str(info.value) == (
        f"{path.resolve()}: limits.max_sockets: expected a positive integer, got 0"
    )


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ("worker.py", Path("worker.py")),
        ("app/worker.py", Path("app/worker.py")),
        ("app/worker.py:Default", Path("app/worker.py")),
        ("./pkg", Path("pkg")),
        ("pkg.worker:app", None),
        ("pkg.worker", None),
    ],
)
def test_worker_path(spec: str, path: Path | None) -> None:
    assert worker_path(spec) == path


# --- command-line overrides ---------------------------------------------------------------


def test_flags_override_the_file(project: Path) -> None:
    write(project, SAMPLE)
    overrides = Overrides(
        host="127.0.0.2",
        port=0,
        workers=2,
        vars={"GREETING": "hi", "EXTRA": "x"},
        metrics=False,
        log_format="json",
        shutdown_timeout=0.5,
    )
    config = load_config("serve", overrides=overrides, environ=ENV)
    assert config.server == ServerSettings(
        host="127.0.0.2",
        port=0,
        workers=2,
        reload=False,
        log_format="json",
        metrics_path=None,
        shutdown_timeout=0.5,
    )
    assert config.runtime.vars["GREETING"] == "hi"
    assert config.runtime.vars["EXTRA"] == "x"
    assert config.runtime.vars["PAGE_SIZE"] == 50
    assert config.runtime.metrics_path is None


def test_no_reload_and_metrics_flags(project: Path) -> None:
    config = load_config("dev", "worker.py", overrides=Overrides(reload=False), environ={})
    assert config.server.reload is False
    config = load_config("serve", "worker.py", overrides=Overrides(metrics=True), environ={})
    assert config.server.metrics_path == DEFAULT_METRICS_PATH
    config = load_config("serve", "worker.py", overrides=Overrides(metrics="/m"), environ={})
    assert config.server.metrics_path == "/m"


def test_overrides_round_trip_through_json() -> None:
    overrides = Overrides(host="::1", port=0, vars={"A": "1"}, metrics="/m", reload=False)
    assert Overrides.from_json(overrides.to_json()) == overrides
    assert Overrides.from_json("{}") == Overrides()
    with pytest.raises(TypeError, match="expected a JSON object of overrides"):
        Overrides.from_json("[1]")


def test_config_error_is_a_tcpworkers_value_error(project: Path) -> None:
    error = error_for("[limits]\nmax_sockets = 0\n")
    assert isinstance(error, ValueError)
    assert isinstance(error, TcpworkersError)
    assert error.path == "tcpworkers.toml"
    assert error.key == "limits.max_sockets"


def test_secret_values_are_not_in_the_config_repr(project: Path) -> None:
    write(project, SAMPLE)
    config = load_config("serve", environ=ENV)
    assert isinstance(config, Config)
    text = repr(config)
    assert "s3cr3t-value" not in text
    assert "secret_sources={'API_KEY': 'MY_API_KEY'}" in text  # names, never values
    assert "secret_sources={'API_KEY': 'MY_API_KEY'}" in text
    assert text.startswith("Config(mode='serve', worker=")


# --- every error path ---------------------------------------------------------------------

F = "tcpworkers.toml"

ERRORS = [
    # the file itself
    ("limits = [", f"{F}: invalid TOML: "),
    # unknown keys, with suggestions
    ("[limit]\n", f'{F}: limit: unknown key; did you mean "limits"? (expected one of worker,'),
    ("[zzz]\n", f"{F}: zzz: unknown key (expected one of worker, vars, secrets, egress,"),
    (
        "[limits]\nmax_socket = 3\n",
        f'{F}: limits.max_socket: unknown key; did you mean "max_sockets"? '
        "(expected one of max_sockets, slot_timeout, wall_time,",
    ),
    ("[server]\nprot = 1\n", f'{F}: server.prot: unknown key; did you mean "port"?'),
    # worker
    ("worker = 5\n", f'{F}: worker: expected a worker path or module:attribute such as "worker.py", got 5'),
    ('worker = " "\n', f'{F}: worker: expected a worker path or module:attribute such as "worker.py", got " "'),
    # vars
    ("vars = 5\n", f"{F}: vars: expected a table ([vars]), got 5"),
    ("[vars]\nA = [1, 2]\n", f"{F}: vars.A: expected a string, number or boolean, got [1, 2]"),
    ("[vars]\nA = 1979-05-27\n", f"{F}: vars.A: expected a string, number or boolean, got 1979-05-27"),
    (
        '[vars]\n"my-var" = 1\n',
        f'{F}: vars.my-var: "my-var" is not a valid name; env names are Python identifiers',
    ),
    # secrets
    (
        '[secrets]\nAPI_KEY = "NOT_SET_ANYWHERE"\n',
        f"{F}: secrets.API_KEY: environment variable NOT_SET_ANYWHERE is not set; set it before "
        "starting tcpworkers (export NOT_SET_ANYWHERE=...)",
    ),
    (
        'secrets = ["NOT_SET_ANYWHERE"]\n',
        f"{F}: secrets[0]: environment variable NOT_SET_ANYWHERE is not set;",
    ),
    (
        "[secrets]\nAPI_KEY = 1\n",
        f'{F}: secrets.API_KEY: expected the name of an environment variable, such as "API_KEY", got 1',
    ),
    ("secrets = [1]\n", f"{F}: secrets[0]: expected the name of an environment variable, got 1"),
    (
        '[secrets]\nAPI_KEY = "MY API KEY"\n',
        f'{F}: secrets.API_KEY: expected the name of an environment variable (letters, digits, _), got "MY API KEY"',
    ),
    (
        'secrets = "MY_API_KEY"\n',
        f'{F}: secrets: expected a table (NAME = "ENV_VAR") or a list of environment variable names, got "MY_API_KEY"',
    ),
    (
        '[vars]\nAPI_KEY = "x"\n[secrets]\nAPI_KEY = "MY_API_KEY"\n',
        f"{F}: secrets.API_KEY: API_KEY is already defined by vars.API_KEY; env names are unique",
    ),
    # bindings
    ("[bindings]\nDB = 5\n", f'{F}: bindings.DB: expected a table ([bindings.DB] with type = "postgres"), got 5'),
    ('[bindings.DB]\nurl = "x"\n', f'{F}: bindings.DB.type: missing; expected one of "postgres"'),
    (
        '[bindings.DB]\ntype = "postgre"\n',
        f'{F}: bindings.DB.type: unknown binding type "postgre"; did you mean "postgres"? '
        '(known types: "postgres")',
    ),
    ('[bindings.DB]\ntype = "mysql"\n', f'{F}: bindings.DB.type: unknown binding type "mysql" (known types: "postgres")'),
    (
        '[vars]\nDB = 1\n[bindings.DB]\ntype = "postgres"\n',
        f"{F}: bindings.DB: DB is already defined by vars.DB; env names are unique",
    ),
    # egress: the policy's own messages, prefixed with the file
    ('[egress]\nallow = ["10.0.0.1/8"]\n', f'{F}: egress.allow[0]: "10.0.0.1/8" is not a valid'),
    ('[egress]\npreset = "prod"\n', f'{F}: egress.preset: "prod" is not a preset; expected one of "dev", "serve", "none"'),
    ('[egress]\nalow = ["x"]\n', f'{F}: egress: unknown key "alow"; expected one of preset, allow, deny, allow_ports, deny_ports; did you mean "allow"?'),
    ("egress = 5\n", f"{F}: egress: expected a table ([egress]), got 5"),
    # limits
    ('[limits]\nmax_sockets = "six"\n', f'{F}: limits.max_sockets: expected a positive integer, got "six"'),
    ("[limits]\nmax_sockets = 0\n", f"{F}: limits.max_sockets: expected a positive integer, got 0"),
    ("[limits]\nmax_sockets = true\n", f"{F}: limits.max_sockets: expected a positive integer, got true"),
    ("[limits]\nmax_sockets = 2.5\n", f"{F}: limits.max_sockets: expected a positive integer, got 2.5"),
    ("[limits]\nslot_timeout = -1\n", f"{F}: limits.slot_timeout: expected a positive number of seconds, got -1"),
    ("[limits]\nslot_timeout = inf\n", f"{F}: limits.slot_timeout: expected a positive number of seconds, got inf"),
    ('[limits]\nslot_timeout = "5s"\n', f'{F}: limits.slot_timeout: expected a positive number of seconds, got "5s"'),
    ("[limits]\nwall_time = 0\n", f"{F}: limits.wall_time: expected a positive number of seconds, got 0"),
    ("[limits]\nmax_header_size = 0\n", f"{F}: limits.max_header_size: expected a positive integer, got 0"),
    ('[limits]\nmax_headers = "100"\n', f'{F}: limits.max_headers: expected a positive integer, got "100"'),
    ("[limits]\nheader_timeout = 0\n", f"{F}: limits.header_timeout: expected a positive number of seconds, got 0"),
    ("[limits]\nmax_connections = 1.5\n", f"{F}: limits.max_connections: expected a positive integer, got 1.5"),
    ("limits = 5\n", f"{F}: limits: expected a table ([limits]), got 5"),
    # server
    ('[server]\nhost = ""\n', f'{F}: server.host: expected an address to listen on, such as "0.0.0.0", got ""'),
    ("[server]\nhost = 5\n", f'{F}: server.host: expected an address to listen on, such as "0.0.0.0", got 5'),
    ("[server]\nport = 70000\n", f"{F}: server.port: expected a port number 0-65535, got 70000"),
    ('[server]\nport = "80"\n', f'{F}: server.port: expected a port number 0-65535, got "80"'),
    ("[server]\nport = true\n", f"{F}: server.port: expected a port number 0-65535, got true"),
    ("[server]\nworkers = 0\n", f"{F}: server.workers: expected a positive integer, got 0"),
    ('[server]\nlog_format = "xml"\n', f'{F}: server.log_format: expected "text" or "json", got "xml"'),
    (
        '[server]\nmetrics = "metrics"\n',
        f'{F}: server.metrics: expected true, false or a path starting with "/" such as "/metrics", got "metrics"',
    ),
    ("[server]\nmetrics = 1\n", f'{F}: server.metrics: expected true, false or a path starting with "/"'),
    ("[server]\nshutdown_timeout = -1\n", f"{F}: server.shutdown_timeout: expected a number of seconds >= 0, got -1"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_config_errors(project: Path, text: str, message: str) -> None:
    error = error_for(text, mode="serve")
    assert str(error).startswith(message), str(error)


def test_invalid_toml_says_where(project: Path) -> None:
    error = error_for("[limits]\nmax_sockets = \n")
    assert str(error).startswith("tcpworkers.toml: invalid TOML: ")
    assert "line 2" in str(error)
    assert error.key is None


def test_a_file_that_is_not_utf8(project: Path) -> None:
    (project / "tcpworkers.toml").write_bytes(b'[vars]\nA = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load_config("dev", "worker.py", environ={})
    assert str(info.value) == "tcpworkers.toml: invalid TOML: the file is not UTF-8 (byte 12)"


def test_an_unreadable_file(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(project, "")

    def refuse(*args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied")

    # Root reads any file whatever its mode, so the refusal is simulated.
    monkeypatch.setattr(Path, "open", refuse)
    with pytest.raises(ConfigError) as info:
        load_config("dev", "worker.py", environ={})
    assert str(info.value) == (
        "tcpworkers.toml: cannot read the config file: [Errno 13] Permission denied"
    )


def test_a_cli_var_cannot_take_a_secret_name(project: Path) -> None:
    write(project, '[secrets]\nAPI_KEY = "MY_API_KEY"\n')
    with pytest.raises(ConfigError) as info:
        load_config("dev", "worker.py", overrides=Overrides(vars={"API_KEY": "x"}), environ=ENV)
    assert str(info.value) == (
        "--var API_KEY: API_KEY is already defined by secrets.API_KEY in tcpworkers.toml; "
        "env names are unique"
    )
    assert info.value.key == "--var API_KEY"


def test_a_cli_var_needs_a_valid_name(project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config("dev", "worker.py", overrides=Overrides(vars={"a-b": "x"}), environ={})
    assert str(info.value) == (
        '--var a-b: "a-b" is not a valid name; env names are Python identifiers'
    )


def test_an_unknown_mode_is_a_programming_error(project: Path) -> None:
    with pytest.raises(ValueError, match='mode must be "dev" or "serve"'):
        load_config("prod", "worker.py", environ={})  # type: ignore[arg-type]
