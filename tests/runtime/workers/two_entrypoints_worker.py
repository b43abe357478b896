"""Two WorkerEntrypoint subclasses and no Default: ambiguous."""

from tcpworkers import Response, WorkerEntrypoint


class First(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("first")


class Second(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("second")
