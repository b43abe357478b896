"""[bindings.NAME] type = "postgres" through the real CLI: check connects upstream and reports,
config errors name the key, serve --workers 2 answers /pg through env.DB under the serve policy."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.pgserver import PgServer
from tests.runtime.cli_harness import run, tcpworkers

pytestmark = pytest.mark.slow  # the CLI as subprocesses

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "bench_worker.py"


def project(tmp_path: Path, pg: PgServer, extra: str = "", **binding: object) -> Path:
    options = {"url": f"postgresql://{pg.user}@{pg.host}:{pg.port}/{pg.database}", **binding}
    lines = [f"{key} = {value!r}".replace("'", '"') for key, value in options.items()]
    (tmp_path / "tcpworkers.toml").write_text(
        f'worker = "{EXAMPLE}"\n[secrets]\nPGPW = "PB_TEST_PGPW"\n'
        '[bindings.DB]\ntype = "postgres"\npassword_secret = "PGPW"\n'
        + "\n".join(lines)
        + "\n"
        + extra
    )
    return tmp_path


def test_check_reports_the_server_and_the_connection_total(
    tmp_path: Path, scram_postgres: PgServer
) -> None:
    assert scram_postgres.password is not None
    cwd = project(tmp_path, scram_postgres, "[server]\nworkers = 3\n", max_size=4)
    done = run("check", "--mode", "serve", env={"PB_TEST_PGPW": scram_postgres.password}, cwd=cwd)
    assert done.returncode == 0, done.stderr
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("  DB: "))
    assert f"postgresql://{scram_postgres.user}:***@" in line
    assert scram_postgres.password not in done.stdout
    assert "-> PostgreSQL " in line
    assert "auth scram-sha-256" in line
    assert "pool 1..4 per process x 3 processes = up to 12 server connections" in line


def test_check_says_what_failed(tmp_path: Path, scram_postgres: PgServer) -> None:
    cwd = project(tmp_path, scram_postgres)
    done = run("check", env={"PB_TEST_PGPW": "not-the-password"}, cwd=cwd)
    assert done.returncode == 1
    assert "tcpworkers check: error: bindings.DB: server connection to" in done.stderr
    assert f"as user '{scram_postgres.user}'" in done.stderr
    assert "28P01" in done.stderr
    assert "not-the-password" not in done.stderr + done.stdout


def test_config_errors_name_the_key(tmp_path: Path, scram_postgres: PgServer) -> None:
    cwd = project(tmp_path, scram_postgres, max_sizee=3)
    done = run("check", env={"PB_TEST_PGPW": "x"}, cwd=cwd)
    assert done.returncode == 1
    assert 'bindings.DB.max_sizee: unknown key; did you mean "max_size"?' in done.stderr
    cwd = project(tmp_path, scram_postgres, min_size=5, max_size=2)
    done = run("serve", env={"PB_TEST_PGPW": "x"}, cwd=cwd)
    assert done.returncode == 1
    assert "bindings.DB.min_size: 5 is above max_size (2)" in done.stderr


def test_serve_two_processes_under_the_serve_policy(
    tmp_path: Path, scram_postgres: PgServer
) -> None:
    assert scram_postgres.password is not None
    cwd = project(tmp_path, scram_postgres, "[server]\nmetrics = true\n", max_size=2)
    with (
        tcpworkers(
            "serve",
            "--port",
            "0",
            "--workers",
            "2",
            env={"PB_TEST_PGPW": scram_postgres.password},
            cwd=cwd,
        ) as server,
        httpx.Client(base_url=server.url, timeout=10) as client,
    ):
        for _ in range(6):
            response = client.get("/pg")
            assert response.status_code == 200, response.text
            assert response.text == "1"
        metrics = client.get("/__tcpworkers/metrics").text
    assert 'tcpworkers_pool_max_size{binding="DB"} 2' in metrics
    assert 'tcpworkers_pool_server_connections{binding="DB",state="idle"}' in metrics
