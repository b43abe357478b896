"""MkDocs hook: replace ``<!-- cli-reference -->`` with the ``tcpworkers`` commands' ``--help``.

Rendered from the argument parser itself (``tcpworkers.cli.build_parser``), so the page is what
the installed command prints.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from tcpworkers.cli import build_parser

MARKER = "<!-- cli-reference -->"


def _help(parser: argparse.ArgumentParser) -> str:
    os.environ["COLUMNS"] = "100"  # argparse wraps to the terminal; the page has a fixed width
    return parser.format_help().rstrip()


def render() -> str:
    parser = build_parser()
    parts = ["```text", "$ tcpworkers --help", _help(parser), "```", ""]
    for action in parser._subparsers._group_actions if parser._subparsers else ():
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                parts += [f"### `tcpworkers {name}`", "", "```text"]
                parts += [f"$ tcpworkers {name} --help", _help(sub), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if MARKER in markdown:
        return markdown.replace(MARKER, render())
    return markdown
