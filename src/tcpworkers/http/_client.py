"""httpx over ``tcpworkers.connect()`` sockets: the network layer of :func:`tcpworkers.fetch`.

Size: a little over the ~450-line guideline: the httpx transport, the httpcore network backend
and the one error translation are one adapter, kept together (the module docstring below is
their shared theory of operation).

Theory of operation. httpx sends a request through a *transport*; its default transport is an
httpcore connection pool whose *network backend* opens connections with anyio. On asyncio,
anyio resolves the name itself (``loop.getaddrinfo``) and then calls
``loop.create_connection(protocol, ip, port)`` for each address (happy eyeballs), and does TLS
in memory over that connection. So a plain httpx client reaches the gate only on the gated
event loop, only inside a request scope (outside one, no egress policy applies at all), and only
with an IP address: host-pattern rules such as ``*.internal`` never see the name, and an
egress denial surfaces three wrappers deep (httpx.ConnectError <- OSError <- the denial).

fetch() therefore gives httpcore its own network backend, :class:`GateBackend`, whose
``connect_tcp`` is ``tcpworkers.connect()``: the gate resolves the name, applies the policy to
the name and each resolved address, takes a slot in the current request scope (or applies the
process-wide default policy outside one), counts bytes in both directions and closes the
connection when the request ends, on any event loop. httpcore upgrades an https connection in
place (``stream.start_tls(ssl_context, server_hostname)`` right after ``connect_tcp``), which is
STARTTLS as far as a ``Socket`` is concerned: connections are opened with
``secure_transport="starttls"`` and upgraded with ``Socket.start_tls()``, and the upgraded socket
keeps the request's slot.

Only public httpx and httpcore API is used: ``httpx.AsyncBaseTransport`` and ``AsyncByteStream``,
and httpcore's ``AsyncConnectionPool(network_backend=...)``, ``AsyncNetworkBackend``,
``AsyncNetworkStream``, ``Request`` and ``URL``. ``httpx.AsyncHTTPTransport`` builds its pool in a
private attribute with no way to pass a network backend, so :class:`GateTransport` does the
little it does (convert the request, hand the response stream over) itself.

Errors are translated here, in :func:`translate`, and nowhere else: httpx's and httpcore's HTTP
errors become ``FetchError``/``FetchTimeoutError``; tcpworkers' own socket errors (a denied,
refused or timed-out connection, a reset) pass through unchanged, since httpx and httpcore
re-raise exceptions that are not theirs as they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any, Final, final

import httpcore
import httpx

from tcpworkers.errors import FetchError, FetchTimeoutError
from tcpworkers.http._headers import Headers
from tcpworkers.http._limits import MAX_REDIRECTS
from tcpworkers.http._response import NULL_BODY_STATUSES, Response
from tcpworkers.sockets import Socket, TlsOptions, connect
from tcpworkers.sockets._tls import client_context

__all__ = ["GateBackend", "GateTransport", "send", "translate"]

# The only protocol httpcore speaks without the optional h2 package.
_ALPN: Final = ("http/1.1",)
# RFC 9110 section 7.6.1 (and RFC 9112 for Transfer-Encoding/TE/Trailer); Keep-Alive and
# Proxy-Connection are the pre-standard ones servers still send.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

_HTTP_ERRORS: Final = (
    httpx.HTTPError,
    httpx.StreamError,
    httpx.InvalidURL,
    httpcore.ProtocolError,
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
    httpcore.ConnectionNotAvailable,
)


def translate(exc: Exception, what: str) -> Exception:
    """The tcpworkers error for an httpx or httpcore error (anything else is returned as is).

    The caller raises the result ``from exc``, which keeps the original as ``__cause__``.

    Args:
        exc: what httpx or httpcore raised.
        what: the exchange, for the message (``"GET http://host/path"``).
    """
    if not isinstance(exc, _HTTP_ERRORS):
        return exc
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.InvalidURL):
        return ValueError(f"{what}: invalid url ({detail})")
    error: FetchError
    if isinstance(exc, httpx.TimeoutException | httpcore.TimeoutException):
        error = FetchTimeoutError(
            f"{what}: timed out ({detail}); raise timeout= if the server is slow"
        )
    elif isinstance(exc, httpx.TooManyRedirects):
        error = FetchError(
            f"{what}: more than {MAX_REDIRECTS} redirects; the server redirects in a loop, or "
            "pass redirect='manual' to see the redirects"
        )
    elif isinstance(exc, httpx.UnsupportedProtocol | httpcore.UnsupportedProtocol):
        error = FetchError(f"{what}: a redirect led to a URL fetch() cannot request ({detail})")
    elif isinstance(exc, httpx.StreamConsumed):
        error = FetchError(
            f"{what}: the request body is a stream and was already sent, but a 307/308 "
            "redirect needs to send it again; pass the body as bytes, or redirect='manual'"
        )
    elif isinstance(exc, httpx.RemoteProtocolError | httpcore.RemoteProtocolError):
        error = FetchError(f"{what}: the server broke the HTTP exchange: {detail}")
    else:
        error = FetchError(f"{what}: {detail}")
    return error


@final
class _SocketStream(httpcore.AsyncNetworkStream):
    """One connection, as httpcore reads and writes it: a ``Socket`` with per-call timeouts.

    A read or write that failed, timed out or was cancelled marks the stream broken, and
    ``aclose()`` then aborts the connection instead of closing it gracefully: the exchange is
    over, and a graceful close would wait (up to 5 s, shielded from cancellation by httpcore)
    for an unsent request body to flush to a server that stopped reading.
    """

    def __init__(self, sock: Socket, backend: GateBackend) -> None:
        self._sock = sock
        self._backend = backend
        self._broken = False

    # httpcore's interface passes timeouts per call (hence the noqa on these signatures).
    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                return await self._sock.readable.read(max_bytes)
        except TimeoutError:
            self._broken = True
            raise FetchTimeoutError(
                f"no data from the server within timeout={timeout:g}s; raise timeout= if the "
                "server is slow"
            ) from None
        except BaseException:
            self._broken = True
            raise

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:  # noqa: ASYNC109
        try:
            async with asyncio.timeout(timeout):
                await self._sock.writable.write(buffer)
        except TimeoutError:
            self._broken = True
            raise FetchTimeoutError(
                f"the server did not take the request within timeout={timeout:g}s"
            ) from None
        except BaseException:
            self._broken = True
            raise

    async def aclose(self) -> None:
        if self._broken:
            self._sock.abort()
        else:
            await self._sock.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> httpcore.AsyncNetworkStream:
        # The socket was opened with the pool's context, which is the ssl_context httpcore
        # passes here; the upgrade's handshake is bounded by the socket's connect_timeout.
        tls = self._sock.start_tls(server_hostname=self._backend.server_hostname or server_hostname)
        self._backend.sockets.append(tls)
        try:
            await tls.opened
        except BaseException:
            await tls.close()
            raise
        return _SocketStream(tls, self._backend)

    def get_extra_info(self, info: str) -> Any:
        # "ssl_object" is asked for to detect HTTP/2 (never offered here); "is_readable" to
        # notice that an idle kept-alive connection was closed by the server. Connections live
        # for one fetch() (a redirect chain at most), so None (falsy) is a safe answer.
        return None


@final
class GateBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend: every connection is a ``tcpworkers.connect()`` socket.

    Args:
        tls_context: the client context for https connections (the pool's ``ssl_context``).
        server_hostname: the name to verify for every https connection instead of the URL's
            host (``TlsOptions.server_hostname``), or ``None``.

    Attributes:
        sockets: every socket this backend opened, for the clean-up of an abandoned response.
    """

    def __init__(self, tls_context: ssl.SSLContext, server_hostname: str | None = None) -> None:
        self.tls_context = tls_context
        self.server_hostname = server_hostname
        self.sockets: list[Socket] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # local_address and socket_options stay None: GateTransport never sets them.
        sock = connect(
            (host, port),
            secure_transport="starttls",  # plain until httpcore asks for TLS (https)
            tls=self.tls_context,
            connect_timeout=timeout,
        )
        self.sockets.append(sock)
        try:
            await sock.opened
        except BaseException:
            await sock.close()
            raise
        return _SocketStream(sock, self)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise NotImplementedError("fetch() does not connect to Unix sockets")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@final
