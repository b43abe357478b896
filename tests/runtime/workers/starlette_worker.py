"""Shape: a Starlette application under a name other than `app` (the only one in the module)."""

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route


async def home(request):
    return PlainTextResponse(f"starlette {request.state.env.GREETING}")


application = Starlette(routes=[Route("/", home)])
