"""``serve_worker``: run a worker over real HTTP on loopback, in the test's own event loop.

The worker is served by uvicorn (the same server and protocol the CLI uses), started in-process
on ``127.0.0.1`` with an OS-chosen port, with ASGI lifespan on (so bindings start and stop as in
production). uvicorn's ``Server.serve()`` is not used: it installs signal handlers, and its
shutdown polls every 0.1 s. Instead the pieces it is made of (``startup``, the server state,
``lifespan.shutdown``) are driven directly, so entering and leaving takes milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Final, final

import httpx
import uvicorn

from tcpworkers.runtime import (
    Binding,
    RequestObserver,
    RuntimeSettings,
    Worker,
    WorkerApp,
    load_worker,
)
from tcpworkers.runtime._frontdoor import front_door

__all__ = ["WorkerServer", "serve_worker"]

# How long leaving serve_worker waits for in-flight requests before cancelling them.
_SHUTDOWN_TIMEOUT: Final = 5.0
_POLL: Final = 0.005


@final
class WorkerServer:
    """A worker being served on loopback by :func:`serve_worker`.

    Attributes:
        url: the base URL, ``"http://127.0.0.1:PORT"``.
        port: the port the OS chose.
        client: an ``httpx.AsyncClient`` with ``base_url=url`` (closed on exit).
        app: the :class:`~tcpworkers.runtime.WorkerApp` being served.
    """

    __slots__ = ("app", "client", "port", "url")

    def __init__(self, app: WorkerApp, port: int, client: httpx.AsyncClient) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.client = client

    @property
    def worker(self) -> Worker:
        """The worker being served (``.module`` is its module, for inspecting its state)."""
        return self.app.worker

    def __repr__(self) -> str:
        return f"<WorkerServer {self.worker.name} at {self.url}>"


@contextlib.asynccontextmanager
async def serve_worker(
    worker: Worker | WorkerApp | str | object,
    settings: RuntimeSettings | None = None,
    *,
    bindings: Mapping[str, Binding] | None = None,
    observers: Sequence[RequestObserver] = (),
) -> AsyncIterator[WorkerServer]:
    """Serve a worker over HTTP on ``127.0.0.1`` for the duration of an ``async with`` block.

    Args:
        worker: a file or module spec for :func:`~tcpworkers.runtime.load_worker`
            (``"tests/workers/hello.py"``), a loaded ``Worker``, a handler object (fetch
            function, WorkerEntrypoint subclass, ASGI application), or a ready ``WorkerApp``.
        settings: runtime settings; default ``RuntimeSettings()`` (dev mode, dev egress
            preset, default limits).
        bindings: bindings by name, exposed on ``env``.
        observers: told about every finished request.

    Yields:
        The running :class:`WorkerServer`.

    Raises:
        RuntimeError: the worker failed to start (a binding or the application's lifespan
            startup failed; the log has the details).

    Example::

        async with serve_worker("worker.py") as server:
            response = await server.client.get("/hello")
            assert response.text == "hello"
    """
    if isinstance(worker, WorkerApp):
        if settings is not None or bindings is not None or observers:
            raise ValueError("pass settings, bindings and observers to the WorkerApp, not here")
        app = worker
    else:
        if isinstance(worker, str):
            loaded = load_worker(worker)
        elif isinstance(worker, Worker):
            loaded = worker
        else:
            loaded = Worker.from_object(worker)
        app = WorkerApp(
            loaded, settings or RuntimeSettings(), bindings=bindings, observers=observers
        )
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        loop="none",  # the test's running loop
        lifespan="on",
        log_level="warning",
        log_config=None,  # leave the test's logging configuration alone
        access_log=False,
        proxy_headers=False,
        interface="asgi3",
        # The runtime's protocol (httptools with the front door's bounds), as dev and serve.
        http=front_door(app.settings.limits),
    )
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    try:
        await server.startup()
    except SystemExit:
        raise RuntimeError(
            f"{app.worker.name} failed to start (see the log for the lifespan error)"
        ) from None
    await server.on_tick(0)  # the Date/Server headers, as the server's main loop would set
    port: int = server.servers[0].sockets[0].getsockname()[1]
    client = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=30.0)
    try:
        yield WorkerServer(app, port, client)
    finally:
        try:
            await _shutdown(server)  # first: requests still in flight get their responses
        finally:
            await client.aclose()


async def _shutdown(server: uvicorn.Server) -> None:
    """uvicorn's graceful shutdown without its fixed sleeps."""
    server.should_exit = True
    for listener in server.servers:
        listener.close()
    state = server.server_state
    for connection in list(state.connections):
        connection.shutdown()  # idle keep-alive connections close now, busy ones after
    # In-flight requests finish (their wait_until work included), up to a limit.
    tasks = list(state.tasks)
    if tasks:
        _, pending = await asyncio.wait(tasks, timeout=_SHUTDOWN_TIMEOUT)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    for connection in list(state.connections):
        connection.shutdown()  # all idle now: they close
    # uvicorn offers only its set of connections to watch; each leaves it one loop turn after
    # its transport closes.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _SHUTDOWN_TIMEOUT
    while state.connections and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(_POLL)
    for listener in server.servers:
        await listener.wait_closed()
    await server.lifespan.shutdown()
