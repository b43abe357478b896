"""Errors as ``tcpworkers dev`` shows them: the user's frames first, the runtime's folded.

A traceback through a worker is mostly frames of tcpworkers, asyncio and the ASGI server, with
the one or two lines the user wrote somewhere in the middle. :func:`explain` splits each
exception of a chain into *user* frames (files outside tcpworkers, the standard library and
installed packages) and *runtime* frames; :func:`format_folded` prints the user's frames as a
normal traceback and the runtime's as one summary line; :func:`error_page` renders the same as
the dev 500 page (HTML for browsers, text for everything else), with the request and the table of
the sockets it opened. When no frame is the user's (a bug in tcpworkers or a library), nothing is
folded. Every text that reaches a page or a terminal goes through ``redact`` first.
"""

from __future__ import annotations

import html
import linecache
import sysconfig
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, final

__all__ = [
    "ErrorPart",
    "Frame",
    "PageRequest",
    "PageSocket",
    "error_page",
    "explain",
    "format_folded",
    "is_runtime_file",
]

# tcpworkers' own files (src/tcpworkers), and the directories of the standard library and of
# installed packages (asyncio, uvicorn, starlette...).
_PACKAGE_DIR: Final = str(Path(__file__).resolve().parents[1]) + "/"
_LIBRARY_DIRS: Final = tuple(
    sorted(
        {
            str(Path(path).resolve()) + "/"
            for name in ("stdlib", "platstdlib", "purelib", "platlib")
            if (path := sysconfig.get_paths().get(name))
        }
    )
)
# Headers whose values are credentials: never shown on the page.
_HIDDEN_HEADERS: Final = frozenset({"authorization", "cookie", "proxy-authorization"})
_CONTEXT_LINES: Final = 2

Redact = Callable[[str], str]


def is_runtime_file(filename: str) -> bool:
    """True for frames of tcpworkers, the standard library, installed packages and
    ``<frozen ...>``/``<string>`` code; False for the user's files."""
    if filename.startswith("<"):
        return True
    path = str(Path(filename).resolve())
    return path.startswith(_PACKAGE_DIR) or path.startswith(_LIBRARY_DIRS)


@final
@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a traceback.

    Attributes:
        filename: the file as Python reported it.
        shown: the file as the page shows it (relative to the current directory when below
            it; ``tcpworkers/runtime/_app.py`` style for runtime files).
        lineno: the line number (0 when unknown).
        name: the function.
        line: the source line, stripped ("" when unavailable).
        user: True for the user's frames.
    """

    filename: str
    shown: str
    lineno: int
    name: str
    line: str
    user: bool


@final
@dataclass(frozen=True, slots=True)
class ErrorPart:
    """One exception of a chain, oldest (the first cause) first.

    Attributes:
        summary: ``"RuntimeError: message"`` (for a SyntaxError, with the file, line and caret),
            redacted.
        frames: every frame, outermost first.
        lead: the sentence Python prints before this exception when it is not the first
            ("The above exception was the direct cause of the following exception:"), or "".
    """

    summary: str
    frames: tuple[Frame, ...]
    lead: str

    @property
    def user_frames(self) -> tuple[Frame, ...]:
        return tuple(f for f in self.frames if f.user)

    @property
    def runtime_frames(self) -> tuple[Frame, ...]:
        return tuple(f for f in self.frames if not f.user)


_CAUSE: Final = "The above exception was the direct cause of the following exception:"
_CONTEXT: Final = "During handling of the above exception, another exception occurred:"


def explain(exc: BaseException, redact: Redact = str) -> list[ErrorPart]:
    """Split ``exc`` and its chain (``__cause__``/``__context__``) into parts, oldest first."""
    newest_first: list[traceback.TracebackException] = []
    leads: list[str] = []  # leads[k]: how newest_first[k + 1] led to newest_first[k]
    te: traceback.TracebackException | None = traceback.TracebackException.from_exception(exc)
    while te is not None:
        newest_first.append(te)
        if te.__cause__ is not None:
            te = te.__cause__
            leads.append(_CAUSE)
        elif te.__context__ is not None and not te.__suppress_context__:
            te = te.__context__
            leads.append(_CONTEXT)
        else:
            te = None
    parts: list[ErrorPart] = []
    for index in range(len(newest_first) - 1, -1, -1):
        part = newest_first[index]
        parts.append(
            ErrorPart(
                summary=redact("".join(part.format_exception_only()).rstrip("\n")),
                frames=tuple(_frame(summary) for summary in part.stack),
                lead="" if index == len(newest_first) - 1 else leads[index],
            )
        )
    return parts


def _frame(summary: traceback.FrameSummary) -> Frame:
    filename = summary.filename
    user = not is_runtime_file(filename)
    return Frame(
        filename=filename,
        shown=_shown(filename, user),
        lineno=summary.lineno or 0,
        name=summary.name,
        line=(summary.line or "").strip(),
        user=user,
    )


def _shown(filename: str, user: bool) -> str:
    if filename.startswith("<"):
        return filename
    path = Path(filename).resolve()
    if user:
        try:
            return str(path.relative_to(Path.cwd().resolve()))
        except ValueError:
            return str(path)
    text = str(path)
    for base in (str(Path(_PACKAGE_DIR).parent) + "/", *_LIBRARY_DIRS):
        if text.startswith(base):
            return text[len(base) :]
    return text


def format_folded(exc: BaseException, redact: Redact = str) -> str:
    """``exc`` as a traceback with the user's frames first and the runtime's folded into one
    line per exception; the full traceback when no frame is the user's."""
    parts = explain(exc, redact)
    if not _has_user_code(exc, parts):
        return redact("".join(traceback.format_exception(exc))).rstrip("\n")
    lines: list[str] = []
    for part in parts:
        if part.lead:
            lines += ["", part.lead, ""]
        folded = part.runtime_frames
        lines.append(
            "Traceback (most recent call last"
            + (
                f"; {len(folded)} runtime frame{'s' * (len(folded) != 1)} folded below"
                if folded
                else ""
            )
            + "):"
        )
        for frame in part.user_frames:
            lines.append(f'  File "{frame.shown}", line {frame.lineno}, in {frame.name}')
            if frame.line:
                lines.append(f"    {redact(frame.line)}")
        lines.append(part.summary)
        if folded:
            lines.append(f"  (runtime: {_fold_summary(folded)})")
    return "\n".join(lines)


