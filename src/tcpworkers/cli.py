"""``tcpworkers dev | serve | check``: run a worker over HTTP, or check that it would run.

Theory of operation. The CLI resolves the configuration once (:func:`tcpworkers.config.
load_config`), loads the worker to fail fast with a clear message, binds the listening socket
itself, prints where it serves, then hands the socket to uvicorn (httptools, the gated event
loop, lifespan on). Binding first is what makes ``--port 0`` print the real port in every mode,
and lets the reloader and the ``--workers`` processes share one socket bound by the parent.

- One process (``serve``, ``dev --no-reload``): the application is built here and served by
  ``uvicorn.Server``; SIGTERM/SIGINT start a graceful shutdown (stop accepting, let in-flight
  responses finish for up to ``shutdown_timeout``), then the process exits 0.
- ``dev`` (reload) and ``serve --workers N``: uvicorn's supervisors start server processes that
  rebuild the application from the CLI's inputs (see ``tcpworkers.runtime._factory``).
"""

from __future__ import annotations

import argparse
import errno
import logging
import logging.config
import math
import os
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Final

from tcpworkers._version import __version__
from tcpworkers.config import (
    CONFIG_FILENAME,
    DEFAULT_METRICS_PATH,
    DEFAULT_PORT,
    Config,
    ConfigError,
    Overrides,
    display_path,
    load_config,
    worker_path,
)
from tcpworkers.errors import WorkerLoadError
from tcpworkers.runtime._devloop import reloader_class
from tcpworkers.runtime._factory import FACTORY, build_app, launch_environ
from tcpworkers.runtime._frontdoor import front_door
from tcpworkers.runtime._logging import FIELDS_ATTR, LOGGER, log_config, set_secrets
from tcpworkers.runtime._metrics import ASGIApp
from tcpworkers.runtime._scaffold import init_project
from tcpworkers.runtime._settings import Mode
from tcpworkers.runtime._worker import Worker, load_worker

__all__ = ["build_parser", "main"]

# uvicorn resolves this import string to a zero-argument loop factory in each server process.
GATED_LOOP: Final = "tcpworkers.drivers:new_gated_loop"
# Pending connections the kernel queues before the server accepts them (uvicorn's default).
BACKLOG: Final = 2048
# uvicorn's exit status for "failed before serving" (uvicorn.config.STARTUP_FAILURE).
STARTUP_FAILURE: Final = 3

_log = logging.getLogger(LOGGER)

_DESCRIPTION = """\
Run Python request handlers ("workers") over HTTP, with Cloudflare-Workers-style outbound
sockets: every connection a request opens is checked against an egress policy, counted
against per-request limits and closed when the request ends.
"""
_WORKER_HELP = (
    "the worker: a path (worker.py, app/worker.py:attr) or module:attribute; "
    f"default: worker from {CONFIG_FILENAME}"
)
_CONFIG_HELP = f"config file (default: {CONFIG_FILENAME} next to the worker, if there is one)"
_DEV_EPILOG = f"""\
dev defaults: 127.0.0.1:{DEFAULT_PORT}, egress preset "dev" (public, private and loopback
addresses), metrics at {DEFAULT_METRICS_PATH}, one readable log line per request, and a
restart whenever a .py file next to the worker or {CONFIG_FILENAME} changes.

example: tcpworkers dev worker.py --port 0 --var GREETING=hi
"""
_SERVE_EPILOG = f"""\
serve defaults: 127.0.0.1:{DEFAULT_PORT} (use --host 0.0.0.0 to accept connections from other
machines, e.g. in a container), egress preset "serve" (public addresses only), metrics off,
JSON logs, one process. On SIGTERM the server stops accepting connections and lets requests in
flight finish (up to --shutdown-timeout seconds) before it exits.

example: tcpworkers serve worker.py --host 0.0.0.0 --port 8080 --workers 4
"""
_CHECK_EPILOG = """\
Loads the configuration (including secrets from the environment) and the worker, prints what
would be served and exits 0, or prints the problem and exits 1. Secret values are never printed.
"""


