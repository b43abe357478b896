"""Say what a request was still running when a limit or a shutdown cut it off.

A log line that a request "exceeded its wall_time" is only useful if it says where the time
went. These helpers name the worker's own code a task was waiting in, e.g.
``fetch (worker.py:12)``: the chain of coroutines a task is suspended in is followed through
``cr_await`` (``Task.get_stack()`` returns only the outermost frame of a suspended coroutine),
or, once a cancellation unwound it, read from the exception's traceback. Frames of the runtime,
asyncio and the HTTP server are left out; when nothing else is left, the innermost frame is
named (``sleep (asyncio/tasks.py:649)`` for a bare ``asyncio.sleep`` handed to ``wait_until``).
"""

from __future__ import annotations

import asyncio
import os
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Final

__all__ = ["describe_task", "describe_traceback"]

# Frames from these directories are plumbing, not what the worker was doing: this package,
# asyncio, and the HTTP server and framework layers around an ASGI worker.
_PLUMBING: Final = (
    str(Path(__file__).resolve().parents[1]) + os.sep,
    str(Path(asyncio.__file__).resolve().parent) + os.sep,
    f"{os.sep}uvicorn{os.sep}",
    f"{os.sep}starlette{os.sep}",
)
_MAX_DEPTH: Final = 64


def _await_chain(task: asyncio.Task[Any]) -> list[FrameType]:
    """The frames of the coroutines ``task`` is suspended in, outermost first."""
    frames: list[FrameType] = []
    awaited: Any = task.get_coro()
    for _ in range(_MAX_DEPTH):
        frame = (
            getattr(awaited, "cr_frame", None)
            or getattr(awaited, "gi_frame", None)
            or getattr(awaited, "ag_frame", None)
        )
        if frame is None:
            break
        frames.append(frame)
        awaited = (
            getattr(awaited, "cr_await", None)
            or getattr(awaited, "gi_yieldfrom", None)
            or getattr(awaited, "ag_await", None)
        )
    return frames


def _show(frames: Iterable[tuple[str, int, str]]) -> str:
    """``name (file:line)`` for the worker's frames, joined with `` > ``."""
    chain = list(frames)
    if not chain:
        return "nothing (it had finished)"
    mine = [f for f in chain if not any(part in f[0] for part in _PLUMBING)]
    shown = mine or chain[-1:]
    return " > ".join(f"{name} ({_short(path)}:{line})" for path, line, name in shown)


def _short(path: str) -> str:
    """The path relative to the working directory, or from its last two components."""
    try:
        relative = os.path.relpath(path)
    except ValueError:  # another drive (Windows)
        relative = path
    if not relative.startswith(".."):
        return relative
    parts = Path(path).parts
    return os.path.join(*parts[-2:]) if len(parts) >= 2 else path


def describe_task(task: asyncio.Task[Any]) -> str:
    """Where a suspended task is waiting, in the worker's terms."""
    return _show(
        (frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
        for frame in _await_chain(task)
    )


def describe_traceback(tb: TracebackType | None) -> str:
    """Where an exception (typically a cancellation) interrupted the worker's code."""
    return _show(
        (frame.f_code.co_filename, line, frame.f_code.co_name)
        for frame, line in traceback.walk_tb(tb)
    )
