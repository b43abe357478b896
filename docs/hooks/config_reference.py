"""MkDocs hook: replace ``<!-- config-reference -->`` with the ``tcpworkers.toml`` reference.

The reference is rendered from ``tcpworkers.runtime._config_schema.SCHEMA``, which
``tests/docs/test_config_reference.py`` checks against the configuration loader, so the page
shows what the code accepts and nothing else.
"""

from __future__ import annotations

from typing import Any

from tcpworkers.runtime._config_schema import render_markdown

MARKER = "<!-- config-reference -->"
LIMITS_MARKER = "<!-- limits-reference -->"


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER in markdown:
        markdown = markdown.replace(MARKER, render_markdown())
    if LIMITS_MARKER in markdown:
        markdown = markdown.replace(LIMITS_MARKER, render_markdown("limits"))
    return markdown
