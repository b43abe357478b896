"""Finding a worker's handler: ``load_worker("worker.py")`` and the shapes it accepts.

A worker is a Python module with one of these (the first three are the shapes Cloudflare's
Python Workers use):

- ``async def fetch(request, env, ctx)`` at module level;
- ``async def on_fetch(request, env)`` or ``on_fetch(request, env, ctx)``;
- a :class:`WorkerEntrypoint` subclass with ``async def fetch(self, request)``, found by name
  when it is called ``Default`` or when it is the only one in the module;
- an ASGI 3 application (FastAPI, Starlette, ...): a module attribute ``app``, or the only
  Starlette/FastAPI instance in the module.

The module is imported with connections forbidden: a ``connect()`` at import time (outside any
request) raises ``ConnectNotAllowedError`` saying where connections belong.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any, Final, Literal, final

from tcpworkers.errors import WorkerLoadError
from tcpworkers.http._request import Request
from tcpworkers.runtime._context import ExecutionContext
from tcpworkers.runtime._entrypoint import WorkerEntrypoint
from tcpworkers.runtime._env import Env
from tcpworkers.runtime._workers_module import install_workers_module
from tcpworkers.scope import forbid_connections

__all__ = ["Worker", "WorkerKind", "load_worker"]

WorkerKind = Literal["fetch", "entrypoint", "asgi"]
Invoke = Callable[[Request, Env, ExecutionContext], Awaitable[object]]

ACCEPTED_SHAPES: Final = """\
A worker module needs one of:
  - async def fetch(request, env, ctx)
  - async def on_fetch(request, env) or on_fetch(request, env, ctx)
  - class Default(WorkerEntrypoint) with async def fetch(self, request)
    (any name works when it is the only WorkerEntrypoint subclass in the module)
  - an ASGI application (FastAPI, Starlette, ...) named `app`
