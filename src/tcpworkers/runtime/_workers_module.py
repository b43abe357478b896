"""Cloudflare Python Workers compatibility: a ``workers`` module built from tcpworkers' classes.

A worker written for Cloudflare's Python Workers starts with ``from workers import ...``. When
tcpworkers loads a worker and no real ``workers`` module is importable, it installs this one as
``sys.modules["workers"]``, so such a worker runs unchanged::

    from workers import Response, WorkerEntrypoint

    class Default(WorkerEntrypoint):
        async def fetch(self, request):
            self.ctx.waitUntil(audit(request.url))
            return Response.json({"hello": self.env.NAME})

What is covered (each name is the tcpworkers object itself, not a copy):

- ``WorkerEntrypoint`` (``self.env``, ``self.ctx``; one instance per request), and the older
  module-level ``on_fetch(request, env[, ctx])`` handlers, with ``handler`` as a no-op decorator;
- ``Request`` (``method``, ``url``, ``headers``, ``await text()/json()/bytes()``), ``Response``
  (``Response(body, status=, headers=)``, ``Response.json(data)``, ``Response.redirect(url)``),
  ``Headers``, ``Context`` (the type of ``ctx``: ``ctx.waitUntil`` / ``ctx.wait_until``);
- ``fetch``: ``tcpworkers.fetch`` (outbound HTTP through the same egress gate);
- ``env``: vars, secrets and bindings as attributes (``self.env.API_KEY``).

What is not (using these raises an error naming the gap):

- the JavaScript FFI: ``import js``, ``from js import ...``, ``pyodide.ffi``, ``to_js``,
  ``import_from_javascript``, and JavaScript objects (``js.Response.new``);
- the Cloudflare storage and platform APIs behind bindings: KV (``env.NS.get()``), R2, D1,
  Durable Objects (``DurableObject``), Queues, Workflows (``WorkflowEntrypoint``), Workers AI,
  service bindings, RPC (``python_to_rpc``), ``patch_env``;
- the module-level ``workers.env`` and ``workers.waitUntil`` (use ``self.env``/``self.ctx``);
- ``FormData``, ``Blob``, ``File``; ``Response(status_text=...)``, ``request.cf``; and
  ``status``/``headers`` passed positionally to ``Response`` (they are keyword-only here);
- other handlers than fetch (``scheduled``, ``queue``, ``email``) and WebSockets in fetch
  workers.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from types import ModuleType
from typing import Any, Final, TypeVar

from tcpworkers.http._fetch import fetch
from tcpworkers.http._headers import Headers
from tcpworkers.http._request import Request
from tcpworkers.http._response import Response
from tcpworkers.runtime._context import ExecutionContext
from tcpworkers.runtime._entrypoint import WorkerEntrypoint

__all__ = ["install_workers_module", "workers_module"]

F = TypeVar("F", bound=Callable[..., Any])

MODULE_NAME: Final = "workers"

# Names Cloudflare's `workers` module has that tcpworkers does not provide, and why.
_NOT_PROVIDED: Final = {
    "DurableObject": "Durable Objects are a Cloudflare platform service",
    "WorkflowEntrypoint": "Workflows are a Cloudflare platform service",
    "FormData": "FormData is not implemented; parse the body with urllib.parse or a library",
    "Blob": "Blob is not implemented; use bytes",
    "File": "File is not implemented; use bytes",
    "import_from_javascript": "there is no JavaScript runtime",
    "patch_env": "env is fixed by configuration (tcpworkers.toml)",
    "python_to_rpc": "Workers RPC is a Cloudflare platform feature",
    "python_from_rpc": "Workers RPC is a Cloudflare platform feature",
    "env": "the module-level env needs Cloudflare's runtime; use self.env (or the env argument)",
    "waitUntil": "the module-level waitUntil needs Cloudflare's runtime; use self.ctx.waitUntil",
}


def handler(fn: F) -> F:
    """Cloudflare's decorator for module-level handlers; nothing to convert here, so a no-op."""
    return fn


def workers_module() -> ModuleType:
    """A new ``workers`` module holding the tcpworkers equivalents (see the module docstring)."""
    module = ModuleType(
        MODULE_NAME,
        "Cloudflare Python Workers' `workers` module, as provided by tcpworkers "
        "(see tcpworkers.runtime._workers_module for what is covered).",
    )
    exported: dict[str, object] = {
        "Context": ExecutionContext,
        "Headers": Headers,
        "Request": Request,
        "Response": Response,
        "WorkerEntrypoint": WorkerEntrypoint,
        "fetch": fetch,
        "handler": handler,
    }
    vars(module).update(exported)
    module.__all__ = sorted(exported)  # type: ignore[attr-defined]

    def __getattr__(name: str) -> object:
        reason = _NOT_PROVIDED.get(name)
        if reason is None:
            raise AttributeError(f"module 'workers' (tcpworkers compatibility) has no {name!r}")
        raise AttributeError(
            f"workers.{name} is not provided by tcpworkers' Cloudflare compatibility module: "
            f"{reason}"
        )

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    return module


def install_workers_module() -> bool:
    """Install :func:`workers_module` as ``sys.modules["workers"]`` unless a ``workers`` module
    is already imported or importable (a real one always wins).

    Returns:
        True if it was installed by this call.
    """
    if MODULE_NAME in sys.modules:
        return False
    try:
        real = importlib.util.find_spec(MODULE_NAME)
    except (ImportError, ValueError):
        real = None
    if real is not None:
        return False
    sys.modules[MODULE_NAME] = workers_module()
    return True
