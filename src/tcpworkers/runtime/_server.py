"""Serving a worker: bind the listening socket, announce it, hand it to uvicorn.

Theory of operation. The configuration is resolved once (:func:`load_config`) and the worker is
loaded first, to fail fast with a clear message; then the listening socket is bound here,
where it is served is printed, and the socket goes to uvicorn (httptools behind the front
door's bounds, the gated event loop, lifespan on). Binding first is what makes ``--port 0``
print the real port in every mode, and lets the reloader and the ``--workers`` processes share
one socket bound by the parent.

- One process (``serve``, ``dev --no-reload``): the application is built here and served by
  ``uvicorn.Server``; SIGTERM/SIGINT start a graceful shutdown (stop accepting, let in-flight
  responses finish for up to ``shutdown_timeout``), then the process exits 0.
- ``dev`` (reload) and ``serve --workers N``: uvicorn's supervisors start server processes that
  rebuild the application from the launch environment (see ``tcpworkers.runtime._factory``).
"""

from __future__ import annotations

import errno
import logging
import logging.config
import math
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Final

from tcpworkers.errors import WorkerLoadError
from tcpworkers.runtime._asgi import ASGIApp
from tcpworkers.runtime._config import CONFIG_FILENAME, Config, display_path, worker_path
from tcpworkers.runtime._devloop import reloader_class
from tcpworkers.runtime._factory import FACTORY, STARTUP_FAILURE, build_app
from tcpworkers.runtime._frontdoor import front_door
from tcpworkers.runtime._logging import FIELDS_ATTR, LOGGER, log_config, set_secrets
from tcpworkers.runtime._worker import load_worker

__all__ = ["display_url", "serve"]

# uvicorn resolves this import string to a zero-argument loop factory in each server process.
GATED_LOOP: Final = "tcpworkers.drivers:new_gated_loop"
# Pending connections the kernel queues before the server accepts them (uvicorn's default).
BACKLOG: Final = 2048

_log = logging.getLogger(LOGGER)


def serve(config: Config, shown: str, *, environ: Mapping[str, str]) -> int:
    """Serve ``config``'s worker until SIGTERM/SIGINT (``tcpworkers dev`` and ``serve``).

    Args:
        config: the resolved configuration.
        shown: how messages name the worker (as the user gave it).
        environ: the launch environment server processes rebuild the application from
            (:func:`launch_environ`); added to ``os.environ``.

    Returns:
        The exit status: 0 after a graceful stop, 1 when the worker, the listening socket or
        the application's start-up failed (the reason is printed or logged).
    """
    set_secrets(config.runtime.secrets.values())
    logging.config.dictConfig(log_config(config.server.log_format, quiet=config.mode == "dev"))
    os.environ.update(environ)
    return _serve(config, shown)


