"""``WorkerEntrypoint``: the base class of class-shaped workers (Cloudflare's Python Workers)."""

from __future__ import annotations

from tcpworkers.runtime._context import ExecutionContext
from tcpworkers.runtime._env import Env

__all__ = ["WorkerEntrypoint"]


class WorkerEntrypoint:
    """Base class of class-shaped workers (Cloudflare Python Workers' ``WorkerEntrypoint``).

    Subclass it and define ``async def fetch(self, request)``. The runtime makes one instance
    per request, so instance attributes never leak between requests::

        class Default(WorkerEntrypoint):
            async def fetch(self, request: Request) -> Response:
                return Response(f"hello from {self.env.NAME}")

    Args:
        ctx: the request's :class:`ExecutionContext` (``self.ctx.wait_until``).
        env: the worker's :class:`Env` (``self.env.API_KEY``).
    """

    def __init__(self, ctx: ExecutionContext, env: Env) -> None:
        self.ctx = ctx
        self.env = env