def _has_user_code(exc: BaseException, parts: Sequence[ErrorPart]) -> bool:
    """Whether folding helps: a frame is the user's, or the error is a syntax error in a user
    file (its summary shows the file, line and caret; every frame is the import machinery)."""
    if any(part.user_frames for part in parts):
        return True
    return (
        isinstance(exc, SyntaxError)
        and bool(exc.filename)
        and not is_runtime_file(str(exc.filename))
    )


def _fold_summary(frames: Sequence[Frame]) -> str:
    files: dict[str, None] = {}
    for frame in frames:
        files.setdefault(frame.shown, None)
    return ", ".join(files)


# --- the page -----------------------------------------------------------------------------


@final
@dataclass(frozen=True, slots=True)
class PageRequest:
    """The request as the page shows it."""

    method: str
    url: str
    headers: Sequence[tuple[str, str]]


@final
@dataclass(frozen=True, slots=True)
class PageSocket:
    """One row of the socket table: a connection the request opened."""

    what: str
    bytes_out: int
    bytes_in: int


def error_page(
    *,
    title: str,
    exc: BaseException,
    request: PageRequest | None,
    sockets: Iterable[PageSocket] = (),
    socket_summary: str = "",
    html_wanted: bool,
    redact: Redact = str,
    hint: str = "",
) -> tuple[str, str]:
    """The dev error page: ``(content_type, body)``.

    Args:
        title: the first line, e.g. ``"500 Internal Server Error in GET /boom"``.
        exc: the exception to show.
        request: the request, or ``None`` (a worker that failed to load).
        sockets: the request's connections.
        socket_summary: one line of totals under the table (opened, denied, bytes).
        html_wanted: HTML (a browser asked for it) or plain text.
        redact: removes secret values from every text shown.
        hint: a sentence under the title (what to do next).
    """
    rows = list(sockets)
    if not html_wanted:
        return "text/plain; charset=utf-8", _text_page(
            title, exc, request, rows, socket_summary, redact, hint
        )
    return "text/html; charset=utf-8", _html_page(
        title, exc, request, rows, socket_summary, redact, hint
    )


def _header_value(name: str, value: str, redact: Redact) -> str:
    return "[hidden]" if name.lower() in _HIDDEN_HEADERS else redact(value)


