"""A worker written for Cloudflare's Python Workers, unchanged."""

from workers import Response, WorkerEntrypoint

AUDITED: list[str] = []


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        self.ctx.waitUntil(self.audit(request.url))
        if request.method == "POST":
            data = await request.json()
            return Response.json({"echo": data, "name": self.env.GREETING}, status=201)
        if request.url.endswith("/old"):
            return Response.redirect("https://example.com/new", 301)
        return Response("Hello World!", headers={"x-worker": "cloudflare"})

    async def audit(self, url):
        AUDITED.append(url)
