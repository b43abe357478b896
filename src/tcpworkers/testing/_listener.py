"""What every loopback listener of the test kit shares: loopback-only binding, port 0, lifecycle.

The servers and the fault proxy are ``async with`` objects. Entering binds a listening socket on
a loopback address with port 0 (the OS picks a free port); leaving stops listening, ends every
connection the listener still holds and waits until their sockets are closed, so a test leaks
nothing into the next one.
"""

from __future__ import annotations

import abc
import asyncio
import ipaddress
import socket
from collections.abc import Coroutine
from types import TracebackType
from typing import Self

__all__ = ["LoopbackListener", "check_loopback_host", "format_address"]

# How long closing a listener waits for its connections to report that their sockets are closed.
# They are aborted first, so this only guards against a bug turning into a hung test session.
_CLOSE_TIMEOUT = 5.0

# listen() backlog: plenty for tests that open many connections at once.
_BACKLOG = 128


def check_loopback_host(host: str, *, what: str = "host") -> str:
    """Return ``host`` if it is a loopback IP address literal, else raise ``ValueError``.

    Args:
        host: an IP address literal such as ``"127.0.0.1"`` or ``"::1"``.
        what: how the error message names the argument.

    Returns:
        ``host`` unchanged.

    Raises:
        TypeError: ``host`` is not a ``str``.
        ValueError: ``host`` is not a loopback IP address literal.
    """
    if not isinstance(host, str):
        raise TypeError(f"{what} must be a str such as '127.0.0.1', got {type(host).__name__}")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is None or not ip.is_loopback:
        raise ValueError(
            f"{what} must be a loopback IP address such as '127.0.0.1' or '::1' "
            f"(the test kit never binds or connects elsewhere), got {host!r}"
        )
    return host


def format_address(host: str, port: int) -> str:
    """Format ``host`` and ``port`` as ``"127.0.0.1:8080"`` or ``"[::1]:8080"``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class LoopbackListener(abc.ABC):
    """Base of the kit's servers and proxy: binds on entry, closes everything on exit.

    The listener accepts in a reader callback and hands each accepted socket to
    :meth:`_on_accept`, which wraps it with ``loop.connect_accepted_socket``. Not
    ``loop.create_server(ssl=...)``: there the TLS handshake runs before the server hears of
    the connection, so a failed handshake would go unrecorded.
    """

    def __init__(self, host: str) -> None:
        self._host = check_loopback_host(host)
        self._sock: socket.socket | None = None
        self._port: int | None = None
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def host(self) -> str:
        """The loopback address the listener binds to."""
        return self._host

    @property
    def port(self) -> int:
        """The port the OS picked when the listener started.

        Raises:
            RuntimeError: the listener was never started.
        """
        if self._port is None:
            name = type(self).__name__
            raise RuntimeError(
                f"{name} is not running yet: use it as `async with {name}(...) as server:` "
                "and read the port inside the block"
            )
        return self._port

    @property
    def address(self) -> str:
        """``"host:port"`` (``"[::1]:port"`` for IPv6), the form ``connect()`` accepts."""
        return format_address(self._host, self.port)

    async def __aenter__(self) -> Self:
        if self._sock is not None or self._closing:
            raise RuntimeError(f"{type(self).__name__} can be started only once")
        family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind((self._host, 0))
            sock.listen(_BACKLOG)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._port = int(sock.getsockname()[1])
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock.fileno(), self._accept_ready)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop listening, end every connection and wait until their sockets are closed.

        Idempotent; ``async with`` calls it on exit.
        """
        if self._sock is None or self._loop is None or self._closing:
            return
        self._closing = True
        self._loop.remove_reader(self._sock.fileno())
        self._sock.close()
        waits = [*self._abort_connections(), *self._tasks]
        if waits:
            await asyncio.wait(waits, timeout=_CLOSE_TIMEOUT)
        # Closing a transport closes its socket in a callback scheduled right away: let it run.
        await asyncio.sleep(0)

    @property
    def _shutting_down(self) -> bool:
        """True once :meth:`aclose` has started: connections ending now were ended by us."""
        return self._closing

    def _spawn(self, coro: Coroutine[object, object, None]) -> asyncio.Task[None]:
        """Run ``coro`` as a task that :meth:`aclose` waits for."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _accept_ready(self) -> None:
        # A reader callback rather than a task around sock_accept(): cancelling that task at
        # close could drop a socket it had just accepted, unclosed.
        assert self._sock is not None
        for _ in range(_BACKLOG):
            try:
                conn, _ = self._sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. ECONNABORTED: the client gave up first
                continue
            conn.setblocking(False)
            self._on_accept(conn)

    @abc.abstractmethod
    def _on_accept(self, sock: socket.socket) -> None:
        """Take over a freshly accepted socket."""

    @abc.abstractmethod
    def _abort_connections(self) -> list[asyncio.Future[None]]:
        """Abort every live connection; return futures that finish once each one is gone."""
