"""``Headers``: HTTP header fields, case-insensitive, multi-valued and ordered (Fetch API shape).

Names are stored lowercased (as HTTP/2 and the Fetch API present them) together with their
values, in the order they were added. Every name and value is checked when it enters, so a
header can never smuggle a line break into the response (header injection, response splitting).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Final, TypeAlias, TypeVar, final, overload

__all__ = ["Headers", "HeadersInit"]

T = TypeVar("T")

HeadersInit: TypeAlias = "Mapping[str, str] | Iterable[tuple[str, str]] | Headers"

# RFC 9110 section 5.6.2: a field name is a token.
_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 section 5.5: field values must not contain CR, LF or NUL; we also refuse the other
# C0 controls but HTAB, and DEL, which is what uvicorn refuses to send (so an error surfaces here,
# where the handler set the header, not later as a broken response).
_BAD_VALUE: Final = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
# Fetch "normalize": leading and trailing HTTP whitespace is not part of a value.
_WHITESPACE: Final = " \t"
# Multiple Set-Cookie fields cannot be joined with ", " (an Expires date contains a comma).
_NOT_JOINED: Final = "set-cookie"
# Shown as "[redacted]" by repr(), which ends up in logs and tracebacks.
_SENSITIVE: Final = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"header names must be str, not {type(name).__name__}")
    if not _TOKEN.fullmatch(name):
        raise ValueError(
            f"invalid header name {name!r}: a name is one or more letters, digits or "
            "!#$%&'*+-.^_`|~ (no spaces, colons, or line breaks)"
        )
    return name.lower()


def _check_value(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(
            f"the value of header {name!r} must be str, not {type(value).__name__}; "
            "convert it first, e.g. str(n)"
        )
    value = value.strip(_WHITESPACE)
    if _BAD_VALUE.search(value):
        raise ValueError(
            f"invalid value for header {name!r}: {value!r} contains a line break or another "
            "control character (refused: it could inject headers into the response)"
        )
    if not value.isascii() and max(map(ord, value)) > 0xFF:
        raise ValueError(
            f"invalid value for header {name!r}: {value!r} has characters outside latin-1, "
            "which HTTP headers cannot carry; percent-encode them (RFC 8187) first"
        )
    return value


@final
class Headers:
    """HTTP header fields: case-insensitive names, several values per name, insertion order.

    Args:
        init: a mapping of names to values, a list of ``(name, value)`` pairs (repeat a name to
            give it several values), or another ``Headers`` (copied).

    Raises:
        TypeError: ``init``, a name or a value has the wrong type.
        ValueError: a name is not an HTTP token, or a value contains a line break or another
            control character.

    Iterating yields ``(name, value)`` pairs, names lowercased, one pair per value::

        headers = Headers({"Content-Type": "text/plain"})
        headers.append("Vary", "Accept")
        headers.append("vary", "Origin")
        headers.get("VARY")  # "Accept, Origin"
        headers.get_all("vary")  # ["Accept", "Origin"]
    """

    __slots__ = ("_fields",)
    __hash__ = None  # type: ignore[assignment]  # mutable

    def __init__(self, init: HeadersInit | None = None) -> None:
        self._fields: list[tuple[str, str]] = []
        if init is None:
            return
        if isinstance(init, Headers):
            self._fields = list(init._fields)
            return
        if isinstance(init, str | bytes | bytearray):
            raise TypeError(
                "headers must be a mapping or a list of (name, value) pairs, not "
                f"{type(init).__name__}"
            )
        pairs: Iterable[object] = init.items() if isinstance(init, Mapping) else init
        try:
            iterator = iter(pairs)
        except TypeError:
            raise TypeError(
                "headers must be a mapping or a list of (name, value) pairs, not "
                f"{type(init).__name__}"
            ) from None
        for pair in iterator:
            if not isinstance(pair, tuple | list) or len(pair) != 2:
                raise TypeError(f"each header must be a (name, value) pair, got {pair!r}")
            self.append(pair[0], pair[1])

    @classmethod
    def _from_raw(cls, raw: Iterable[tuple[bytes, bytes]]) -> Headers:
        """Internal: headers a server already parsed and validated (ASGI ``scope["headers"]``)."""
        headers = cls()
        headers._fields = [
            (name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in raw
        ]
        return headers

    @classmethod
    def _trusted(cls, fields: list[tuple[str, str]]) -> Headers:
        """Internal: headers from fields already valid and lowercased (no checks: hot path)."""
        headers = cls.__new__(cls)  # without __init__'s call: built for most responses
        headers._fields = fields
        return headers

    def _raw(self) -> list[tuple[bytes, bytes]]:
        """Internal: the fields as ASGI wants them (validated on entry, so this cannot fail)."""
        return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in self._fields]

    @overload
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: T) -> str | T: ...
    def get(self, name: str, default: object = None) -> object:
        """The value of ``name``, or ``default`` if it is absent.

        Several values are joined with ``", "``, as the Fetch API does, except for
        ``Set-Cookie``, whose first value is returned (use :meth:`get_all` for every cookie).
        """
        key = _lookup_key(name)
        values = [value for field, value in self._fields if field == key]
        if not values:
            return default
        if len(values) == 1 or key == _NOT_JOINED:
            return values[0]
        return ", ".join(values)

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order (empty if it is absent)."""
        key = _lookup_key(name)
        return [value for field, value in self._fields if field == key]

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` with ``value``, keeping the position of the first."""
        key = _check_name(name)
        value = _check_value(key, value)
        fields: list[tuple[str, str]] = []
        placed = False
        for field in self._fields:
            if field[0] != key:
                fields.append(field)
            elif not placed:
                fields.append((key, value))
                placed = True
        if not placed:
            fields.append((key, value))
        self._fields = fields

    def append(self, name: str, value: str) -> None:
        """Add a value for ``name`` after the ones it already has."""
        key = _check_name(name)
        self._fields.append((key, _check_value(key, value)))

    def delete(self, name: str) -> None:
        """Remove every value of ``name`` (nothing happens if it is absent)."""
        key = _lookup_key(name)
        self._fields = [field for field in self._fields if field[0] != key]

    def items(self) -> list[tuple[str, str]]:
        """Every ``(name, value)`` pair, in order, names lowercased."""
        return list(self._fields)

    def keys(self) -> list[str]:
        """Every distinct name, lowercased, in order of first appearance."""
        return list(dict.fromkeys(name for name, _ in self._fields))

    def copy(self) -> Headers:
        """An independent copy."""
        return Headers(self)

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __setitem__(self, name: str, value: str) -> None:
        self.set(name, value)

    def __delitem__(self, name: str) -> None:
        if name not in self:
            raise KeyError(name)
        self.delete(name)

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = name.lower()
        return any(field == key for field, _ in self._fields)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(list(self._fields))

    def __len__(self) -> int:
        return len(self._fields)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return _by_name(self._fields) == _by_name(other._fields)

    def __repr__(self) -> str:
        shown = [
            (name, "[redacted]" if name in _SENSITIVE else value) for name, value in self._fields
        ]
        return f"Headers({shown!r})"


def _lookup_key(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"header names must be str, not {type(name).__name__}")
    return name.lower()


def _by_name(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for name, value in fields:
        grouped.setdefault(name, []).append(value)
    return grouped
