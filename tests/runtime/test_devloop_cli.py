"""The dev loop as a person meets it, with real subprocesses on loopback: ``tcpworkers init``,
bare ``tcpworkers``, what ``dev`` prints, reloads (good and broken: issue 8 item 10), colour,
``serve``'s command-line mistakes, ``check``'s mode, egress messages with the TOML fix."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.runtime.cli_harness import command, environment, run, tcpworkers, worker

pytestmark = pytest.mark.slow

ANSI = "\x1b["
HELLO = worker("hello.py")


def get(url: str, **kwargs: object) -> httpx.Response:
    return httpx.get(url, timeout=10, **kwargs)  # type: ignore[arg-type]


# --- init ---------------------------------------------------------------------------------


def test_init_then_dev_serves_the_template(tmp_path: Path) -> None:
    app = tmp_path / "hello-app"
    result = run("init", str(app), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (app / "worker.py").is_file()
    assert (app / "tcpworkers.toml").is_file()
    # It says what it wrote and the next command, which is the one run here.
    assert "wrote hello-app/worker.py" in result.stdout
    assert "next: cd hello-app && tcpworkers dev" in result.stdout
    with tcpworkers("dev", "--port", "0", cwd=app) as server:
        assert get(server.url + "/?name=you").text == "hello, you!\n"
        assert get(server.url + "/nope").status_code == 404


def test_init_in_the_current_directory_and_never_over_existing_files(tmp_path: Path) -> None:
    result = run("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "next: tcpworkers dev" in result.stdout
    again = run("init", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.startswith("tcpworkers init: error: ")
    assert "already exists" in again.stderr


# --- bare tcpworkers, check -----------------------------------------------------------------


def test_bare_tcpworkers_lists_the_commands_with_an_example_each() -> None:
    result = run()
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name in ("init", "dev", "serve", "check"):
        assert re.search(rf"^  {name} ", out, re.MULTILINE), out
        assert re.search(rf"^      tcpworkers {name}\b", out, re.MULTILINE), out
    assert "tcpworkers COMMAND --help" in out


@pytest.mark.parametrize("mode", ["dev", "serve"])
def test_check_says_which_mode_it_checked(mode: str) -> None:
    result = run("check", HELLO, "--mode", mode)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"ok: {HELLO} is ready for tcpworkers {mode} (checked as `{mode}`")


# --- what dev prints --------------------------------------------------------------------------


def _write_worker(path: Path, text: str) -> None:
    path.write_text(
        "from tcpworkers import Response\n\n\n"
        f"async def fetch(request, env, ctx):\n    return Response({text!r})\n"
    )


def test_dev_announces_itself_first_and_reloads_in_one_line(tmp_path: Path) -> None:
    app = tmp_path / "w.py"
    _write_worker(app, "one")
    with tcpworkers("dev", "w.py", "--port", "0", cwd=tmp_path) as server:
        assert get(server.url + "/").text == "one"
        first = server.output.splitlines()[0]
        assert first.startswith("tcpworkers dev: serving w.py on http://127.0.0.1:"), server.output
        time.sleep(0.2)
        _write_worker(app, "two")
        line = server.wait_for(r"^reloaded w\.py \((\d+) ms\)$", timeout=20)
        assert int(line.group(1)) < 20_000
        assert get(server.url + "/").text == "two"
    for noise in (
        "Will watch for changes",
        "Started reloader process",
        "Started server process",
        "Waiting for application startup",
        "Application startup complete",
        "detected changes",
        "Shutting down",
        "Finished server process",
    ):
        assert noise not in server.output, server.output


def test_a_failed_reload_answers_every_request_with_the_error_until_fixed(
    tmp_path: Path,
) -> None:
    app = tmp_path / "w.py"
    _write_worker(app, "one")
    with tcpworkers("dev", "w.py", "--port", "0", cwd=tmp_path) as server:
        assert get(server.url + "/").text == "one"
        time.sleep(0.2)
        app.write_text("async def fetch(request, env, ctx:\n    pass\n")  # a syntax error
        server.wait_for(r"reloading w\.py failed", timeout=20)
        for path in ("/", "/other"):
            response = get(server.url + path)  # answered, not left hanging
            assert response.status_code == 500
            assert "SyntaxError" in response.text
            assert "w.py" in response.text
            assert "Fix the file and save it" in response.text
        page = get(server.url + "/", headers={"accept": "text/html"})
        assert page.headers["content-type"].startswith("text/html")
        _write_worker(app, "fixed")
        server.wait_for(r"^reloaded w\.py \(\d+ ms\)$", timeout=20)
        assert get(server.url + "/").text == "fixed"


def test_a_broken_config_on_reload_is_shown_too(tmp_path: Path) -> None:
    _write_worker(tmp_path / "w.py", "ok")
    config = tmp_path / "tcpworkers.toml"
    config.write_text('worker = "w.py"\n')
    with tcpworkers("dev", "--port", "0", cwd=tmp_path) as server:
        assert get(server.url + "/").text == "ok"
        time.sleep(0.2)
        config.write_text('worker = "w.py"\n[limits]\nmax_sockets = "six"\n')
        server.wait_for(r"tcpworkers\.toml: limits\.max_sockets", timeout=20)
        response = get(server.url + "/")
        assert response.status_code == 500
        assert 'limits.max_sockets: expected a positive integer, got "six"' in response.text
        config.write_text('worker = "w.py"\n')
        server.wait_for(r"^reloaded tcpworkers\.toml \(\d+ ms\)$", timeout=20)
        assert get(server.url + "/").text == "ok"


def test_dev_folds_the_runtime_frames_of_a_traceback_in_the_terminal() -> None:
    with tcpworkers("dev", HELLO, "--port", "0", "--no-reload", env={"HELLO_API_KEY": "x"}) as s:
        assert get(s.url + "/boom").status_code == 500
        s.wait_for(r"^GET /boom 500 ")
    out = s.output
    assert re.search(r'File ".*hello\.py", line \d+, in fetch', out), out
    assert re.search(r"\d+ runtime frames? folded below", out), out
    assert '_app.py", line' not in out


# --- colour -----------------------------------------------------------------------------------


def _output_on_a_terminal(tmp_path: Path, extra_env: dict[str, str]) -> str:
    _write_worker(tmp_path / "w.py", "hi")
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        command("dev", "w.py", "--port", "0", "--no-reload"),
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
        cwd=tmp_path,
        env=environment({"TERM": "xterm", **extra_env}),
        start_new_session=True,
    )
    os.close(secondary)
    seen = b""
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.2)
            if ready:
                seen += os.read(main, 65536)
            match = re.search(rb"http://127\.0\.0\.1:(\d+)", seen)
            if match and b"\n" in seen[match.end() :]:
                get(f"http://127.0.0.1:{match.group(1).decode()}/")
                time.sleep(0.5)
                while select.select([main], [], [], 0.2)[0]:
                    seen += os.read(main, 65536)
                break
    finally:
        os.killpg(process.pid, 9)
        process.wait(10)
        os.close(main)
    return seen.decode(errors="replace")


def test_colour_on_a_terminal(tmp_path: Path) -> None:
    out = _output_on_a_terminal(tmp_path, {})
    assert ANSI in out, out
    assert "tcpworkers dev: serving" in out


def test_no_colour_with_no_color(tmp_path: Path) -> None:
    out = _output_on_a_terminal(tmp_path, {"NO_COLOR": "1"})
    assert "tcpworkers dev: serving" in out
    assert ANSI not in out, out


def test_no_colour_when_piped() -> None:
    with tcpworkers("dev", HELLO, "--port", "0", "--no-reload") as server:
        get(server.url + "/")
        server.wait_for(r"^GET / 200 ")
    assert ANSI not in server.output


# --- serve's command-line mistakes are plain text ------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["serve", "no_such_worker.py"], "no_such_worker.py"),
        (["serve", worker("no_handler.py")], "A worker module needs one of"),
        (["serve", worker("import_error.py")], "loading"),
    ],
)
def test_serve_prints_command_line_mistakes_as_plain_text(args: list[str], message: str) -> None:
    result = run(*args, "--port", "0")
    assert result.returncode == 1
    assert result.stderr.startswith("tcpworkers serve: error: "), result.stderr
    assert message in result.stderr
    for line in result.stderr.splitlines():
        assert not line.lstrip().startswith("{"), result.stderr


def test_serve_reports_a_port_in_use_as_plain_text() -> None:
    with tcpworkers("serve", HELLO, "--port", "0") as first:
        port = first.url.rsplit(":", 1)[1]
        result = run("serve", HELLO, "--port", port)
    assert result.returncode == 1
    assert result.stderr.startswith("tcpworkers serve: error: cannot listen on 127.0.0.1:")
    assert "choose another port with --port" in result.stderr


def test_serve_still_logs_json_once_it_serves() -> None:
    with tcpworkers("serve", HELLO, "--port", "0") as server:
        get(server.url + "/")
    records = [json.loads(line) for line in server.output.splitlines() if line.startswith("{")]
    assert any("serving" in r["message"] for r in records)


# --- egress messages ---------------------------------------------------------------------------


def test_a_denial_on_the_dev_page_shows_the_toml_line_that_allows_it(tmp_path: Path) -> None:
    config = tmp_path / "tcpworkers.toml"
    config.write_text('[egress]\npreset = "serve"\n')
    with tcpworkers(
        "dev", HELLO, "--port", "0", "--no-reload", "--config", str(config),
        "--var", "ECHO_PORT=9", env={"HELLO_API_KEY": "x"},
    ) as server:  # fmt: skip
        response = get(server.url + "/echo")
    assert response.status_code == 500
    assert (
        "if this destination is intended, add under [egress] in tcpworkers.toml: "
        'allow = ["127.0.0.1/32"]'
    ) in response.text


def test_an_allow_rule_that_cannot_match_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "tcpworkers.toml"
    config.write_text('[egress]\nallow = ["localhost"]\n')
    result = run("check", HELLO, "--config", str(config))
    assert result.returncode == 1
    assert 'egress.allow[0]: "localhost" can never allow anything' in result.stderr
    assert 'allow = ["127.0.0.1/32"]' in result.stderr
