"""``tcpworkers check``: load the configuration and the worker, say what would be served."""

from __future__ import annotations

import sys
import traceback
from typing import Final

from tcpworkers.errors import WorkerLoadError
from tcpworkers.runtime._config import Config, display_path
from tcpworkers.runtime._logging import set_secrets
from tcpworkers.runtime._pgbinding import check_postgres_bindings
from tcpworkers.runtime._server import display_url
from tcpworkers.runtime._worker import Worker, load_worker

__all__ = ["check"]


def check(config: Config, shown: str | None) -> int:
    """Load ``config``'s worker and print a summary of what would be served.

    Returns:
        The exit status: 0 when the worker loads (and every postgres binding's server
        answers), 1 (with the reason on stderr) when not.
    """
    set_secrets(config.runtime.secrets.values())
    return _check(config, shown)


def _check(config: Config, shown: str | None) -> int:
    label = shown or config.worker
    try:
        worker = load_worker(config.worker)
    except WorkerLoadError as exc:
        print(f"tcpworkers check: error: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        # load_worker reports what it understands; anything else is a bug in the worker module
        # (or ours) and the traceback is the useful part.
        print(f"tcpworkers check: error: loading {label} failed:", file=sys.stderr)
        traceback.print_exception(exc, file=sys.stderr)
        return 1
    for line in _summary(config, label, worker):
        print(line)
    postgres = [b.postgres for b in config.bindings.values() if b.postgres is not None]
    if postgres:
        # Connect upstream once per binding: server version, auth method, TLS, or what failed.
        lines, errors = check_postgres_bindings(postgres, config.server.workers)
        for line in lines:
            print(line)
        for error in errors:
            print(f"tcpworkers check: error: {error}", file=sys.stderr)
        if errors:
            return 1
    other = "dev" if config.mode == "serve" else "serve"
    print(
        f"ok: {label} is ready for tcpworkers {config.mode} (checked as `{config.mode}`; "
        f"--mode {other} checks it for tcpworkers {other})"
    )
    return 0


def _summary(config: Config, label: str, worker: Worker) -> list[str]:
    runtime, server = config.runtime, config.server
    limits = runtime.limits
    wall_time = "none" if limits.wall_time is None else f"{limits.wall_time:g}s"
    wait_until = "none" if limits.wait_until_time is None else f"{limits.wait_until_time:g}s"
    secrets = ", ".join(
        f"{name} (from ${variable})" for name, variable in config.secret_sources.items()
    )
    bindings = ", ".join(f"{b.name} ({b.type})" for b in config.bindings.values())
    workers = f"{server.workers} process{'es' * (server.workers > 1)}"
    return [
        f"worker:   {label} ({_describe(worker)})",
        f"config:   {display_path(config.path) if config.path else 'none (defaults)'}",
        f"mode:     {config.mode}",
        f"egress:   {config.egress}",
        f"limits:   max_sockets={limits.max_sockets}, slot_timeout={limits.slot_timeout:g}s, "
        f"wall_time={wall_time}, wait_until_time={wait_until}",
        f"vars:     {', '.join(runtime.vars) or 'none'}",
        f"secrets:  {secrets or 'none'}",
        f"bindings: {bindings or 'none'}",
        f"server:   {display_url(server.host, server.port)}, {workers}, "
        f"metrics {server.metrics_path or 'off'}, {server.log_format} logs",
    ]


_KINDS: Final = {
    "fetch": "fetch handler",
    "entrypoint": "WorkerEntrypoint class",
    "asgi": "ASGI application",
}


def _describe(worker: Worker) -> str:
    return f"{worker.name}, {_KINDS.get(worker.kind, worker.kind)}"
