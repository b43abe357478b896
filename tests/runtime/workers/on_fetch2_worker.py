"""Shape: `async def on_fetch(request, env)` (Cloudflare's older Python Workers style)."""

from tcpworkers import Response


async def on_fetch(request, env):
    return Response(f"on_fetch/2 {env.GREETING}")
