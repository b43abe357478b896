"""The public API is pinned: removing or renaming a name here is a breaking change."""

from __future__ import annotations

import tcpworkers
import tcpworkers.errors
import tcpworkers.sockets
import tcpworkers.testing


def test_top_level_names() -> None:
    assert sorted(tcpworkers.__all__) == [
        "Env",
        "ExecutionContext",
        "Headers",
        "Request",
        "Response",
        "Socket",
        "SocketInfo",
        "TlsOptions",
        "WorkerEntrypoint",
        "connect",
        "errors",
        "fetch",
        "run",
    ]
    assert all(getattr(tcpworkers, name) is not None for name in tcpworkers.__all__)


def test_handler_type_hints_come_from_the_top_level() -> None:
    # `async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response`
    from tcpworkers.runtime import Env, ExecutionContext

    assert tcpworkers.Env is Env
    assert tcpworkers.ExecutionContext is ExecutionContext


def test_error_hierarchy() -> None:
    e = tcpworkers.errors
    assert issubclass(e.SocketError, e.TcpworkersError)
    assert issubclass(e.ConnectError, e.SocketError)
    assert issubclass(e.ConnectError, OSError)
    assert issubclass(e.ConnectTimeoutError, e.ConnectError)
    assert issubclass(e.ConnectTimeoutError, TimeoutError)
    assert issubclass(e.TLSHandshakeError, e.ConnectError)
    assert issubclass(e.EgressDeniedError, e.ConnectError)
    assert issubclass(e.SocketLimitError, e.ConnectError)
    assert issubclass(e.ScopeClosedError, e.ConnectError)
    assert issubclass(e.SocketBrokenError, ConnectionError)
    assert issubclass(e.IncompleteReadError, EOFError)
    assert issubclass(e.ReadLimitError, ValueError)
    assert issubclass(e.FetchError, e.TcpworkersError)
    assert issubclass(e.FetchTimeoutError, e.FetchError)
    assert issubclass(e.FetchTimeoutError, TimeoutError)
    for name in ("SocketClosedError", "SocketBusyError", "StartTlsError", "CrossRequestError"):
        assert issubclass(getattr(e, name), e.SocketError)
    assert all(hasattr(e, name) for name in e.__all__)


def test_sockets_and_testing_facades_export_what_they_list() -> None:
    for module in (tcpworkers.sockets, tcpworkers.testing):
        assert all(getattr(module, name) is not None for name in module.__all__)
    assert {"EchoServer", "StartTlsServer", "TestCA", "FaultProxy", "Fault"} <= set(
        tcpworkers.testing.__all__
    )
