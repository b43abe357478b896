"""``tcpworkers init [DIR]``: a working worker and a ``tcpworkers.toml`` with commented defaults.

The commented defaults are rendered from the configuration schema (``_config_schema.SCHEMA``),
which a test keeps equal to what the loader does, so the template cannot advertise a default or
a key that does not exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from tcpworkers.runtime._config_schema import SCHEMA, ConfigKey

__all__ = ["WORKER_TEMPLATE", "config_template", "init_project"]

WORKER_FILE: Final = "worker.py"
CONFIG_FILE: Final = "tcpworkers.toml"

WORKER_TEMPLATE: Final = '''\
"""A tcpworkers worker. Serve it with `tcpworkers dev` in this directory, then open
http://127.0.0.1:8787/?name=you (it reloads when you save this file)."""

from tcpworkers import Env, ExecutionContext, Request, Response, connect


async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    if request.path == "/":
        name = request.query.get("name", "world")
        return Response(f"{env.GREETING}, {name}!\\n")
    if request.path == "/tcp":
        # An outbound TCP connection: checked by [egress], owned by this request and closed
        # when it ends. Try it with an echo server on 127.0.0.1:9001 running:
        # `python -m tcpworkers.testing peers` (ECHO in [vars] or --var picks another).
        sock = connect(str(env.get("ECHO", "127.0.0.1:9001")))
        await sock.writable.write(b"ping\\n")
        return Response(await sock.readable.readuntil(b"\\n"))
    return Response("not found\\n", status=404)
'''

# Example lines for tables whose keys are names you choose (commented out in the template).
_NAMED_EXAMPLES: Final = {
    "secrets": ['# API_KEY = "MY_SERVICE_API_KEY"     # env.API_KEY = $MY_SERVICE_API_KEY'],
    "bindings.NAME": [
        "# A Postgres pool binding: drivers connect to env.DB.connection_string and share warm",
        "# server connections across requests.",
        "# [bindings.DB]",
    ],
}


def config_template(worker: str = WORKER_FILE) -> str:
    """The ``tcpworkers.toml`` ``init`` writes: every key, commented out at its default."""
    lines = [
        "# tcpworkers.toml: configuration for `tcpworkers dev` and `tcpworkers serve`.",
        "# Every commented line shows a key at its default; uncomment to change it.",
        "",
        f'worker = "{worker}"',
        "",
    ]
    for section in SCHEMA:
        if not section.table:
            continue
        if section.table in _NAMED_EXAMPLES:
            if section.table == "secrets":
                lines.append("[secrets]")
            lines += _NAMED_EXAMPLES[section.table]
            if section.table == "bindings.NAME":
                lines += [_commented(key) for key in section.keys]
            lines.append("")
            continue
        lines.append(f"[{section.table}]")
        if section.table == "vars":
            lines += ['GREETING = "hello"                 # env.GREETING', ""]
            continue
        for key in section.keys:
            lines.append(_commented(key))
        lines.append("")
    return "\n".join(lines)


def _commented(key: ConfigKey) -> str:
    if key.name in ("type", "url"):
        return f"# {key.name} = {key.example}"
    if key.name == "url_secret":
        return f"# {key.name} = {key.example}   # instead of url: a [secrets] name"
    if key.name == "password_secret":
        return f"# {key.name} = {key.example}   # the password, from [secrets]"
    if key.dev is None and key.serve is None:
        return f"# {key.name} = {key.example}   # default: none"
    value = f"# {key.name} = {key.dev}"
    notes = []
    if key.serve != key.dev:
        notes.append(f"serve: {key.serve}")
    if key.dev == "[]":
        notes.append(f"e.g. {key.example}")
    return value + (f"   # {'; '.join(notes)}" if notes else "")


def init_project(directory: Path) -> list[Path]:
    """Write ``worker.py`` and ``tcpworkers.toml`` into ``directory`` (created if needed).

    Returns:
        The files written.

    Raises:
        FileExistsError: one of the files exists already (nothing is written).
        OSError: the directory or a file cannot be written.
    """
    worker = directory / WORKER_FILE
    config = directory / CONFIG_FILE
    for path in (worker, config):
        if path.exists():
            raise FileExistsError(
                f"{path} already exists; tcpworkers init does not overwrite files: "
                "choose an empty directory (tcpworkers init DIR)"
            )
    directory.mkdir(parents=True, exist_ok=True)
    worker.write_text(WORKER_TEMPLATE, encoding="utf-8")
    config.write_text(config_template(), encoding="utf-8")
    return [worker, config]
