"""The public API is pinned: removing or renaming a name here is a breaking change."""

from __future__ import annotations

import inspect
import sys
import typing

import tcpworkers
import tcpworkers.errors
import tcpworkers.sockets
import tcpworkers.testing

# Each public exception class and its direct bases, exactly: a class that disappears, is renamed
# or changes what it derives from (what `except` clauses catch) fails here. New classes only need
# to join the one hierarchy (see test_every_error_has_the_one_root).
HIERARCHY: dict[str, tuple[str | type[BaseException], ...]] = {
    "TcpworkersError": (Exception,),
    "SocketError": ("TcpworkersError",),
    "ConnectError": ("SocketError", OSError),
    "ConnectTimeoutError": ("ConnectError", TimeoutError),
    "TLSHandshakeError": ("ConnectError",),
    "EgressDeniedError": ("ConnectError",),
    "SocketLimitError": ("ConnectError",),
    "ScopeClosedError": ("ConnectError",),
    "ConnectNotAllowedError": ("SocketError", RuntimeError),
    "CrossRequestError": ("SocketError", RuntimeError),
    "SocketClosedError": ("SocketError",),
    "SocketBrokenError": ("SocketError", ConnectionError),
    "SocketBusyError": ("SocketError",),
    "StartTlsError": ("SocketError",),
    "IncompleteReadError": ("SocketError", EOFError),
    "ReadLimitError": ("SocketError", ValueError),
    "FetchError": ("TcpworkersError",),
    "FetchTimeoutError": ("FetchError", TimeoutError),
    # The runtime's errors (they lived beside the runtime modules until the layout move).
    "WorkerLoadError": ("TcpworkersError", ValueError),
    "ConfigError": ("TcpworkersError", ValueError),
    "BodyUsedError": ("TcpworkersError", RuntimeError),
    "BodyTooLargeError": ("TcpworkersError", ValueError),
    "ClientDisconnectedError": ("TcpworkersError", ConnectionError),
}

# Defined in errors.py but not public: control flow that never reaches user code.
INTERNAL = {"ClientGone"}


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
    # The face re-exports the very objects of the packages that define them.
    for name in ("Socket", "SocketInfo", "TlsOptions", "connect"):
        assert getattr(tcpworkers, name) is getattr(tcpworkers.sockets, name), name
    assert tcpworkers.errors is sys.modules["tcpworkers.errors"]
    for name in ("Headers", "Request", "Response", "WorkerEntrypoint"):
        obj = getattr(tcpworkers, name)
        assert inspect.isclass(obj), name
        assert obj.__name__ == name
    assert inspect.isfunction(tcpworkers.connect)
    assert inspect.iscoroutinefunction(tcpworkers.fetch)
    assert inspect.isfunction(tcpworkers.run)
    assert tcpworkers.run.__name__ == "run"


def test_handler_type_hints_come_from_the_top_level() -> None:
    # `async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response`
    from tcpworkers.runtime import Env, ExecutionContext

    assert tcpworkers.Env is Env
    assert tcpworkers.ExecutionContext is ExecutionContext


def test_error_hierarchy() -> None:
    e = tcpworkers.errors
    for name, bases in HIERARCHY.items():
        cls = getattr(e, name)
        expected = tuple(getattr(e, base) if isinstance(base, str) else base for base in bases)
        assert cls.__bases__ == expected, f"{name}: bases {cls.__bases__}, pinned {expected}"
        assert cls.__module__ == "tcpworkers.errors"
        assert name in e.__all__


def test_every_error_has_the_one_root() -> None:
    e = tcpworkers.errors
    assert sorted(e.__all__) == sorted(set(e.__all__)), "a name listed twice"
    for name in e.__all__:
        cls = getattr(e, name)
        assert issubclass(cls, e.TcpworkersError), name
        assert cls.__module__ == "tcpworkers.errors", name
    # Nothing defined in errors.py is left out of __all__ unless it is pinned as internal.
    defined = {
        name
        for name, obj in vars(e).items()
        if inspect.isclass(obj) and obj.__module__ == e.__name__ and not name.startswith("_")
    }
    assert defined - INTERNAL == set(e.__all__)
    assert defined >= INTERNAL


def test_runtime_errors_are_the_ones_in_errors() -> None:
    import tcpworkers.runtime

    # The runtime keeps exporting the moved errors: the very classes, not copies.
    for name in (
        "WorkerLoadError",
        "BodyUsedError",
        "BodyTooLargeError",
        "ClientDisconnectedError",
    ):
        assert getattr(tcpworkers.runtime, name) is getattr(tcpworkers.errors, name), name
    assert tcpworkers.errors.BodyTooLargeError.status == 413


def test_sockets_and_testing_facades_export_what_they_list() -> None:
    for module in (tcpworkers.sockets, tcpworkers.testing):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                # The object itself, defined under the name it is exported as.
                assert obj.__name__ == name, (module.__name__, name)
                assert obj.__module__.startswith(module.__name__), (module.__name__, name)
    assert tcpworkers.sockets.DEFAULT_CONNECT_TIMEOUT == 30.0
    assert typing.get_args(tcpworkers.sockets.SecureTransport) == ("off", "on", "starttls")
    assert {"EchoServer", "StartTlsServer", "TestCA", "FaultProxy", "Fault"} <= set(
        tcpworkers.testing.__all__
    )
