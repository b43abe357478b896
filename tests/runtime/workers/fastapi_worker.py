"""Shape: a FastAPI application named `app`, with a lifespan the runtime passes through."""

import contextlib

from fastapi import FastAPI, Request

from tcpworkers import connect

EVENTS: list[str] = []


@contextlib.asynccontextmanager
async def lifespan(app):
    EVENTS.append("startup")
    yield
    EVENTS.append("shutdown")


app = FastAPI(lifespan=lifespan)


@app.get("/hello/{name}")
async def hello(name: str, request: Request):
    return {"hello": name, "greeting": request.state.env.GREETING}


@app.get("/leave-open")
async def leave_open(addr: str):
    sock = connect(addr)  # left open: the request's scope closes it
    await sock.opened
    return {"opened": True}


@app.get("/boom")
async def boom():
    raise RuntimeError("fastapi handler failed")
