"""The docs' Python examples: every block parses, and the testing page's example test passes when
run as a test file (a real pytest subprocess on loopback)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
DOCS = sorted((ROOT / "docs").glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


@pytest.mark.unit
@pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
def test_every_python_block_parses(page: Path) -> None:
    for block in _blocks(page):
        # Snippets may await at top level (as in an asyncio REPL) or elide with "...".
        compile(block, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


@pytest.mark.slow
def test_the_testing_page_example_passes(tmp_path: Path) -> None:
    (block,) = _blocks(ROOT / "docs" / "testing.md")
    (tmp_path / "test_worker.py").write_text(block)
    result = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
            "asyncio_mode=auto", "-c", "/dev/null", "--rootdir", str(tmp_path), str(tmp_path),
        ],
        capture_output=True, text=True, timeout=120, check=False, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
