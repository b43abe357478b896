"""load_worker(): the accepted shapes, the errors for everything else, and import-time rules."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import tcpworkers
from tcpworkers.errors import ConnectNotAllowedError
from tcpworkers.runtime import (
    ACCEPTED_SHAPES,
    Worker,
    WorkerEntrypoint,
    WorkerLoadError,
    install_workers_module,
    load_worker,
    workers_module,
)

from .worker_helpers import worker_file

# Test tier: in memory (worker modules under tmp_path count as memory); see tests/_tiers.py.
pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("spec", "kind", "target"),
    [
        ("fetch_worker.py", "fetch", "fetch"),
        ("on_fetch2_worker.py", "fetch", "on_fetch"),
        ("on_fetch3_worker.py", "fetch", "on_fetch"),
        ("default_entrypoint_worker.py", "entrypoint", "Default"),
        ("single_entrypoint_worker.py", "entrypoint", "Orders"),
        ("fastapi_worker.py", "asgi", "FastAPI"),
        ("starlette_worker.py", "asgi", "Starlette"),
        ("cloudflare_worker.py", "entrypoint", "Default"),
    ],
)
def test_every_shape_is_found_without_naming_it(spec: str, kind: str, target: str) -> None:
    worker = load_worker(worker_file(spec))
    assert worker.kind == kind
    found = getattr(worker.target, "__name__", type(worker.target).__name__)
    assert found == target
    assert worker.module is not None
    assert worker.module.__file__ == worker_file(spec)
    assert spec in worker.name


def test_a_handler_can_be_named_after_a_colon() -> None:
    worker = load_worker(worker_file("default_entrypoint_worker.py") + ":Helper")
    assert worker.kind == "entrypoint"
    assert worker.target.__name__ == "Helper"
    chosen = load_worker(worker_file("two_handlers_worker.py") + ":on_fetch")
    assert chosen.target.__name__ == "on_fetch"  # type: ignore[attr-defined]


def test_a_module_name_works_too() -> None:
    worker = load_worker("tests.runtime.workers.fetch_worker")
    assert worker.kind == "fetch"
    named = load_worker("tests.runtime.workers.fastapi_worker:app")
    assert named.kind == "asgi"


def test_a_file_is_loaded_afresh_each_time() -> None:
    first = load_worker(worker_file("cross_request_worker.py"))
    assert first.module is not None
    first.module.SAVED.append("stale")
    second = load_worker(worker_file("cross_request_worker.py"))
    assert second.module is not None
    assert second.module.SAVED == []
    assert sys.modules["cross_request_worker"] is second.module


def test_no_handler_lists_the_accepted_shapes() -> None:
    with pytest.raises(WorkerLoadError) as info:
        load_worker(worker_file("no_handler_worker.py"))
    message = str(info.value)
    assert "has no handler" in message
    for shape in (
        "async def fetch(request, env, ctx)",
        "async def on_fetch(request, env)",
        "class Default(WorkerEntrypoint)",
        "ASGI application",
        ":name",
    ):
        assert shape in message
    assert ACCEPTED_SHAPES in message
    assert isinstance(info.value, ValueError)


def test_sync_fetch_is_refused() -> None:
    with pytest.raises(WorkerLoadError, match="must be `async def`"):
        load_worker(worker_file("sync_fetch_worker.py"))


def test_ambiguous_modules_are_refused() -> None:
    with pytest.raises(WorkerLoadError, match=r"more than one handler \(fetch and on_fetch\)"):
        load_worker(worker_file("two_handlers_worker.py"))
    with pytest.raises(
        WorkerLoadError, match=r"several WorkerEntrypoint classes \(First, Second\)"
    ):
        load_worker(worker_file("two_entrypoints_worker.py"))


def test_missing_things_are_named() -> None:
    with pytest.raises(WorkerLoadError, match="no worker file"):
        load_worker("does/not/exist.py")
    with pytest.raises(WorkerLoadError, match="no module named 'no_such_module_xyz'"):
        load_worker("no_such_module_xyz")
    with pytest.raises(WorkerLoadError, match="has no attribute 'nope'"):
        load_worker(worker_file("fetch_worker.py") + ":nope")
    with pytest.raises(WorkerLoadError, match="after ':'"):
        load_worker(worker_file("fetch_worker.py") + ":")
    with pytest.raises(TypeError):
        load_worker(Path("fetch_worker.py"))  # type: ignore[arg-type]


def test_connect_at_import_time_is_refused_with_the_fix() -> None:
    with pytest.raises(ConnectNotAllowedError) as info:
        load_worker(worker_file("import_connect_worker.py"))
    message = str(info.value)
    assert "while the worker module 'import_connect_worker' was being imported" in message
    assert "inside the handler" in message
    assert "pool binding" in message
    assert "import_connect_worker" not in sys.modules  # no half-imported module left behind


async def test_connect_at_import_time_is_refused_inside_a_running_loop_too() -> None:
    with pytest.raises(ConnectNotAllowedError):
        load_worker(worker_file("import_connect_worker.py"))


def test_a_different_module_of_the_same_name_is_not_replaced(tmp_path: Path) -> None:
    clash = tmp_path / "json.py"  # the stdlib's json is already imported
    clash.write_text("async def fetch(request, env, ctx): ...\n")
    with pytest.raises(WorkerLoadError, match="already imported"):
        load_worker(str(clash))
    assert sys.modules["json"].__file__ != str(clash)


# -- Worker.from_object ----------------------------------------------------------------------


async def three(request: object, env: object, ctx: object) -> None: ...


async def one(request: object) -> None: ...


async def asgi(scope: object, receive: object, send: object) -> None: ...


class AsgiCallable:
    async def __call__(self, scope: object, receive: object, send: object) -> None: ...


class Plain:
    pass


def test_from_object_classifies() -> None:
    assert Worker.from_object(three).kind == "fetch"
    assert Worker.from_object(one).kind == "fetch"
    assert Worker.from_object(asgi).kind == "asgi"
    assert Worker.from_object(AsgiCallable()).kind == "asgi"
    with pytest.raises(WorkerLoadError, match="not a WorkerEntrypoint subclass"):
        Worker.from_object(Plain)
    with pytest.raises(WorkerLoadError, match="is not a handler"):
        Worker.from_object(42)


def test_from_object_checks_entrypoints_and_arity() -> None:
    class NoFetch(WorkerEntrypoint):
        pass

    class SyncFetch(WorkerEntrypoint):
        def fetch(self, request: object) -> None: ...

    with pytest.raises(WorkerLoadError, match="has no fetch method"):
        Worker.from_object(NoFetch)
    with pytest.raises(WorkerLoadError, match="must be `async def`"):
        Worker.from_object(SyncFetch)
    with pytest.raises(WorkerLoadError, match="instance"):
        Worker.from_object(NoFetch(None, None))  # type: ignore[arg-type]

    async def four(a: object, b: object, c: object, d: object) -> None: ...

    async def gen(request: object) -> object:
        yield b""

    with pytest.raises(WorkerLoadError, match="4 positional parameters"):
        Worker.from_object(four)
    with pytest.raises(WorkerLoadError, match="async generator"):
        Worker.from_object(gen)


# -- the Cloudflare `workers` module ---------------------------------------------------------


def test_workers_module_contents() -> None:
    module = workers_module()
    assert module.Response is tcpworkers.Response
    assert module.Request is tcpworkers.Request
    assert module.WorkerEntrypoint is tcpworkers.WorkerEntrypoint
    assert module.handler(three) is three
    with pytest.raises(AttributeError, match="Durable Objects"):
        module.DurableObject  # noqa: B018
    with pytest.raises(AttributeError, match=r"self\.env"):
        module.env  # noqa: B018


async def test_workers_fetch_says_it_is_not_there_yet() -> None:
    if hasattr(tcpworkers, "fetch"):  # pragma: no cover - once tcpworkers.fetch exists
        assert workers_module().fetch is tcpworkers.fetch
        return
    with pytest.raises(NotImplementedError, match=r"tcpworkers\.fetch"):
        await workers_module().fetch("https://example.com")


def test_workers_module_fetch_is_tcpworkers_fetch() -> None:
    assert workers_module().fetch is tcpworkers.fetch


def test_workers_module_is_installed_only_when_no_real_one_exists(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delitem(sys.modules, "workers", raising=False)
    (tmp_path / "workers.py").write_text("REAL = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert install_workers_module() is False  # an importable real one wins
    assert "workers" not in sys.modules
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p != str(tmp_path)])
    assert install_workers_module() is True
    assert sys.modules["workers"].Response is tcpworkers.Response
    assert install_workers_module() is False  # already there
