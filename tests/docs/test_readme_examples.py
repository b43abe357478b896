"""The README's examples table: every example in examples/ is listed, and every `tcpworkers dev`
command in it names a worker that loads (`tcpworkers check --mode dev`, a real subprocess)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.runtime.cli_harness import run

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]
README = (ROOT / "README.md").read_text()
SECTION = README.split("\n## Examples\n", 1)[1].split("\n## ", 1)[0]
ROWS = [line for line in SECTION.splitlines() if line.startswith("| `")]
COMMANDS = re.findall(r"`(tcpworkers dev [^`]+)`", SECTION)


def test_every_example_is_listed() -> None:
    listed = {re.match(r"\| `([^`]+)`", row).group(1) for row in ROWS}  # type: ignore[union-attr]
    examples = ROOT / "examples"
    workers = {p.name for p in examples.glob("*.py")}
    apps = {f"{p.name}/" for p in examples.iterdir() if (p / "worker.py").is_file()}
    assert listed == workers | apps


def test_every_row_says_how_to_run_it_and_what_it_needs() -> None:
    for row in ROWS:
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        assert len(cells) == 4, row
        assert cells[2], row
        assert cells[3], row


@pytest.mark.parametrize("command", COMMANDS)
def test_each_dev_command_names_a_worker_that_loads(command: str) -> None:
    args = shlex.split(command)[2:]
    result = run("check", *args, "--mode", "dev", cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "mode:     dev" in result.stdout
