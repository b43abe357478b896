"""The dev error page and folded tracebacks: the user's frames first, the runtime's folded,
secrets redacted, credentials hidden. No event loop: exceptions raised from a real file."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tcpworkers.runtime._devpage import (
    PageRequest,
    PageSocket,
    error_page,
    explain,
    format_folded,
    is_runtime_file,
)

SECRET = "sk-live-0123456789"
pytestmark = pytest.mark.unit

USER_CODE = f'''\
import asyncio


def lookup(key):
    try:
        return {{}}["missing"]
    except KeyError as exc:
        raise RuntimeError(f"upstream refused key {{key}}") from exc


async def fetch():
    return lookup("{SECRET}")


def run():
    return asyncio.run(fetch())
'''


def redact(text: str) -> str:
    return text.replace(SECRET, "[redacted]")


def _user_module(tmp_path: Path) -> ModuleType:
    path = tmp_path / "user_worker.py"
    path.write_text(USER_CODE)
    spec = importlib.util.spec_from_file_location("user_worker_devpage", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _raised(tmp_path: Path) -> BaseException:
    module = _user_module(tmp_path)
    with pytest.raises(RuntimeError) as info:
        module.run()
    return info.value


def test_frames_are_split_into_user_and_runtime(tmp_path: Path) -> None:
    parts = explain(_raised(tmp_path), redact)
    assert [p.summary for p in parts] == [
        "KeyError: 'missing'",
        "RuntimeError: upstream refused key [redacted]",
    ]
    assert parts[1].lead.startswith("The above exception was the direct cause")
    last = parts[1]
    assert [f.name for f in last.user_frames] == ["_raised", "run", "fetch", "lookup"]
    assert last.runtime_frames, "asyncio's frames are runtime frames"
    assert all("asyncio" in f.shown or f.shown.startswith("<") for f in last.runtime_frames)


def test_the_folded_traceback_shows_user_frames_and_one_runtime_line(tmp_path: Path) -> None:
    text = format_folded(_raised(tmp_path), redact)
    assert SECRET not in text
    assert 'File "' in text
    assert 'user_worker.py", line 8, in lookup' in text
    assert "runtime frames folded below" in text
    assert "(runtime: " in text
    assert "asyncio/runners.py" in text
    # The runtime's frames are not printed as frames.
    assert 'runners.py", line' not in text
    assert text.rstrip().splitlines()[-2] == "RuntimeError: upstream refused key [redacted]"


def test_nothing_is_folded_when_no_frame_is_the_users() -> None:
    with pytest.raises(json.JSONDecodeError) as info:
        json.loads("{")
    tb = info.value.__traceback__
    assert tb is not None
    exc = info.value.with_traceback(tb.tb_next)  # drop this test's frame: only json's remain
    text = format_folded(exc)
    assert "folded" not in text
    assert text.startswith("Traceback (most recent call last):")


def test_runtime_files() -> None:
    assert is_runtime_file(asyncio.__file__)
    assert is_runtime_file(pytest.__file__)
    assert is_runtime_file(sys.modules["tcpworkers.runtime._devpage"].__file__ or "")
    assert is_runtime_file("<frozen importlib._bootstrap>")
    assert not is_runtime_file(__file__)


def _page(tmp_path: Path, *, html_wanted: bool) -> str:
    content_type, body = error_page(
        title="500 Internal Server Error in GET /boom",
        exc=_raised(tmp_path),
        request=PageRequest(
            "GET",
            f"http://127.0.0.1:8787/boom?token={SECRET}",
            [("authorization", "Bearer abc"), ("cookie", "s=1"), ("x-trace", "<t>")],
        ),
        sockets=[PageSocket("socket to 127.0.0.1:9 (tcp, open)", 5, 7)],
        socket_summary="opened 1, denied 0",
        html_wanted=html_wanted,
        redact=redact,
    )
    assert content_type.startswith("text/html" if html_wanted else "text/plain")
    return body


def test_text_page(tmp_path: Path) -> None:
    body = _page(tmp_path, html_wanted=False)
    assert SECRET not in body
    assert "GET http://127.0.0.1:8787/boom?token=[redacted]" in body
    assert "authorization: [hidden]" in body
    assert "cookie: [hidden]" in body
    assert "Bearer abc" not in body
    assert "socket to 127.0.0.1:9 (tcp, open)  out=5B in=7B" in body
    assert "opened 1, denied 0" in body


def test_html_page(tmp_path: Path) -> None:
    body = _page(tmp_path, html_wanted=True)
    assert SECRET not in body
    assert body.startswith("<!doctype html>")
    assert "&lt;t&gt;" in body
    assert "<t>" not in body
    assert "runtime frames" in body
    assert "<details>" in body
    # The user's innermost frame comes first, with its source line highlighted.
    assert body.index("in lookup") < body.index("in fetch") < body.index("<details>")
    assert 'class="hl"' in body
    assert "raise RuntimeError" in body
    assert "<td>socket to 127.0.0.1:9 (tcp, open)</td>" in body


def test_a_syntax_error_in_a_user_file_shows_its_line_not_the_import_machinery(
    tmp_path: Path,
) -> None:
    path = tmp_path / "broken_worker.py"
    path.write_text("async def fetch(request, env, ctx:\n    pass\n")
    spec = importlib.util.spec_from_file_location("broken_worker_devpage", path)
    assert spec is not None
    assert spec.loader is not None
    with pytest.raises(SyntaxError) as info:
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    text = format_folded(info.value)
    assert "runtime frames folded below" in text
    assert "broken_worker.py" in text
    assert "SyntaxError" in text
    assert 'importlib._bootstrap_external>", line' not in text
