"""Shape: a WorkerEntrypoint subclass named Default (found by name among other classes)."""

from tcpworkers import Response, WorkerEntrypoint


class Helper(WorkerEntrypoint):  # not served: Default wins
    async def fetch(self, request):
        return Response("helper")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response.json({"shape": "Default", "instance": id(self), "var": self.env.GREETING})
