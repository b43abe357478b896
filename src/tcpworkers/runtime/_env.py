"""``env``: a worker's configuration values, secrets and bindings, by name.

One ``Env`` serves every request of a worker (as on Cloudflare, where the same object may be
passed to many requests). Bindings are objects with an async life: the runtime starts them before
the first request and stops them at shutdown (see :class:`Binding`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol, TypeVar, final, overload, runtime_checkable

from tcpworkers.runtime._settings import VarValue

__all__ = ["Binding", "Env"]

T = TypeVar("T")


@runtime_checkable
class Binding(Protocol):
    """A resource the runtime owns for a worker and exposes on ``env`` (e.g. a database pool).

    The object itself is what ``env.NAME`` returns. The runtime calls :meth:`start` once before
    the first request (at ASGI lifespan startup, or lazily on the first request when the server
    sends no lifespan events) and :meth:`stop` once at shutdown. Both run outside any request
    scope, so connections a binding opens belong to it, not to a request.
    """

    async def start(self) -> None:
        """Acquire what the binding needs (listen, connect, warm up)."""
        ...

    async def stop(self) -> None:
        """Release everything :meth:`start` acquired."""
        ...


@final
class Env:
    """Vars, secrets and bindings by name: ``env.API_KEY`` or ``env["API_KEY"]``.

    Args:
        vars: plain configuration values.
        secrets: secret values; ``repr(env)`` lists their names, never their values.
        bindings: binding objects (see :class:`Binding`).

    Raises:
        ValueError: a name appears in more than one of the three.

    A name that is also a method of ``Env`` (``get``) is reachable with ``env["get"]``.
    """

    __slots__ = ("_bindings", "_secrets", "_values", "_vars")

    def __init__(
        self,
        vars: Mapping[str, VarValue] | None = None,  # shadows the builtin: the config's name
        secrets: Mapping[str, str] | None = None,
        bindings: Mapping[str, Binding] | None = None,
    ) -> None:
        groups: list[tuple[str, Mapping[str, Any]]] = [
            ("vars", vars or {}),
            ("secrets", secrets or {}),
            ("bindings", bindings or {}),
        ]
        values: dict[str, Any] = {}
        seen_in: dict[str, str] = {}
        for group, mapping in groups:
            for name, value in mapping.items():
                if not isinstance(name, str):
                    raise TypeError(f"env names must be str, not {type(name).__name__}")
                if name in seen_in:
                    raise ValueError(
                        f"env name {name!r} is in both {seen_in[name]} and {group}; "
                        "each name must be unique"
                    )
                seen_in[name] = group
                values[name] = value
        object.__setattr__(self, "_values", values)
        object.__setattr__(self, "_vars", tuple(groups[0][1]))
        object.__setattr__(self, "_secrets", tuple(groups[1][1]))
        object.__setattr__(self, "_bindings", tuple(groups[2][1]))

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup failed. Dunder probes (copy, pickle, IPython) and our
        # own slots before __init__ set them must get a plain AttributeError, not an env lookup
        # (which would recurse).
        if name.startswith("__") or name in Env.__slots__:
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(self._unknown(name)) from None

    def __getitem__(self, name: str) -> Any:
        try:
            return self._values[name]
        except KeyError:
            raise KeyError(self._unknown(name)) from None

    @overload
    def get(self, name: str) -> Any | None: ...
    @overload
    def get(self, name: str, default: T) -> Any | T: ...
    def get(self, name: str, default: object = None) -> object:
        """The value named ``name``, or ``default``."""
        return self._values.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __iter__(self) -> Iterator[str]:
        """The names: vars, then secrets, then bindings."""
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(
            f"env is read-only (tried to set {name!r}); set values in tcpworkers.toml "
            "[vars], as secrets, or as bindings"
        )

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"env is read-only (tried to delete {name!r})")

    def __copy__(self) -> Env:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, object]) -> Env:
        return self  # immutable; and bindings (pools) must not be duplicated

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | {n for n in self._values if n.isidentifier()})

    def _describe_names(self) -> str:
        parts = [
            f"{group} {', '.join(names)}"
            for group, names in (
                ("vars", self._vars),
                ("secrets", self._secrets),
                ("bindings", self._bindings),
            )
            if names
        ]
        return "; ".join(parts) if parts else "nothing"

    def _unknown(self, name: str) -> str:
        return (
            f"env has no {name!r}; it has {self._describe_names()}. Add it to [vars], [secrets] "
            "or a binding in tcpworkers.toml"
        )

    def __repr__(self) -> str:
        shown = [f"{name}={self._values[name]!r}" for name in self._vars]
        shown += [f"{name}=[secret]" for name in self._secrets]
        shown += [f"{name}=<{type(self._values[name]).__name__}>" for name in self._bindings]
        return f"Env({', '.join(shown)})"
