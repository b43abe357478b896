"""The docs' command reference is rendered from the parser: every command and flag is on it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).parents[2]


def _hook() -> object:
    spec = importlib.util.spec_from_file_location(
        "cli_reference", ROOT / "docs/hooks/cli_reference.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_command_and_flag_is_rendered() -> None:
    page = _hook().render()  # type: ignore[attr-defined]
    for name in ("init", "dev", "serve", "check"):
        assert f"$ tcpworkers {name} --help" in page
    for flag in ("--no-reload", "--workers", "--shutdown-timeout", "--mode", "--var", "--metrics"):
        assert flag in page
    assert "<!-- cli-reference -->" in (ROOT / "docs/cli.md").read_text()
