"""The release files agree: one version, the licence pyproject declares, a changelog entry."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest

import tcpworkers
from tcpworkers._version import __version__
from tcpworkers.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_the_version_is_written_once() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "version" not in project["project"]  # no second copy to forget
    assert "version" in project["project"]["dynamic"]
    dynamic = project["tool"]["setuptools"]["dynamic"]["version"]
    assert dynamic == {"attr": "tcpworkers._version.__version__"}
    assert tcpworkers.__version__ == __version__
    # The installed metadata (scripts/setup reinstalls when _version.py changes).
    assert importlib.metadata.version("tcpworkers") == __version__


def test_version_flag_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"tcpworkers {__version__}\n"


def test_the_changelog_has_a_section_for_this_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n")
    assert f"\n## [{__version__}] - " in text


def test_the_license_file_is_the_one_pyproject_declares() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.split()[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a stub
