"""``tcpworkers init``: the files it writes load as they are, in both modes, and it never
overwrites. (Serving them with ``tcpworkers dev`` is tested in test_cli_init.py.)"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tcpworkers.runtime._config import load_config
from tcpworkers.runtime._config_schema import SCHEMA
from tcpworkers.runtime._scaffold import config_template, init_project
from tcpworkers.runtime._worker import load_worker

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("mode", ["dev", "serve"])
def test_the_template_loads_as_written(tmp_path: Path, mode: str) -> None:
    written = init_project(tmp_path / "app")
    assert [p.name for p in written] == ["worker.py", "tcpworkers.toml"]
    config = load_config(mode, None, config_path=tmp_path / "app" / "tcpworkers.toml")  # type: ignore[arg-type]
    assert config.worker == str(tmp_path / "app" / "worker.py")
    assert config.runtime.vars == {"GREETING": "hello"}
    assert config.runtime.policy.name == mode


def test_the_template_worker_loads(tmp_path: Path) -> None:
    init_project(tmp_path)
    (tmp_path / "worker.py").rename(tmp_path / "init_template_worker.py")
    assert load_worker(str(tmp_path / "init_template_worker.py")).kind == "fetch"


def test_every_commented_default_is_valid_toml_for_its_key() -> None:
    # Uncommenting any key line gives a file the loader accepts (same key, same value).
    lines = config_template().splitlines()
    for section in SCHEMA:
        for key in section.keys:
            if "NAME" in key.key:
                continue
            matches = [line for line in lines if line.lstrip("# ").startswith(f"{key.name} = ")]
            assert matches, f"{key.key} is missing from the template"
    tomllib.loads(config_template())


def test_the_template_shows_a_binding_and_an_egress_allow_example() -> None:
    text = config_template()
    assert "# [bindings.DB]" in text
    assert '# type = "postgres"' in text
    assert '# allow = []   # e.g. ["10.0.0.0/8", "*.internal"]' in text


def test_init_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "tcpworkers.toml").write_text("# mine\n")
    with pytest.raises(FileExistsError, match="already exists"):
        init_project(tmp_path)
    assert (tmp_path / "tcpworkers.toml").read_text() == "# mine\n"
    assert not (tmp_path / "worker.py").exists()
