"""The socket library: ``connect()`` and the ``Socket`` it returns, usable in any asyncio program.

``Dialer``/``use_dialer`` let tests and the runtime inject name resolution and connection
establishment (resolver, per-address connector, happy eyeballs delay) for a context.
"""

from tcpworkers.sockets._address import Address, parse_address
from tcpworkers.sockets._connect import DEFAULT_CONNECT_TIMEOUT, connect
from tcpworkers.sockets._dial import Dialer, Target, current_dialer, use_dialer
from tcpworkers.sockets._socket import (
    Outcome,
    ReadableStream,
    SecureTransport,
    Socket,
    SocketInfo,
    WritableStream,
)
from tcpworkers.sockets._tls import TlsOptions

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "Address",
    "Dialer",
    "Outcome",
    "ReadableStream",
    "SecureTransport",
    "Socket",
    "SocketInfo",
    "Target",
    "TlsOptions",
    "WritableStream",
    "connect",
    "current_dialer",
    "parse_address",
    "use_dialer",
]
