"""``tcpworkers dev``'s reload loop: short messages, and a broken reload that answers, not hangs.

Theory of operation. ``dev`` serves from a child process that uvicorn's reloader restarts when a
file changes; the listening socket belongs to the parent, so it keeps accepting while children
come and go. Two things made that loop unhelpful:

- every reload printed uvicorn's life cycle (a warning and seven lines of "Shutting down",
  "Waiting for application startup"...). :class:`QuietServerLog` drops those lines in ``dev``;
  the reloader (:func:`reloader_class`) passes the time of the change and the changed files to
  the new child in :data:`ENV_RELOAD`, and the child logs one line at info level when it is
  ready: ``reloaded worker.py (12 ms)``.
- a reload that failed (a syntax error, a bad ``tcpworkers.toml``) ended the child, and requests
  waited in the socket's backlog until the file was fixed. Now the child serves
  :func:`load_error_app` instead: every request gets a 500 page with the load error, until a save
  triggers the next reload.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any, Final

from tcpworkers.runtime._devpage import error_page

__all__ = [
    "ENV_RELOAD",
    "QuietServerLog",
    "load_error_app",
    "reload_changed",
    "reload_message",
    "reloader_class",
]

ENV_RELOAD: Final = "TCPWORKERS_RELOAD"
LOGGER: Final = "tcpworkers"

# uvicorn's life-cycle messages (logger "uvicorn.error", level INFO) that dev does not show.
_QUIET_PREFIXES: Final = (
    "Started server process",
    "Waiting for application startup",
    "Application startup complete",
    "Shutting down",
    "Waiting for application shutdown",
    "Application shutdown complete",
    "Finished server process",
    "Started reloader process",
    "Stopping reloader process",
    "Will watch for changes in these directories",
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class QuietServerLog(logging.Filter):
    """Drops uvicorn's informational life-cycle lines; warnings and errors always pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO or not record.name.startswith("uvicorn"):
            return True
        return not record.getMessage().startswith(_QUIET_PREFIXES)


def reloader_class() -> type[Any]:
    """uvicorn's file-watching reloader, telling each new server process what changed and when.

    Imported lazily: only ``dev`` with reload needs uvicorn's supervisors.
    """
    from uvicorn.supervisors import ChangeReload

    class DevReload(ChangeReload):  # type: ignore[misc, valid-type]
        def run(self) -> None:
            self.startup()
            for changes in self:
                if changes:
                    os.environ[ENV_RELOAD] = json.dumps(
                        {"at": time.time(), "changed": [_shown(path) for path in changes]}
                    )
                    self.restart()
            self.shutdown()

    return DevReload


def _shown(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def reload_changed(environ: Mapping[str, str] | None = None) -> str:
    """The files whose change started this server process (``"worker.py"``), or ``""``."""
    raw = (os.environ if environ is None else environ).get(ENV_RELOAD)
    if not raw:
        return ""
    try:
        changed = [str(name) for name in json.loads(raw)["changed"]]
    except (ValueError, KeyError, TypeError):
        return ""
    return ", ".join(changed[:3]) + (f" and {len(changed) - 3} more" if len(changed) > 3 else "")


def reload_message(environ: Mapping[str, str] | None = None) -> str | None:
    """``"reloaded worker.py (12 ms)"`` in a server process started by a reload, else ``None``.

    The time runs from the change the reloader saw to now (the new application is built).
    """
    raw = (os.environ if environ is None else environ).get(ENV_RELOAD)
    if not raw:
        return None
    try:
        elapsed = max(time.time() - float(json.loads(raw)["at"]), 0.0)
    except (ValueError, KeyError, TypeError):
        return None
    names = reload_changed(environ)
    return f"reloaded {names or 'the worker'} ({elapsed * 1000:.0f} ms)"


def load_error_app(
    exc: BaseException, *, what: str, redact: Callable[[str], str] = str
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """An ASGI app that answers every HTTP request with a 500 page showing ``exc``.

    Args:
        exc: why the worker (or its configuration) could not be loaded.
        what: what failed, for the page's title: ``"loading worker.py"``.
        redact: removes secret values from what the page shows.
    """
    title = f"500 Internal Server Error: {what} failed"
    hint = (
        "tcpworkers dev could not load the worker after the last change. Fix the file and save "
        "it: dev reloads and this page goes away. Every request gets this page until then."
    )

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return  # websockets: closing without accepting refuses them
        accept = _header(scope, b"accept")
        content_type, body = error_page(
            title=title,
            exc=exc,
            request=None,
            html_wanted="text/html" in accept,
            redact=redact,
            hint=hint,
        )
        data = body.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 500,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(data)).encode()),
                    (b"cache-control", b"no-store"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})

    return app


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""