def display_url(host: str, port: int) -> str:
    """``http://host:port``, with an IPv6 host in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (the first address ``host`` resolves to)."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        # Restarting right after a stop must not fail on connections in TIME_WAIT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening now (not when a server process starts) lets clients connect at once;
        # their connections wait in the backlog until a server process accepts them.
        sock.listen(BACKLOG)
    except BaseException:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _reload_paths(config: Config) -> tuple[list[str], list[str]]:
    """Directories to watch and file patterns that trigger a reload."""
    named = worker_path(config.worker)
    if named is None:
        base = Path.cwd()
    else:
        base = named.resolve() if named.is_dir() else named.resolve().parent
    dirs = [str(base)]
    includes = ["*.py", CONFIG_FILENAME]
    if config.path is not None:
        config_dir = str(config.path.resolve().parent)
        if config_dir not in dirs:
            dirs.append(config_dir)
        if config.path.name not in includes:
            includes.append(config.path.name)
    return dirs, includes


def _serve(config: Config, shown: str) -> int:
    # Imported here: `check` and `--help` do not need the server.
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    server_settings = config.server
    single = not server_settings.reload and server_settings.workers == 1
    app: ASGIApp | None = None
    try:
        if single:
            app = build_app(config)
        else:
            # Server processes load the worker themselves; loading it here first turns a
            # broken worker into one clear error instead of processes failing one by one.
            load_worker(config.worker)
    except WorkerLoadError as exc:
        return _usage_error(config, str(exc))
    except Exception as exc:
        _usage_error(config, f"loading {shown} failed:")
        traceback.print_exception(exc, file=sys.stderr)
        return 1
    try:
        sock = _bind(server_settings.host, server_settings.port)
    except OSError as exc:
        hint = (
            "is another server running there? choose another port with --port"
            if exc.errno == errno.EADDRINUSE
            else "check the address (--host, or host in [server])"
        )
        return _usage_error(
            config,
            f"cannot listen on {server_settings.host}:{server_settings.port}: "
            f"{exc.strerror or exc}; {hint}",
        )
    port = sock.getsockname()[1]
    reload_dirs, reload_includes = _reload_paths(config) if server_settings.reload else (None, None)
    uv_config = uvicorn.Config(
        app if app is not None else FACTORY,
        factory=app is None,
        host=server_settings.host,
        port=port,
        loop=GATED_LOOP,
        http=front_door(config.runtime.limits),  # httptools with the front door's bounds
        lifespan="on",
        interface="asgi3",
        log_config=log_config(server_settings.log_format, quiet=config.mode == "dev"),
        access_log=False,  # tcpworkers.runtime._access.AccessLog writes the access log
        workers=server_settings.workers,
        reload=server_settings.reload,
        reload_dirs=reload_dirs,
        reload_includes=reload_includes,
        # uvicorn takes whole seconds.
        timeout_graceful_shutdown=math.ceil(server_settings.shutdown_timeout),
    )
    # Every mode handles SIGTERM/SIGINT from before the startup line on: a supervisor or a
    # server told to stop before it started stops right away, and gracefully.
    if server_settings.reload:
        # uvicorn's reloader, telling each new server process what changed (one "reloaded"
        # line instead of uvicorn's life cycle; see runtime/_devloop.py).
        reloader = reloader_class()(uv_config, target=uvicorn.Server(uv_config).run, sockets=[sock])
        _on_stop_signals(reloader.signal_handler)
        _announce(config, shown, port)
        reloader.run()
        return 0
    if server_settings.workers > 1:
        supervisor = Multiprocess(uv_config, sockets=[sock])  # installs its signal handlers
        _announce(config, shown, port)
        supervisor.run()
        failed = any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes)
        return 1 if failed else 0
    # uvicorn handles the signals itself while it serves, then restores these handlers and
    # raises the signal again: handled here, a graceful stop ends with status 0 rather than as
    # death by signal.
    server = uvicorn.Server(uv_config)
    _on_stop_signals(server.handle_exit)
    _announce(config, shown, port)
    try:
        server.run(sockets=[sock])
    except SystemExit as exc:
        # uvicorn exits like this when the application's startup failed (it logged why).
        if exc.code == STARTUP_FAILURE:
            return 1
        raise
    return 0 if server.started else 1


def _usage_error(config: Config, message: str) -> int:
    """A mistake on the command line (a worker that does not load, a port in use): plain text
    on stderr, whatever the log format; JSON is for the log stream once the server runs."""
    print(f"tcpworkers {config.mode}: error: {message}", file=sys.stderr)
    return 1


def _on_stop_signals(handler: Callable[[int, FrameType | None], None]) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, handler)


def _announce(config: Config, shown: str, port: int) -> None:
    server = config.server
    url = display_url(server.host, port)
    details = [f"egress: {config.egress}", f"metrics: {server.metrics_path or 'off'}"]
    if server.workers > 1:
        details.append(f"workers: {server.workers}")
    if config.path is not None:
        details.append(f"config: {display_path(config.path)}")
    fields = {
        "url": url,
        "worker": shown,
        "mode": config.mode,
        "egress": config.egress,
        "metrics": server.metrics_path,
        "workers": server.workers,
        "config": str(config.path) if config.path else None,
    }
    _log.info(
        "tcpworkers %s: serving %s on %s (%s)",
        config.mode,
        shown,
        url,
        ", ".join(details),
        extra={FIELDS_ATTR: fields},
    )
