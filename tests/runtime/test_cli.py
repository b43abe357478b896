"""The command line: arguments, ``tcpworkers check``, and every way startup can fail.

Serving itself (requests, logs, metrics, processes, signals, reload) is in test_serve.py.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tcpworkers.cli import build_parser
from tcpworkers.runtime import WorkerApp
from tcpworkers.runtime._config import Overrides, load_config
from tcpworkers.runtime._factory import ENV_MODE, build_app, create_app, launch_environ
from tcpworkers.runtime._metrics import MetricsEndpoint

from .cli_harness import run, tcpworkers, worker

# Test tier: most tests run the CLI as a subprocess (the few in-process parser tests ride
# along); see tests/_tiers.py.
pytestmark = pytest.mark.slow

HELLO = worker("hello.py")


def parse(*argv: str) -> Overrides:
    from tcpworkers.cli import _overrides

    return _overrides(build_parser().parse_args(argv))


# --- arguments (in process) ---------------------------------------------------------------


def test_dev_flags_become_overrides() -> None:
    overrides = parse(
        "dev", "w.py", "--host", "::1", "--port", "0", "--no-reload", "--var", "A=1",
        "--var", "B=x=y", "--metrics", "off", "--log-format", "json",
    )  # fmt: skip
    assert overrides == Overrides(
        host="::1",
        port=0,
        reload=False,
        vars={"A": "1", "B": "x=y"},
        metrics=False,
        log_format="json",
    )


def test_serve_flags_become_overrides() -> None:
    overrides = parse(
        "serve", "--workers", "3", "--shutdown-timeout", "2.5", "--metrics", "/m", "--var", "E="
    )
    assert overrides == Overrides(workers=3, shutdown_timeout=2.5, metrics="/m", vars={"E": ""})
    assert parse("serve", "--metrics", "on").metrics is True


def test_no_flags_override_nothing() -> None:
    assert parse("dev") == Overrides()
    assert parse("check", "w.py") == Overrides()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["dev", "--port", "http"], "--port: expected a port number 0-65535, got 'http'"),
        (["dev", "--port", "65536"], "--port: expected a port number 0-65535, got '65536'"),
        (["serve", "--workers", "0"], "--workers: expected a positive integer, got '0'"),
        (["serve", "--workers", "two"], "--workers: expected a positive integer, got 'two'"),
        (
            ["serve", "--shutdown-timeout", "-1"],
            "argument --shutdown-timeout: expected a number of seconds >= 0, got '-1'",
        ),
        (
            ["serve", "--shutdown-timeout", "soon"],
            "argument --shutdown-timeout: expected a number of seconds >= 0, got 'soon'",
        ),
        (
            ["dev", "--var", "NOVALUE"],
            "argument --var: expected NAME=VALUE with NAME a Python identifier (env.NAME), "
            "got 'NOVALUE'",
        ),
        (
            ["dev", "--var", "A-B=1"],
            "argument --var: expected NAME=VALUE with NAME a Python identifier",
        ),
        (
            ["dev", "--metrics", "yes"],
            'argument --metrics: expected on, off or a path starting with "/" (such as /metrics), '
            "got 'yes'",
        ),
        (["dev", "--log-format", "xml"], "argument --log-format: invalid choice: 'xml'"),
        (["dev", "w.py", "--workers", "2"], "unrecognized arguments: --workers 2"),
        (["serve", "--no-reload"], "unrecognized arguments: --no-reload"),
    ],
)
def test_usage_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_documents_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    for command, expected in [
        ("dev", ["--no-reload", "--var NAME=VALUE", "127.0.0.1:8787", "/__tcpworkers/metrics"]),
        ("serve", ["--workers N", "--shutdown-timeout SECONDS", "--host 0.0.0.0", "SIGTERM"]),
        ("check", ["--mode {dev,serve}", "Secret values are never printed"]),
    ]:
        with pytest.raises(SystemExit) as info:
            build_parser().parse_args([command, "--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        for fragment in expected:
            assert fragment in text, (command, fragment)


# --- as a program -------------------------------------------------------------------------


def test_the_installed_script() -> None:
    import subprocess

    script = Path(sys.executable).parent / "tcpworkers"
    result = subprocess.run(
        [str(script), "--version"], capture_output=True, text=True, timeout=20, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("tcpworkers ")


def test_check_prints_a_summary(tmp_path: Path) -> None:
    config = tmp_path / "prod.toml"
    config.write_text(
        '[vars]\nGREETING = "hi"\n[secrets]\nAPI_KEY = "CHECK_API_KEY"\n'
        '[egress]\nallow = ["10.0.0.0/8"]\n[limits]\nwall_time = 5\n'
    )  # bindings: check connects upstream; see tests/binding/test_cli.py
    result = run(
        "check", HELLO, "--config", str(config), "--var", "EXTRA=1",
        env={"CHECK_API_KEY": "value-never-printed"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines == [
        f"worker:   {HELLO} (fetch in {HELLO}, fetch handler)",
        f"config:   {config}",
        "mode:     serve",
        "egress:   serve + 1 rule",
        "limits:   max_sockets=6, slot_timeout=30s, wall_time=5s, wait_until_time=30s",
        "vars:     GREETING, EXTRA",
        "secrets:  API_KEY (from $CHECK_API_KEY)",
        "bindings: none",
        "server:   http://127.0.0.1:8787, 1 process, metrics off, json logs",
        f"ok: {HELLO} is ready for tcpworkers serve (checked as `serve`; --mode dev checks it "
        "for tcpworkers dev)",
    ]
    assert "value-never-printed" not in result.stdout + result.stderr


def test_check_in_dev_mode_without_a_config_file() -> None:
    result = run("check", HELLO, "--mode", "dev")
    assert result.returncode == 0, result.stderr
    assert "config:   none (defaults)" in result.stdout
    assert "egress:   dev" in result.stdout
    assert "metrics /__tcpworkers/metrics, text logs" in result.stdout


def test_check_reports_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "tcpworkers.toml"
    config.write_text("[limits]\nmax_sockets = 'six'\n")
    result = run("check", HELLO, "--config", str(config))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"tcpworkers check: error: {config}: limits.max_sockets: expected a positive integer, "
        'got "six"\n'
    )


def test_check_reports_a_missing_secret(tmp_path: Path) -> None:
    config = tmp_path / "tcpworkers.toml"
    config.write_text('[secrets]\nAPI_KEY = "TCPWORKERS_TEST_UNSET"\n')
    result = run("check", HELLO, "--config", str(config))
    assert result.returncode == 1
    assert "secrets.API_KEY: environment variable TCPWORKERS_TEST_UNSET is not set" in (
        result.stderr
    )


def test_check_reports_a_worker_without_a_handler() -> None:
    result = run("check", worker("no_handler.py"))
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"tcpworkers check: error: {worker('no_handler.py')} has no handler."
    )
    assert "async def fetch(request, env, ctx)" in result.stderr


def test_check_reports_a_missing_worker() -> None:
    result = run("check", "no/such/worker.py")
    assert result.returncode == 1
    assert result.stderr == "tcpworkers check: error: no worker file at 'no/such/worker.py'\n"


def test_check_shows_the_traceback_of_a_failing_import() -> None:
    result = run("check", worker("import_error.py"))
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"tcpworkers check: error: loading {worker('import_error.py')} failed:\n"
    )
    assert "RuntimeError: this worker fails at import time" in result.stderr


def test_check_without_any_worker(tmp_path: Path) -> None:
    result = run("check", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr == (
        "tcpworkers check: error: no worker to run: name it on the command line (a path such "
        "as worker.py, or module:attribute)\n"
    )


def test_the_worker_can_come_from_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "tcpworkers.toml").write_text(f'worker = "{HELLO}"\n')
    result = run("check", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"worker:   {HELLO} (fetch in {HELLO}, fetch handler)" in result.stdout


# --- startup failures of dev and serve ----------------------------------------------------


def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    config = tmp_path / "tcpworkers.toml"
    config.write_text("[server]\nport = 99999\n")
    result = run("serve", HELLO, "--config", str(config))
    assert result.returncode == 1
    assert result.stderr == (
        f"tcpworkers serve: error: {config}: server.port: expected a port number 0-65535, "
        "got 99999\n"
    )


@pytest.mark.parametrize("command", ["dev", "serve"])
def test_a_broken_worker_stops_startup(command: str) -> None:
    result = run(command, worker("no_handler.py"), "--port", "0", "--log-format", "text")
    assert result.returncode == 1
    assert f"error: {worker('no_handler.py')} has no handler." in result.stderr
    assert "serving" not in result.stderr


def test_a_failing_import_is_logged_with_its_traceback() -> None:
    result = run("dev", worker("import_error.py"), "--port", "0")
    assert result.returncode == 1
    assert f"error: loading {worker('import_error.py')} failed" in result.stderr
    assert "RuntimeError: this worker fails at import time" in result.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_failed_application_startup_stops_the_server(workers: str) -> None:
    result = run(
        "serve", worker("failing_startup.py"), "--port", "0", "--workers", workers,
        "--log-format", "text",
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "no database today" in result.stderr


def test_a_port_in_use() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run("serve", HELLO, "--port", str(port), "--log-format", "text")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"tcpworkers serve: error: cannot listen on 127.0.0.1:{port}: Address already in use; "
        "is another server running there? choose another port with --port"
    )


def test_an_address_not_on_this_machine() -> None:
    # 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never a local address, so bind() fails at once.
    result = run("serve", HELLO, "--host", "192.0.2.1", "--port", "0", "--log-format", "text")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "tcpworkers serve: error: cannot listen on 192.0.2.1:0: Cannot assign requested "
        "address; check the address (--host, or host in [server])"
    )


def test_serve_starts_and_stops_on_sigterm() -> None:
    with tcpworkers("serve", HELLO, "--port", "0", "--log-format", "text") as server:
        server.process.terminate()
        assert server.wait() == 0
    assert "Finished server process" in server.output


# --- the factory server processes use (in process) ----------------------------------------


@pytest.fixture
def launch(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Set the environment the CLI passes to server processes."""

    def set_environment(
        mode: str, worker_spec: str | None, config: str | None = None, **overrides: object
    ) -> None:
        environ = launch_environ("dev", worker_spec, config, Overrides(**overrides))  # type: ignore[arg-type]
        environ[ENV_MODE] = mode
        for name, value in environ.items():
            monkeypatch.setenv(name, value)

    return set_environment