# --- argument types -----------------------------------------------------------------------


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}")
    return port


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return number


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not (math.isfinite(seconds) and seconds >= 0):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return seconds


def _var(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(
            f"expected NAME=VALUE with NAME a Python identifier (env.NAME), got {text!r}"
        )
    return name, value


def _metrics(text: str) -> bool | str:
    if text in ("on", "off"):
        return text == "on"
    if text.startswith("/"):
        return text
    raise argparse.ArgumentTypeError(
        f'expected on, off or a path starting with "/" (such as /metrics), got {text!r}'
    )


# --- the parser ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``tcpworkers`` argument parser (its ``--help`` is the CLI reference)."""
    parser = argparse.ArgumentParser(prog="tcpworkers", description=_DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"tcpworkers {__version__}")
    # No command: main() prints the overview (the commands with an example each).
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter

    init = commands.add_parser(
        "init",
        help="write a worker and a tcpworkers.toml to start from",
        description="Write worker.py and a tcpworkers.toml with every setting commented at its "
        "default, then print the command that serves them.",
        epilog="example: tcpworkers init hello && cd hello && tcpworkers dev",
        formatter_class=formatter,
    )
    init.add_argument(
        "directory",
        nargs="?",
        default=".",
        metavar="DIR",
        help="where to write them (created if needed; default: the current directory)",
    )

    dev = commands.add_parser(
        "dev",
        help="serve a worker for development (reload on change)",
        description="Serve a worker for development: readable logs, reload on file change.",
        epilog=_DEV_EPILOG,
        formatter_class=formatter,
    )
    serve = commands.add_parser(
        "serve",
        help="serve a worker in production",
        description="Serve a worker in production: strict egress preset, JSON logs, N processes.",
        epilog=_SERVE_EPILOG,
        formatter_class=formatter,
    )
    check = commands.add_parser(
        "check",
        help="check the configuration and the worker, then exit",
        description="Check that the configuration is valid and the worker loads.",
        epilog=_CHECK_EPILOG,
        formatter_class=formatter,
    )
    for command in (dev, serve, check):
        command.add_argument("worker", nargs="?", metavar="WORKER", help=_WORKER_HELP)
        command.add_argument("--config", metavar="PATH", help=_CONFIG_HELP)
        command.add_argument(
            "--var",
            action="append",
            type=_var,
            default=[],
            metavar="NAME=VALUE",
            help="set env.NAME to the string VALUE, overriding [vars] (repeatable)",
        )
    for command in (dev, serve):
        command.add_argument(
            "--host", help="address to listen on (default: [server] host, else 127.0.0.1)"
        )
        command.add_argument(
            "--port",
            type=_port,
            help=(
                "port to listen on; 0 picks a free one "
                f"(default: [server] port, else {DEFAULT_PORT})"
            ),
        )
        command.add_argument(
            "--metrics",
            type=_metrics,
            metavar="on|off|PATH",
            help=f"serve Prometheus metrics (on: at {DEFAULT_METRICS_PATH})",
        )
        command.add_argument(
            "--log-format", choices=("text", "json"), help="log format (dev: text, serve: json)"
        )
    dev.add_argument("--no-reload", action="store_true", help="do not restart when files change")
    serve.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="server processes (default: [server] workers, else 1)",
    )
    serve.add_argument(
        "--shutdown-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="after SIGTERM, how long requests in flight may take to finish "
        "(default: [server] shutdown_timeout, else 30)",
    )
    check.add_argument(
        "--mode",
        choices=("dev", "serve"),
        default="serve",
        help="check the configuration as this command would use it (default: serve)",
    )
    return parser