class _ResponseStream(httpx.AsyncByteStream):
    """httpcore's response body as httpx wants it."""

    def __init__(self, stream: Iterable[bytes] | AsyncIterable[bytes]) -> None:
        assert isinstance(stream, AsyncIterable)  # the async pool always gives one
        self._stream = stream

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        aclose = getattr(self._stream, "aclose", None)
        if aclose is not None:
            await aclose()


@final
class GateTransport(httpx.AsyncBaseTransport):
    """An httpx transport: an HTTP/1.1 httpcore pool over :class:`GateBackend`."""

    def __init__(self, backend: GateBackend) -> None:
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=backend.tls_context,
            network_backend=backend,
            # One fetch() sends one request at a time (each hop of a redirect chain in turn);
            # keeping one idle connection lets a same-origin redirect reuse it, and closing
            # the others frees their request slots at once.
            max_keepalive_connections=1,
            http1=True,
            http2=False,
            retries=0,
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.AsyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        core_response = await self._pool.handle_async_request(core_request)
        return httpx.Response(
            status_code=core_response.status,
            headers=core_response.headers,
            stream=_ResponseStream(core_response.stream),
            extensions=core_response.extensions,
        )

    async def aclose(self) -> None:
        await self._pool.aclose()


@final
class FetchedBody:
    """A fetched response's body: the raw bytes as they arrive, then the exchange is closed.

    Closing (the end of the body, an error, ``aclose()``) closes the response and the client,
    which closes the connection. A body that is never read is closed by the request scope when
    the request ends, or, outside any request, when this object is garbage collected.
    """

    def __init__(
        self, response: httpx.Response, client: httpx.AsyncClient, backend: GateBackend, what: str
    ) -> None:
        self._response = response
        self._client = client
        self._sockets = backend.sockets
        self._what = what
        self._chunks: AsyncIterator[bytes] | None = None
        self._closed = False
        self._finalizer = weakref.finalize(
            self, _abort_soon, asyncio.get_running_loop(), backend.sockets
        )

    def __aiter__(self) -> FetchedBody:
        return self

    async def __anext__(self) -> bytes:
        if self._closed:
            raise StopAsyncIteration
        if self._chunks is None:
            self._chunks = self._response.aiter_raw()
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            await self.aclose()
            raise
        except Exception as exc:
            await self.aclose(abort=True)
            error = translate(exc, self._what)
            if error is exc:
                raise
            raise error from exc
        except BaseException:
            await self.aclose(abort=True)
            raise

    async def aclose(self, *, abort: bool = False) -> None:
        """Stop reading and close the connection (idempotent).

        Args:
            abort: drop the connection at once (the exchange failed), without the graceful
                close that may wait for unsent data to flush.
        """
        if self._closed:
            return
        self._closed = True
        self._finalizer.detach()
        if abort:
            _abort_all(self._sockets)
        chunks, self._chunks = self._chunks, None
        try:
            # httpx's aiter_raw() is an async generator: finish it now, not when collected.
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
            await self._response.aclose()
        finally:
            await self._client.aclose()