def test_create_app_rebuilds_what_the_cli_resolved(launch: Callable[..., None]) -> None:
    launch("serve", HELLO, metrics="/m", vars={"GREETING": "x"})
    app = create_app()
    assert isinstance(app, MetricsEndpoint)
    assert app.path == "/m"
    assert isinstance(app.app, WorkerApp)
    assert app.app.settings.mode == "serve"
    assert dict(app.app.settings.vars) == {"GREETING": "x"}


def test_create_app_outside_the_cli(
    launch: Callable[..., None], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv(ENV_MODE, raising=False)
    with pytest.raises(SystemExit) as info:
        create_app()
    assert info.value.code == 3
    assert "TCPWORKERS_MODE is None: create_app() builds the application for" in caplog.text


def test_create_app_with_a_config_error(
    launch: Callable[..., None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "tcpworkers.toml"
    config.write_text("[limits]\nmax_sockets = -1\n")
    launch("serve", HELLO, str(config))  # dev answers with the error instead: test_devloop_cli
    with pytest.raises(SystemExit) as info:
        create_app()
    assert info.value.code == 3
    assert "limits.max_sockets: expected a positive integer, got -1" in caplog.text


def test_create_app_with_a_broken_worker(
    launch: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    launch("serve", worker("no_handler.py"))
    with pytest.raises(SystemExit) as info:
        create_app()
    assert info.value.code == 3
    assert "has no handler" in caplog.text
    launch("serve", worker("import_error.py"))
    caplog.clear()
    with pytest.raises(SystemExit) as info:
        create_app()
    assert info.value.code == 3
    assert "loading the worker failed" in caplog.text
    assert "RuntimeError: this worker fails at import time" in caplog.text


def test_a_postgres_binding_becomes_env_db(tmp_path: Path) -> None:
    from tcpworkers.pool._binding import PostgresBinding
    from tcpworkers.runtime import WorkerApp

    config = tmp_path / "tcpworkers.toml"
    config.write_text(
        '[server]\nmetrics = false\n[bindings.DB]\ntype = "postgres"\n'
        'url = "postgresql://app@127.0.0.1:5432/app"\nmax_size = 3\n'
    )
    app = build_app(load_config("dev", HELLO, config_path=config, environ={}))
    assert isinstance(app, WorkerApp)
    binding = app.env.DB
    assert isinstance(binding, PostgresBinding)  # started at lifespan startup, not here
    assert binding.settings.max_size == 3
    assert binding.upstream.address == "127.0.0.1:5432"
