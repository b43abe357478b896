"""The announcement's example: a Gopher proxy that streams a socket into the HTTP response.

Cloudflare introduced ``connect()`` with a Worker that fetches a Gopher page and returns the
socket's readable stream as the response body. This is the same worker in Python::

    sock = connect(("gopher.floodgap.com", 70))
    await sock.writable.write(b"/selector\\r\\n")
    await sock.writable.close()
    return Response(sock.readable, headers={"content-type": "text/plain"})

The runtime copies the socket to the client chunk by chunk, with backpressure both ways (a slow
client slows the socket; memory stays flat), and closes the socket when the response is done or
the client goes away.

The request path is the Gopher selector. The server is ``gopher.floodgap.com`` port 70 unless
``GOPHER_HOST``/``GOPHER_PORT`` (``[vars]`` or ``--var``) name another. Run it::

    tcpworkers dev examples/streaming_proxy_worker.py
    curl http://127.0.0.1:8787/
"""

from __future__ import annotations

from tcpworkers import Request, Response, connect
from tcpworkers.errors import ConnectError
from tcpworkers.runtime import Env, ExecutionContext

DEFAULT_HOST = "gopher.floodgap.com"
DEFAULT_PORT = 70


async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    """Stream the Gopher document named by the request path."""
    host = str(env.get("GOPHER_HOST", DEFAULT_HOST))
    port = int(env.get("GOPHER_PORT", DEFAULT_PORT))
    selector = "" if request.path == "/" else request.path
    sock = connect((host, port), connect_timeout=10)
    try:
        await sock.opened
    except ConnectError as exc:  # refused, denied by the egress policy, timed out, ...
        return Response(f"socket connection failed: {exc}", status=502)
    await sock.writable.write(f"{selector}\r\n".encode())
    await sock.writable.close()  # half-close: the request is complete, the answer follows
    return Response(sock.readable, headers={"content-type": "text/plain"})
