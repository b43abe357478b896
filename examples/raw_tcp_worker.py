"""A worker that speaks a plain TCP protocol with ``connect()``: WHOIS (RFC 3912).

``GET /whois?q=example.com`` opens a TCP connection to a WHOIS server, sends the query line and
returns everything the server answers until it closes the connection. That is the whole
protocol, which makes it the smallest useful example of a raw socket in a request handler: the
connection belongs to the request, passes the egress policy, and is closed when it ends.

The server is ``whois.iana.org`` port 43 unless ``WHOIS_HOST``/``WHOIS_PORT`` (``[vars]`` or
``--var``) name another. Run it::

    tcpworkers dev examples/raw_tcp_worker.py
    curl 'http://127.0.0.1:8787/whois?q=example.com'
"""

from __future__ import annotations

from tcpworkers import Request, Response, connect
from tcpworkers.runtime import Env, ExecutionContext

DEFAULT_HOST = "whois.iana.org"
DEFAULT_PORT = 43
# A WHOIS answer is a page of text; stop reading well before a misbehaving server fills memory.
MAX_ANSWER = 1024 * 1024


async def fetch(request: Request, env: Env, ctx: ExecutionContext) -> Response:
    """Answer ``/whois?q=NAME`` with the WHOIS server's reply."""
    query = request.query.get("q", "").strip()
    if request.path != "/whois" or not query or not query.isprintable():
        return Response("usage: /whois?q=example.com", status=400)
    host = str(env.get("WHOIS_HOST", DEFAULT_HOST))
    port = int(env.get("WHOIS_PORT", DEFAULT_PORT))
    answer = bytearray()
    async with connect((host, port), connect_timeout=10) as sock:
        await sock.writable.write(f"{query}\r\n".encode())
        async for chunk in sock.readable:  # until the server closes the connection
            answer += chunk
            if len(answer) > MAX_ANSWER:
                return Response("the WHOIS answer is too large", status=502)
    return Response(answer.decode("utf-8", errors="replace"))
