"""Builds the ASGI application the CLI serves, in the CLI's process or in a server process.

With ``--reload`` or ``--workers N`` uvicorn starts fresh server processes (``spawn``) that
import the application by name, so the CLI passes what it resolved through environment
variables (:func:`launch_environ`) and each process rebuilds the same application with
:func:`create_app`, the factory uvicorn calls. Reading the config again in the server process
is deliberate: in ``dev`` an edited ``tcpworkers.toml`` takes effect on the next reload.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Final

from tcpworkers.drivers._loop import gate_every_new_loop
from tcpworkers.egress import set_default_policy
from tcpworkers.errors import ConfigError, WorkerLoadError
from tcpworkers.runtime._access import AccessLog
from tcpworkers.runtime._app import WorkerApp
from tcpworkers.runtime._asgi import ASGIApp
from tcpworkers.runtime._config import Config, Overrides, load_config
from tcpworkers.runtime._devloop import load_error_app, reload_changed, reload_message
from tcpworkers.runtime._logging import LOGGER, redact, set_secrets
from tcpworkers.runtime._metrics import Metrics, MetricsEndpoint
from tcpworkers.runtime._pgbinding import make_postgres_binding, pool_metrics
from tcpworkers.runtime._settings import Mode, RequestObserver
from tcpworkers.runtime._worker import load_worker

__all__ = [
    "ENV_CONFIG",
    "ENV_MODE",
    "ENV_OVERRIDES",
    "ENV_WORKER",
    "FACTORY",
    "build_app",
    "create_app",
    "launch_environ",
]

ENV_MODE: Final = "TCPWORKERS_MODE"
ENV_WORKER: Final = "TCPWORKERS_WORKER"
ENV_CONFIG: Final = "TCPWORKERS_CONFIG"
ENV_OVERRIDES: Final = "TCPWORKERS_OVERRIDES"
# The import string uvicorn uses to build the application in a server process.
FACTORY: Final = f"{__name__}:create_app"
# uvicorn's exit status for "failed before serving": its supervisor then stops instead of
# restarting the process in a loop (uvicorn.config.STARTUP_FAILURE).
STARTUP_FAILURE: Final = 3

_log = logging.getLogger(LOGGER)


def launch_environ(
    mode: Mode, worker: str | None, config_path: str | None, overrides: Overrides
) -> dict[str, str]:
    """The environment variables :func:`create_app` reads, for what the CLI was given.

    The CLI's inputs are passed (not the resolved config) so that secrets never travel in the
    environment under new names, and the server process resolves exactly as the CLI did.
    """
    return {
        ENV_MODE: mode,
        ENV_WORKER: worker or "",
        ENV_CONFIG: config_path or "",
        ENV_OVERRIDES: overrides.to_json(),
    }


def create_app() -> ASGIApp:
    """uvicorn's application factory in server processes: config from the environment.

    A configuration or worker error is logged (without a traceback: the message says what
    to fix) and ends the process with uvicorn's startup-failure status.
    """
    environ: Mapping[str, str] = os.environ
    given = environ.get(ENV_MODE)
    if given not in ("dev", "serve"):
        _log.error(
            "%s is %r: create_app() builds the application for `tcpworkers dev|serve` "
            "and is not meant to be used directly",
            ENV_MODE,
            given,
        )
        sys.exit(STARTUP_FAILURE)
    mode: Mode = "dev" if given == "dev" else "serve"
    try:
        config = load_config(
            mode,
            environ.get(ENV_WORKER) or None,
            config_path=environ.get(ENV_CONFIG) or None,
            overrides=Overrides.from_json(environ.get(ENV_OVERRIDES) or "{}"),
        )
        app = build_app(config)
    except Exception as exc:
        if mode == "dev":
            # dev's reloader keeps the listening socket: serve the error until the next save
            # instead of leaving requests in the backlog (issue 8 item 10).
            return _load_failed(exc, environ)
        if isinstance(exc, ConfigError | WorkerLoadError):
            _log.error("%s", exc)
        else:
            # Whatever importing the worker raised: the traceback is the useful part. The
            # status keeps supervisors from restarting in a loop.
            _log.exception("loading the worker failed")
        sys.exit(STARTUP_FAILURE)
    message = reload_message()
    if message is not None:
        _log.info("%s", message)
    return app


def _load_failed(exc: BaseException, environ: Mapping[str, str]) -> ASGIApp:
    changed = reload_changed(environ)
    what = (
        f"reloading {changed}" if changed else f"loading {environ.get(ENV_WORKER) or 'the worker'}"
    )
    until = "every request gets a 500 page with this error until the next save"
    if isinstance(exc, ConfigError | WorkerLoadError):
        _log.error("%s failed: %s; %s", what, exc, until)
    else:
        _log.error("%s failed; %s", what, until, exc_info=exc)
    return load_error_app(exc, what=what, redact=redact)


def build_app(config: Config) -> ASGIApp:
    """Load the worker and wrap it: access log, metrics (when enabled), secret redaction.

    Raises:
        WorkerLoadError: the worker cannot be loaded.
    """
    # Redact secrets from every log line this process writes from here on.
    set_secrets(config.runtime.secrets.values())
    # Code that escapes a request's scope (a fresh context, a thread running asyncio.run) gets
    # no more than a request would: the configured policy is the default from here on, in
    # every server process (each one builds its application here), before the worker loads.
    set_default_policy(config.runtime.policy)
    gate_every_new_loop()
    worker = load_worker(config.worker)
    bindings = {
        b.name: make_postgres_binding(b.postgres)
        for b in config.bindings.values()
        if b.postgres is not None
    }
    metrics = Metrics() if config.server.metrics_path is not None else None
    observers: list[RequestObserver] = [AccessLog(config.server.log_format)]
    if metrics is not None:
        observers.append(metrics)
        if bindings:
            metrics.add_collector(lambda: pool_metrics(bindings.values()))
    app: ASGIApp = WorkerApp(worker, config.runtime, bindings=bindings, observers=observers)
    if metrics is not None and config.server.metrics_path is not None:
        app = MetricsEndpoint(app, metrics, config.server.metrics_path)
    return app
