"""Connections the gate must let through unchecked: the runtime's own, and the gate's own.

Outside a request scope the gate applies the process-wide default policy (in a served runtime,
the configured one), so code that escapes a request (a fresh ``contextvars.Context``, a thread)
gets no more than a request would. Two kinds of connection are not the worker's and skip it:

- the gate's own second step: a connection the gate has already decided on (it resolved the
  name, checked every address and is now dialling one of them) must not be decided again, and
  must not be counted twice;
- the runtime's own connections (a pool binding's server connections, binding start-up), which
  follow the operator's configuration, not the worker's egress policy.

Both run inside :func:`trusted_connections`. It is deliberately not exported by any package face:
worker code must not reach it by accident.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable
from typing import Final, final

from tcpworkers.scope._current import _current

__all__ = ["is_trusted", "trusted_connections"]

_trusted: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "tcpworkers_trusted_connections", default=False
)


def trusted_connections() -> contextlib.AbstractContextManager[None]:
    """Run a block outside any request scope with the gate stepped aside (see module docstring).

    Tasks started inside the block inherit it (they copy the context).
    """
    return _Trusted()


@final
class _Trusted:
    # A class, not @contextmanager: the gate enters this once or twice per connection.
    __slots__ = ("_scope_token", "_token")

    def __enter__(self) -> None:
        self._token = _trusted.set(True)
        self._scope_token = _current.set(None)

    def __exit__(self, *exc_info: object) -> None:
        _current.reset(self._scope_token)
        _trusted.reset(self._token)


# is_trusted() -> bool: True inside trusted_connections(). Every gated door asks it first, so it
# is the contextvar's own getter (a C call), not a Python function around it.
is_trusted: Final[Callable[[], bool]] = _trusted.get