Or name the handler explicitly: path/to/worker.py:name or module:name."""

_IMPORT_REASON: Final = (
    "connect() was called while the worker module {name!r} was being imported, outside any "
    "request; open connections inside the handler (fetch), where they belong to the request "
    "and are closed when it ends. To share connections across requests, use a pool binding "
    "(env.DB.connection_string)"
)

_ASGI_PARAMETERS: Final = ("scope", "receive", "send")


@final
class Worker:
    """A loaded worker: what the runtime calls for each request.

    Build one with :func:`load_worker` (from a file or module) or :meth:`from_object`.

    Attributes:
        kind: ``"fetch"`` (a fetch/on_fetch function), ``"entrypoint"`` (a WorkerEntrypoint
            class) or ``"asgi"`` (an ASGI application).
        name: how messages name the handler, e.g. ``"fetch() in worker.py"``.
        target: the function, class or ASGI application.
        module: the module it came from, if loaded from one.
    """

    __slots__ = ("_invoke", "kind", "module", "name", "target")

    def __init__(
        self,
        kind: WorkerKind,
        target: object,
        *,
        name: str,
        invoke: Invoke | None,
        module: ModuleType | None = None,
    ) -> None:
        """Internal: use :func:`load_worker` or :meth:`from_object`."""
        self.kind: WorkerKind = kind
        self.target = target
        self.name = name
        self.module = module
        self._invoke = invoke

    @classmethod
    def from_object(
        cls, obj: object, *, name: str | None = None, module: ModuleType | None = None
    ) -> Worker:
        """The worker served by ``obj``: a fetch function, a WorkerEntrypoint subclass or an
        ASGI application.

        Raises:
            WorkerLoadError: ``obj`` is none of those, or a handler is not ``async def``.
        """
        label = name or getattr(obj, "__qualname__", None) or type(obj).__name__
        if isinstance(obj, type):
            if issubclass(obj, WorkerEntrypoint):
                return cls._entrypoint(obj, label, module)
            raise WorkerLoadError(
                f"{label} is a class but not a WorkerEntrypoint subclass\n{ACCEPTED_SHAPES}"
            )
        if isinstance(obj, WorkerEntrypoint):
            raise WorkerLoadError(
                f"{label} is a WorkerEntrypoint instance; name the class instead (the runtime "
                "makes one instance per request)"
            )
        if _is_starlette(obj):
            return cls("asgi", obj, name=label, invoke=None, module=module)
        if inspect.isfunction(obj) or inspect.ismethod(obj) or _is_partial(obj):
            if _looks_asgi(obj):
                _require_async(obj, label, "an ASGI application")
                return cls("asgi", obj, name=label, invoke=None, module=module)
            return cls._function(obj, label, module)
        if callable(obj) and inspect.iscoroutinefunction(type(obj).__call__):
            return cls("asgi", obj, name=label, invoke=None, module=module)
        raise WorkerLoadError(f"{label} ({type(obj).__name__}) is not a handler\n{ACCEPTED_SHAPES}")

    @classmethod
    def _function(cls, fn: Any, label: str, module: ModuleType | None) -> Worker:
        _require_async(fn, label, "a fetch handler")
        arity = _positional_arity(fn)
        if arity == 0 or arity > 3:
            raise WorkerLoadError(
                f"{label} takes {arity} positional parameters; a fetch handler takes "
                "(request, env, ctx), (request, env) or (request)"
            )

        def invoke(request: Request, env: Env, ctx: ExecutionContext) -> Awaitable[object]:
            return fn(*(request, env, ctx)[:arity])  # type: ignore[no-any-return]

        if arity == 3:  # the common shape: no slicing per request
            invoke = fn
        return cls("fetch", fn, name=label, invoke=invoke, module=module)

    @classmethod
    def _entrypoint(
        cls, entry: type[WorkerEntrypoint], label: str, module: ModuleType | None
    ) -> Worker:
        fetch = getattr(entry, "fetch", None)
        if fetch is None:
            raise WorkerLoadError(
                f"{label} has no fetch method; define `async def fetch(self, request)`"
            )
        _require_async(fetch, f"{label}.fetch", "a fetch method")

        def invoke(request: Request, env: Env, ctx: ExecutionContext) -> Awaitable[object]:
            # One instance per request, as Cloudflare does.
            return entry(ctx, env).fetch(request)  # type: ignore[attr-defined,no-any-return]

        return cls("entrypoint", entry, name=label, invoke=invoke, module=module)

    @property
    def asgi_app(self) -> Callable[..., Awaitable[None]] | None:
        """The ASGI application, for ``kind == "asgi"``; else ``None``."""
        return self.target if self.kind == "asgi" else None  # type: ignore[return-value]

    def _handle(self, request: Request, env: Env, ctx: ExecutionContext) -> Awaitable[object]:
        """Internal: call the handler (fetch and entrypoint workers)."""
        assert self._invoke is not None, "ASGI workers are called through their ASGI interface"
        return self._invoke(request, env, ctx)

    def __repr__(self) -> str:
        return f"<Worker {self.kind} {self.name}>"


def load_worker(spec: str) -> Worker:
    """Import a worker and find its handler.

    Args:
        spec: a file (``"path/to/worker.py"``), a module name (``"myapp.worker"``), either
            followed by ``":name"`` to pick the handler (``"worker.py:Default"``,
            ``"myapp.main:app"``; dotted names such as ``":api.app"`` are followed).

    Returns:
        The worker.

    Raises:
        WorkerLoadError: the file or module does not exist, or has no handler of an accepted
            shape (the message lists them), or several.
        ConnectNotAllowedError: the module called ``connect()`` while being imported.
        Exception: whatever importing the module raised (a ``SyntaxError``, ...).
    """
    if not isinstance(spec, str):
        raise TypeError(f"spec must be a str such as 'worker.py', not {type(spec).__name__}")
    target, attr = spec, None
    if ":" in spec:
        target, _, attr = spec.rpartition(":")
        if not attr or not all(part.isidentifier() for part in attr.split(".")):
            raise WorkerLoadError(f"{spec!r}: after ':' comes a name such as 'app' or 'Default'")
    if not target:
        raise WorkerLoadError(f"{spec!r}: name a file (worker.py) or a module before ':'")
    if target.endswith(".py") or "/" in target or "\\" in target:
        module = _import_file(Path(target))
        where = target
    else:
        module = _import_module(target)
        where = f"module {target}"
    if attr is not None:
        obj: object = module
        for part in attr.split("."):
            try:
                obj = getattr(obj, part)
            except AttributeError:
                raise WorkerLoadError(f"{where} has no attribute {attr!r}") from None
        return Worker.from_object(obj, name=f"{attr} in {where}", module=module)
    return _discover(module, where)


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise WorkerLoadError(f"no worker file at {str(path)!r}")
    path = path.resolve()
    name = path.stem
    existing = sys.modules.get(name)
    if existing is not None:
        existing_file = getattr(existing, "__file__", None)
        if existing_file is None or Path(existing_file).resolve() != path:
            raise WorkerLoadError(
                f"cannot load {path} as module {name!r}: a different module of that name is "
                f"already imported ({existing_file or 'built in'}); rename the worker file"
            )
    # Like `python worker.py`: modules next to the worker are importable by the worker.
    directory = str(path.parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise WorkerLoadError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before running, so dataclasses, pickling and circular imports find it. A file
    # is executed afresh on every load (a module name is imported once, as Python does).
    sys.modules[name] = module
    try:
        _run_import(name, lambda: module_spec.loader.exec_module(module))  # type: ignore[union-attr]
    except BaseException:
        if existing is not None:
            sys.modules[name] = existing
        else:
            sys.modules.pop(name, None)
        raise
    return module


def _import_module(name: str) -> ModuleType:
    try:
        module: list[ModuleType] = []
        _run_import(name, lambda: module.append(importlib.import_module(name)))
        return module[0]
    except ModuleNotFoundError as exc:
        if exc.name is not None and name.startswith(exc.name):
            raise WorkerLoadError(
                f"no module named {name!r}; pass a file path (worker.py) or an importable "
                "module name"
            ) from exc
        raise


def _run_import(name: str, run: Callable[[], object]) -> None:
    install_workers_module()  # Cloudflare's `workers` module, unless a real one is importable
    with forbid_connections(_IMPORT_REASON.format(name=name)):
        run()


def _discover(module: ModuleType, where: str) -> Worker:
    namespace = vars(module)
    found: list[tuple[str, object]] = []
    entrypoints = [
        (name, value)
        for name, value in namespace.items()
        if isinstance(value, type)
        and issubclass(value, WorkerEntrypoint)
        and value is not WorkerEntrypoint
        and value.__module__ == module.__name__
    ]
    default = namespace.get("Default")
    if isinstance(default, type) and issubclass(default, WorkerEntrypoint):
        found.append(("Default", default))
    elif len(entrypoints) == 1:
        found.append(entrypoints[0])
    elif len(entrypoints) > 1:
        names = ", ".join(name for name, _ in entrypoints)
        raise WorkerLoadError(
            f"{where} has several WorkerEntrypoint classes ({names}); call the one to serve "
            f"Default, or name it: {where.removeprefix('module ')}:{entrypoints[0][0]}"
        )
    for name in ("fetch", "on_fetch", "app"):
        value = namespace.get(name)
        if value is not None and not _is_ours(value):
            found.append((name, value))
    if not found:
        apps = [(name, value) for name, value in namespace.items() if _is_starlette(value)]
        if len(apps) == 1:
            found.append(apps[0])
    if not found:
        raise WorkerLoadError(f"{where} has no handler.\n{ACCEPTED_SHAPES}")
    if len(found) > 1:
        names = " and ".join(name for name, _ in found)
        raise WorkerLoadError(
            f"{where} has more than one handler ({names}); keep one, or name the one to serve: "
            f"{where.removeprefix('module ')}:{found[0][0]}"
        )
    name, value = found[0]
    return Worker.from_object(value, name=f"{name} in {where}", module=module)


def _is_ours(value: object) -> bool:
    """True for tcpworkers' own objects imported into a worker (``from tcpworkers import
    fetch`` is the outbound fetch, not a handler)."""
    module = getattr(value, "__module__", None) or ""
    return module == "tcpworkers" or module.startswith("tcpworkers.")


def _is_starlette(value: object) -> bool:
    starlette = sys.modules.get("starlette.applications")  # imported by the app if it is one
    cls = getattr(starlette, "Starlette", None)
    return cls is not None and isinstance(value, cls)


def _is_partial(value: object) -> bool:
    return isinstance(value, functools.partial)


def _looks_asgi(fn: Any) -> bool:
    try:
        names = tuple(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return False
    return names[-3:] == _ASGI_PARAMETERS


def _require_async(fn: Any, label: str, what: str) -> None:
    if inspect.iscoroutinefunction(fn):
        return
    if inspect.isasyncgenfunction(fn):
        raise WorkerLoadError(
            f"{label} is an async generator; {what} must be `async def` and return a Response "
            "(to stream, return Response(async_generator()))"
        )
    raise WorkerLoadError(f"{label} must be `async def` ({what} is awaited by the runtime)")


def _positional_arity(fn: Any) -> int:
    try:
        parameters = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 3
    count = 0
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            return 3
        if parameter.kind in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            count += 1
    return count
