"""Differential: random extended-protocol batches sent to PostgreSQL directly and through the
pooler must get the same answers, message type by message type (seeded, reproducible)."""

from __future__ import annotations

import asyncio
import random

import pytest

from tcpworkers.pool import _messages as m
from tcpworkers.pool._pool import PoolSettings

from ..pgserver import shared
from .conftest import serve_binding
from .test_wire_relay import RawClient

# The division fails at Execute whatever plan the server picked (an aggregate is never folded at
# Bind), so a statement the pooler shares, perhaps on a generic plan by now, answers the same.
TEXTS = [
    "select $1::int + 1",
    "select 'x' || $1::text",
    "select 1 / ($1::int + count(*) * 0) from (values (1)) v",
    "select 2",
]
PARAMS = {0: 1, 1: 1, 2: 1, 3: 0}


async def direct_client() -> RawClient:
    reader, writer = await asyncio.open_connection(shared().host, shared().port)
    client = RawClient(reader, writer)
    writer.write(m.StartupMessage((("user", "postgres"), ("database", "test"))).encode())
    await client.until_ready()
    return client


def random_batch(
    rng: random.Random, parsed: dict[str, int], texts: dict[str, int]
) -> list[m.Message]:
    """A batch ending in Sync. Never a Parse of a name the client still has: PostgreSQL refuses
    that (42P05) and the pooler, which maps names, does not imitate the refusal."""
    batch: list[m.Message] = []
    for _ in range(rng.randrange(1, 7)):
        op = rng.choice(["parse", "bind_exec", "describe", "close", "query", "parse_unnamed"])
        if op == "parse":
            name = f"s{rng.randrange(4)}"
            if name in parsed:  # re-Parse of a live name is an error the pooler does not mimic
                continue
            text = rng.randrange(len(TEXTS))
            parsed[name] = texts[name] = text
            batch.append(m.Parse(name, TEXTS[text]))
        elif op == "parse_unnamed":
            text = rng.randrange(len(TEXTS))
            parsed[""] = text
            batch.append(m.Parse("", TEXTS[text]))
        elif op == "bind_exec":
            name = rng.choice([*parsed, "missing"])
            value = rng.choice([b"0", b"3"])
            count = PARAMS[parsed[name]] if name in parsed else 1
            batch.append(m.Bind("", name, (), (value,) * count, ()))
            batch.append(m.Execute())
        elif op == "describe":
            batch.append(m.Describe("S", rng.choice([*parsed, "missing"])))
        elif op == "close" and parsed:
            name = rng.choice(list(parsed))
            parsed.pop(name)
            batch.append(m.Close("S", name))
        elif op == "query":
            batch.append(m.Query(rng.choice(["select 1", "select 1/0", "begin", "commit"])))
    batch.append(m.Sync())
    return batch


async def answers(client: RawClient, batch: list[m.Message]) -> list[str]:
    """The type names of every answer to ``batch``. How many ReadyForQuery come back depends on
    what the server skipped after an error, so a marker query closes the batch."""
    marker = m.Query("rollback; select 'end-marker'")  # works in an aborted transaction too
    client.writer.write(b"".join(x.encode() for x in [*batch, marker]))
    out: list[str] = []
    while True:
        message = await client.next()
        if message == m.DataRow((b"end-marker",)):
            await client.until_ready()
            return out[:-1]  # the marker's RowDescription
        out.append(type(message).__name__)


@pytest.mark.parametrize("keep", [True, False], ids=["prepared", "unnamed-only"])
async def test_pooler_answers_like_postgres(keep: bool) -> None:
    settings = PoolSettings(min_size=1, max_size=2, acquire_timeout=5, prepared_statements=keep)
    async with serve_binding(settings) as binding:
        for seed in range(40):
            rng = random.Random(seed)
            direct, pooled = await direct_client(), await RawClient.connect(binding)
            parsed: dict[str, int] = {}  # the statements the client has, as the server says
            texts: dict[str, int] = {}  # the text each name was last parsed with
            try:
                for _ in range(6):
                    batch = random_batch(rng, parsed, texts)
                    expected = await answers(direct, batch)
                    got = await answers(pooled, batch)
                    assert got == expected, f"seed {seed}: {batch}"
                    if "ErrorResponse" in expected:  # what was skipped: ask the server
                        for name in [n for n in texts if n]:
                            probe = [m.Describe("S", name), m.Sync()]
                            described = await answers(direct, probe)
                            assert await answers(pooled, probe) == described, f"seed {seed}"
                            if "ErrorResponse" in described:
                                parsed.pop(name, None)
                            else:
                                parsed[name] = texts[name]
            finally:
                await direct.close()
                await pooled.close()
