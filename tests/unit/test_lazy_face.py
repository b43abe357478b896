"""``from tcpworkers import connect`` loads the socket library only: no runtime, no uvicorn, no
httpx, no gated loop, no pool (issue 7). The rest of the package face loads on first use."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import tcpworkers

pytestmark = pytest.mark.slow  # a fresh interpreter: this process has imported everything

# Top-level packages and tcpworkers modules a plain socket program must not pay for.
HEAVY = ("uvicorn", "httpx", "httpcore", "anyio", "uvloop", "asyncpg")
HEAVY_OURS = ("tcpworkers.runtime", "tcpworkers.drivers", "tcpworkers.pool", "tcpworkers.http")


def imported_after(statement: str) -> list[str]:
    code = f"import json, sys\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    modules: list[str] = json.loads(result.stdout)
    return modules


def heavy(modules: list[str]) -> list[str]:
    return [
        m
        for m in modules
        if m.split(".")[0] in HEAVY or any(m == h or m.startswith(h + ".") for h in HEAVY_OURS)
    ]


def test_connect_alone_imports_nothing_heavy() -> None:
    modules = imported_after("from tcpworkers import connect, Socket, TlsOptions, errors")
    assert "tcpworkers.sockets" in modules
    assert heavy(modules) == []


def test_the_rest_of_the_face_loads_on_first_use() -> None:
    # The check above can fail: the same probe sees the runtime once a lazy name is used.
    modules = imported_after("from tcpworkers import Response, WorkerEntrypoint")
    assert "tcpworkers.runtime" in heavy(modules)
    assert "tcpworkers.http" in heavy(modules)


def test_every_listed_name_resolves() -> None:
    for name in tcpworkers.__all__:
        assert getattr(tcpworkers, name) is not None
    assert set(tcpworkers.__all__) <= set(dir(tcpworkers))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tcpworkers.nope  # noqa: B018
