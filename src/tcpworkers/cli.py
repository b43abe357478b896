"""``tcpworkers init | dev | serve | check``: the command line, argument parsing only.

The CLI parses the arguments, resolves the configuration once (:func:`tcpworkers.runtime.
load_config`) and calls the runtime's public functions: :func:`tcpworkers.runtime.serve` for
``dev`` and ``serve`` (binding, uvicorn, signals; see ``tcpworkers.runtime._server``),
:func:`tcpworkers.runtime.check` and :func:`tcpworkers.runtime.init_project`.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from tcpworkers._version import __version__
from tcpworkers.runtime import (
    CONFIG_FILENAME,
    DEFAULT_METRICS_PATH,
    DEFAULT_PORT,
    MAX_PORT,
    ConfigError,
    Mode,
    Overrides,
    check,
    display_path,
    display_worker,
    init_project,
    is_port,
    launch_environ,
    load_config,
    serve,
)

__all__ = ["build_parser", "main"]

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
    if not is_port(port, allow_zero=True):
        raise argparse.ArgumentTypeError(f"expected a port number 0-{MAX_PORT}, got {text!r}")
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
    if args.command == "check":
        return check(config, args.worker)
    return serve(
        config,
        args.worker or display_worker(config.worker),
        environ=_launch_environ(mode, args, overrides),
    )


def _launch_environ(mode: Mode, args: argparse.Namespace, overrides: Overrides) -> dict[str, str]:
    config_path = str(Path(args.config).resolve()) if args.config else None
    return launch_environ(mode, args.worker, config_path, overrides)


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


if __name__ == "__main__":
    sys.exit(main())
