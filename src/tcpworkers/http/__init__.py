"""HTTP objects and outbound HTTP: the Fetch API in Python form.

:class:`Headers`, :class:`Request` and :class:`Response` (with their one-shot bodies) are what a
worker's handler receives and returns; :func:`fetch` sends an HTTP request through the same
egress gate as ``connect()``. This package sits below the runtime: it knows sockets, not the
server. ``fetch()`` imports httpx on its first call only.
"""

from tcpworkers.http._body import DEFAULT_MAX_BODY_SIZE
from tcpworkers.http._fetch import DEFAULT_TIMEOUT, MAX_REDIRECTS, fetch
from tcpworkers.http._headers import Headers
from tcpworkers.http._request import Request
from tcpworkers.http._response import Response

__all__ = [
    "DEFAULT_MAX_BODY_SIZE",
    "DEFAULT_TIMEOUT",
    "MAX_REDIRECTS",
    "Headers",
    "Request",
    "Response",
    "fetch",
]