def _abort_soon(loop: asyncio.AbstractEventLoop, sockets: Sequence[Socket]) -> None:
    # A garbage-collection finalizer may run in any thread: hand the aborts to the loop.
    if loop.is_closed():
        return
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
        loop.call_soon_threadsafe(_abort_all, tuple(sockets))


def _abort_all(sockets: Sequence[Socket]) -> None:
    for sock in sockets:
        sock.abort()


def _tls_setup(tls: TlsOptions | ssl.SSLContext | None) -> tuple[ssl.SSLContext, str | None]:
    """The pool's TLS context and the host name to verify instead of the URL's, if any."""
    if isinstance(tls, ssl.SSLContext):
        return tls, None
    options = tls if tls is not None else TlsOptions()
    # httpcore sets ALPN on the context it is given, for every connection. A context that
    # already offers exactly http/1.1 is left as it was, and is not the shared one connect()
    # uses for the same options without ALPN (contexts are cached per TlsOptions value).
    context = client_context(dataclasses.replace(options, alpn=_ALPN))
    return context, options.server_hostname


def _response_headers(raw: Sequence[tuple[bytes, bytes]]) -> Headers:
    fields = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in raw]
    dropped = set(HOP_BY_HOP)
    for name, value in fields:
        if name.lower() == "connection":
            dropped.update(token.strip().lower() for token in value.split(","))
    return Headers([(name, value) for name, value in fields if name.lower() not in dropped])


async def send(
    method: str,
    url: str,
    *,
    headers: Sequence[tuple[str, str]],
    content: bytes | AsyncIterator[bytes] | None,
    timeout: float | None,  # noqa: ASYNC109 - per operation, not one deadline
    follow_redirects: bool,
    tls: TlsOptions | ssl.SSLContext | None,
) -> Response:
    """Send one request with a client of its own; see :func:`tcpworkers.fetch`."""
    what = f"{method} {url}"
    tls_context, server_hostname = _tls_setup(tls)
    backend = GateBackend(tls_context, server_hostname)
    client = httpx.AsyncClient(
        transport=GateTransport(backend),
        follow_redirects=follow_redirects,
        max_redirects=MAX_REDIRECTS,
        timeout=httpx.Timeout(timeout),
        # No proxies, .netrc or SSL_CERT_FILE from the environment: the gate decides where
        # connections go, and the TLS options are fetch()'s.
        trust_env=False,
    )
    # httpx asks for compressed bodies by default and would decode them; fetch() returns the
    # bytes as sent (see tcpworkers.http._fetch), so it asks only when the caller does.
    del client.headers["accept-encoding"]
    try:
        try:
            request = client.build_request(method, url, headers=list(headers), content=content)
            response = await client.send(request, stream=True)
        except Exception as exc:
            error = translate(exc, what)
            if error is exc:
                raise
            raise error from exc
        status = response.status_code
        if not 200 <= status <= 599:
            raise FetchError(
                f"{what}: the server answered with status {status}, which a Response cannot "
                "represent (200-599)"
            )
        try:
            response_headers = _response_headers(response.headers.raw)
        except ValueError as exc:
            raise FetchError(f"{what}: the server sent an invalid header: {exc}") from exc
        if method == "HEAD" or status in NULL_BODY_STATUSES:
            await response.aclose()
            await client.aclose()
            return Response(None, status=status, headers=response_headers)
        body = FetchedBody(response, client, backend, what)
        return Response(body, status=status, headers=response_headers)
    except BaseException:
        # Failed or cancelled: drop the connections at once (a graceful close could wait for
        # an unsent request body to flush to a server that stopped reading).
        _abort_all(backend.sockets)
        await client.aclose()
        raise
