"""Both fetch and on_fetch: ambiguous."""

from tcpworkers import Response


async def fetch(request, env, ctx):
    return Response("fetch")


async def on_fetch(request, env):
    return Response("on_fetch")