def _text_page(
    title: str,
    exc: BaseException,
    request: PageRequest | None,
    sockets: list[PageSocket],
    summary: str,
    redact: Redact,
    hint: str,
) -> str:
    out = [redact(title), ""]
    if hint:
        out += [hint, ""]
    out += [format_folded(exc, redact), ""]
    if request is not None:
        out += ["Request:", f"  {request.method} {redact(request.url)}"]
        out += [f"  {k}: {_header_value(k, v, redact)}" for k, v in request.headers]
        out.append("")
        out.append("Sockets of this request:")
        if sockets:
            out += [f"  {redact(s.what)}  out={s.bytes_out}B in={s.bytes_in}B" for s in sockets]
        else:
            out.append("  none")
        if summary:
            out.append(f"  {summary}")
    return "\n".join(out) + "\n"


_STYLE: Final = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:70em;padding:0 1em;color:#222}
h1{font-size:1.3em;color:#b00020}h2{font-size:1.05em;margin-top:1.6em}
pre{background:#f6f6f6;padding:.6em .8em;overflow-x:auto;border-radius:4px}
.frame{margin:.4em 0}.file{font-family:monospace;color:#555}
.code{font-family:monospace;white-space:pre;background:#f6f6f6;padding:.3em .6em;display:block}
.hl{background:#ffe7a3}table{border-collapse:collapse}
td,th{border-bottom:1px solid #ddd;padding:.2em .8em;text-align:left;font-family:monospace;
vertical-align:top}td{word-break:break-all}th{white-space:nowrap}
details{margin:.6em 0}summary{cursor:pointer;color:#555}.lead{color:#555;font-style:italic}
"""


def _html_page(
    title: str,
    exc: BaseException,
    request: PageRequest | None,
    sockets: list[PageSocket],
    summary: str,
    redact: Redact,
    hint: str,
) -> str:
    esc = html.escape
    parts = explain(exc, redact)
    fold = _has_user_code(exc, parts)
    body = [f"<h1>{esc(redact(title))}</h1>"]
    if hint:
        body.append(f"<p>{esc(hint)}</p>")
    for part in parts:
        if part.lead:
            body.append(f'<p class="lead">{esc(part.lead)}</p>')
        body.append(f"<pre>{esc(part.summary)}</pre>")
        shown = part.user_frames if fold else part.frames
        for frame in reversed(shown):  # most recent call first, as a page reads
            body.append(_html_frame(frame, redact))
        folded = part.runtime_frames if fold else ()
        if folded:
            body.append(
                f"<details><summary>{len(folded)} runtime frame{'s' * (len(folded) != 1)} "
                "(tcpworkers, the standard library, installed packages)</summary>"
            )
            body += [_html_frame(frame, redact) for frame in reversed(folded)]
            body.append("</details>")
    if request is not None:
        body.append("<h2>Request</h2>")
        body.append(f"<pre>{esc(request.method)} {esc(redact(request.url))}</pre>")
        body.append("<table>")
        body += [
            f"<tr><th>{esc(k)}</th><td>{esc(_header_value(k, v, redact))}</td></tr>"
            for k, v in request.headers
        ]
        body.append("</table>")
        body.append("<h2>Sockets of this request</h2>")
        if sockets:
            body.append("<table><tr><th>connection</th><th>out</th><th>in</th></tr>")
            body += [
                f"<tr><td>{esc(redact(s.what))}</td><td>{s.bytes_out} B</td>"
                f"<td>{s.bytes_in} B</td></tr>"
                for s in sockets
            ]
            body.append("</table>")
        else:
            body.append("<p>none</p>")
        if summary:
            body.append(f"<p>{esc(summary)}</p>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(redact(title))}</title><style>{_STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>\n"
    )


def _html_frame(frame: Frame, redact: Redact) -> str:
    esc = html.escape
    head = (
        f'<div class="frame"><span class="file">{esc(frame.shown)}, line {frame.lineno}, '
        f"in {esc(frame.name)}</span>"
    )
    lines = []
    if frame.lineno and not frame.filename.startswith("<"):
        first = max(frame.lineno - _CONTEXT_LINES, 1)
        for number in range(first, frame.lineno + _CONTEXT_LINES + 1):
            text = linecache.getline(frame.filename, number)
            if not text:
                break
            mark = ' class="hl"' if number == frame.lineno else ""
            lines.append(f"<span{mark}>{number:>5}  {esc(redact(text.rstrip()))}</span>")
    if not lines and frame.line:
        lines.append(f'<span class="hl">{esc(redact(frame.line))}</span>')
    code = f'<span class="code">{chr(10).join(lines)}</span>' if lines else ""
    return head + code + "</div>"
