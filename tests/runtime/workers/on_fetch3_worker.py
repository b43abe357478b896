"""Shape: `async def on_fetch(request, env, ctx)`."""

from tcpworkers import Response


async def on_fetch(request, env, ctx):
    return Response(f"on_fetch/3 {type(ctx).__name__}")
