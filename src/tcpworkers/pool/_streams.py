"""What the pooler needs of a client connection: asyncio's streams (the binding's unix socket)
and the in-process door's ``ServerEnd`` (``_inprocess``) both provide it."""

from __future__ import annotations

from typing import Protocol

__all__ = ["ClientReader", "ClientWriter"]


class ClientReader(Protocol):
    async def read(self, n: int = -1, /) -> bytes: ...


class ClientWriter(Protocol):
    def write(self, data: bytes, /) -> None: ...

    async def drain(self) -> None: ...

    def close(self) -> None: ...

    def is_closing(self) -> bool: ...
