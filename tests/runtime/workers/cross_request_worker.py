"""Keeps a socket from one request in a module global and uses it in the next (a mistake)."""

from tcpworkers import Response, connect

SAVED = []


async def fetch(request, env, ctx):
    if request.path == "/open":
        sock = connect(request.query["addr"])
        await sock.opened
        SAVED.append(sock)
        return Response("opened")
    sock = SAVED.pop()
    await sock.writable.write(b"from another request")
    return Response("wrote")