def _overrides(args: argparse.Namespace) -> Overrides:
    return Overrides(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        workers=getattr(args, "workers", None),
        reload=False if getattr(args, "no_reload", False) else None,
        vars=dict(args.var),
        metrics=getattr(args, "metrics", None),
        log_format=getattr(args, "log_format", None),
        shutdown_timeout=getattr(args, "shutdown_timeout", None),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tcpworkers`` command line.

    Args:
        argv: the arguments (without the program name); ``sys.argv[1:]`` by default.

    Returns:
        The process exit status: 0 on success (including a shutdown by SIGTERM or SIGINT),
        1 when the configuration, the worker or the listening socket is unusable or the
        application failed to start, 2 for command-line usage errors (from argparse).
    """
    args = build_parser().parse_args(argv)
    if args.command is None:
        print(_OVERVIEW, end="")
        return 0
    if args.command == "init":
        return _init(args.directory)
    mode: Mode = args.mode if args.command == "check" else args.command
    overrides = _overrides(args)
    try:
        config = load_config(mode, args.worker, config_path=args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"tcpworkers {args.command}: error: {exc}", file=sys.stderr)
        return 1
    set_secrets(config.runtime.secrets.values())
    if args.command == "check":
        return _check(config, args.worker)
    logging.config.dictConfig(log_config(config.server.log_format, quiet=mode == "dev"))
    os.environ.update(_launch_environ(mode, args, overrides))
    return _serve(config, args.worker or config.worker)


def _launch_environ(mode: Mode, args: argparse.Namespace, overrides: Overrides) -> dict[str, str]:
    config_path = str(Path(args.config).resolve()) if args.config else None
    return launch_environ(mode, args.worker, config_path, overrides)


# --- check --------------------------------------------------------------------------------


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
    other = "dev" if config.mode == "serve" else "serve"
    print(
        f"ok: {label} is ready for tcpworkers {config.mode} (checked as `{config.mode}`; "
        f"--mode {other} checks it for tcpworkers {other})"
    )
    return 0


# --- init and the overview ----------------------------------------------------------------

_OVERVIEW: Final = "\n".join(
    [
        f'tcpworkers {__version__}: serve Python request handlers ("workers") over HTTP, with',
        "Cloudflare-Workers-style outbound sockets.",
        "",
        "commands:",
        "  init [DIR]       write a worker and a tcpworkers.toml to start from",
        "      tcpworkers init hello && cd hello && tcpworkers dev",
        "  dev [WORKER]     serve a worker for development: reload on change, error pages",
        "      tcpworkers dev worker.py --port 8787",
        "  serve [WORKER]   serve a worker in production: strict egress, JSON logs, N processes",
        "      tcpworkers serve worker.py --host 0.0.0.0 --port 8080 --workers 4",
        "  check [WORKER]   check the configuration and the worker, then exit",
        "      tcpworkers check worker.py --mode serve",
        "",
        "tcpworkers COMMAND --help shows a command's options; the docs: docs/ (mkdocs serve).",
        "",
    ]
)


def _init(directory: str) -> int:
    target = Path(directory)
    try:
        written = init_project(target)
    except OSError as exc:
        print(f"tcpworkers init: error: {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(f"wrote {display_path(path)}")
    here = target.resolve() == Path.cwd().resolve()
    cd = "" if here else f"cd {display_path(target)} && "
    print(f"next: {cd}tcpworkers dev")
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
        f"server:   {_url(server.host, server.port)}, {workers}, "
        f"metrics {server.metrics_path or 'off'}, {server.log_format} logs",
    ]


_KINDS: Final = {
    "fetch": "fetch handler",
    "entrypoint": "WorkerEntrypoint class",
    "asgi": "ASGI application",
}


def _describe(worker: Worker) -> str:
    return f"{worker.name}, {_KINDS.get(worker.kind, worker.kind)}"


# --- dev and serve ------------------------------------------------------------------------


def _url(host: str, port: int) -> str:
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
        access_log=False,  # tcpworkers.runtime._logging.AccessLog writes the access log
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
    url = _url(server.host, port)
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


if __name__ == "__main__":
    sys.exit(main())
