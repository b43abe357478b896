"""The dev 500 response: :mod:`_devpage`'s page for a failed request, as a ``Response``.

It shows the error (the user's frames first, the runtime's folded), the request, and the
connections the request owned (its scope's history), with every configured secret value
redacted, as the log does. HTML when the client asks for it (a browser), text otherwise (curl).
"""

from __future__ import annotations

import http

from tcpworkers.http._request import Request
from tcpworkers.http._response import Response
from tcpworkers.runtime._devpage import PageRequest, PageSocket, error_page
from tcpworkers.runtime._logging import redact
from tcpworkers.scope import current_scope

__all__ = ["dev_error_response"]


def dev_error_response(exc: BaseException, label: str, request: Request | None) -> Response:
    """The 500 page for ``exc``, raised while handling ``request`` (``label``: ``GET /path``)."""
    status = http.HTTPStatus.INTERNAL_SERVER_ERROR
    page_request = None
    html_wanted = False
    if request is not None:
        headers = request.headers.items()
        page_request = PageRequest(request.method, request.url, headers)
        html_wanted = "text/html" in (request.headers.get("accept") or "")
    scope = current_scope()
    sockets: list[PageSocket] = []
    summary = ""
    if scope is not None:
        sockets = [PageSocket(r.describe(), r.bytes_out, r.bytes_in) for r in scope.history]
        stats = scope.stats
        summary = (
            f"opened {stats.sockets_opened}, denied by the egress policy "
            f"{stats.sockets_denied}, at most {stats.peak_open} open at once "
            f"(limit {scope.max_sockets})"
        )
    content_type, body = error_page(
        title=f"{status.value} {status.phrase} in {label}",
        exc=exc,
        request=page_request,
        sockets=sockets,
        socket_summary=summary,
        html_wanted=html_wanted,
        redact=redact,
        hint="tcpworkers dev shows this page; tcpworkers serve answers 500 Internal Server Error.",
    )
    return Response(body, status=status.value, headers={"content-type": content_type})
