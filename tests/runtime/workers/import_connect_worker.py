"""Opens a connection at import time, outside any request (refused)."""

from tcpworkers import Response, connect

DB = connect("127.0.0.1:5432")


async def fetch(request, env, ctx):
    return Response("unreachable")
