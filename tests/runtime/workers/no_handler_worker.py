"""Defines no handler, only helpers (and imports tcpworkers' names, which are not handlers)."""

from tcpworkers import Response


def helper():
    return Response("not a handler")
