"""The worker runtime: load a worker, serve it over ASGI, one request scope per request.

- :func:`load_worker` finds a worker's handler (``fetch``, ``on_fetch``, a
  :class:`WorkerEntrypoint` subclass, or an ASGI application) in a file or module.
- :class:`WorkerApp` is the ASGI application that serves it: every request runs in its own
  ``RequestScope`` (egress policy, socket limits, clean-up), with ``env`` and ``ctx``.
- :class:`Request`, :class:`Response` and :class:`Headers` are the Fetch API in Python form;
  ``Response(sock.readable)`` streams a socket to the client.
- :class:`Env` carries vars, secrets and :class:`Binding` objects; :class:`ExecutionContext` is
  ``ctx`` (``ctx.wait_until``).
- :class:`RuntimeSettings` is what the configuration layer resolves for the runtime.
"""

from tcpworkers.egress._ports import MAX_PORT, is_port
from tcpworkers.errors import (
    BodyTooLargeError,
    BodyUsedError,
    ClientDisconnectedError,
    ConfigError,
    WorkerLoadError,
)
from tcpworkers.http._body import DEFAULT_MAX_BODY_SIZE
from tcpworkers.http._headers import Headers
from tcpworkers.http._request import Request
from tcpworkers.http._response import Response
from tcpworkers.runtime._app import CLIENT_CLOSED_REQUEST, WorkerApp
from tcpworkers.runtime._check import check
from tcpworkers.runtime._config import (
    CONFIG_FILENAME,
    DEFAULT_METRICS_PATH,
    DEFAULT_PORT,
    BindingConfig,
    Config,
    Overrides,
    ServerSettings,
    display_path,
    display_worker,
    load_config,
)
from tcpworkers.runtime._context import ExecutionContext
from tcpworkers.runtime._entrypoint import WorkerEntrypoint
from tcpworkers.runtime._env import Binding, Env
from tcpworkers.runtime._factory import launch_environ
from tcpworkers.runtime._scaffold import init_project
from tcpworkers.runtime._server import serve
from tcpworkers.runtime._settings import (
    Limits,
    Mode,
    RequestObserver,
    RequestRecord,
    RuntimeSettings,
    VarValue,
)
from tcpworkers.runtime._worker import (
    ACCEPTED_SHAPES,
    Worker,
    WorkerKind,
    load_worker,
)
from tcpworkers.runtime._workers_module import install_workers_module, workers_module

__all__ = [
    # handlers and their objects
    "Binding",
    "BodyTooLargeError",
    "BodyUsedError",
    "ClientDisconnectedError",
    "DEFAULT_MAX_BODY_SIZE",
    "Env",
    "ExecutionContext",
    "Headers",
    "Request",
    "Response",
    # loading and serving
    "ACCEPTED_SHAPES",
    "CLIENT_CLOSED_REQUEST",
    "Worker",
    "WorkerApp",
    "WorkerEntrypoint",
    "WorkerKind",
    "WorkerLoadError",
    "install_workers_module",
    "load_worker",
    "workers_module",
    # the settings contract with the configuration layer
    "Limits",
    "Mode",
    "RequestObserver",
    "RequestRecord",
    "RuntimeSettings",
    "VarValue",
    # configuration (tcpworkers.toml + flags) and serving: what the CLI calls
    "BindingConfig",
    "CONFIG_FILENAME",
    "Config",
    "ConfigError",
    "DEFAULT_METRICS_PATH",
    "DEFAULT_PORT",
    "MAX_PORT",
    "Overrides",
    "ServerSettings",
    "check",
    "display_path",
    "display_worker",
    "init_project",
    "is_port",
    "launch_environ",
    "load_config",
    "serve",
]
