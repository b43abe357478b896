"""Shape: the only WorkerEntrypoint subclass in the module, whatever its name."""

from tcpworkers import Response, WorkerEntrypoint


class Orders(WorkerEntrypoint):
    async def fetch(self, request):
        self.ctx.wait_until(self.audit())
        return Response(f"orders {request.method}")

    async def audit(self):
        pass
