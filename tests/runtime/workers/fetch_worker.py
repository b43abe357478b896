"""Shape: module-level `async def fetch(request, env, ctx)`."""

from tcpworkers import Response


async def fetch(request, env, ctx):
    return Response.json({"shape": "fetch", "method": request.method, "path": request.path})
