"""A plain `def fetch`: refused, handlers must be async."""

from tcpworkers import Response


def fetch(request, env, ctx):
    return Response("sync")
