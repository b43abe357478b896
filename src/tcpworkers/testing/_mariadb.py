"""A throwaway MariaDB server for driver tests: its own data directory, a free loopback port,
optionally TLS with a :class:`TestCA` certificate.

``mariadb-install-db`` creates the system tables in a temporary directory, then ``mariadbd``
serves it on 127.0.0.1 (and a Unix socket in the same directory) with the ed25519
authentication plugin loaded, so every password plugin MariaDB ships can be tested. As root,
both run as the ``mysql`` user (``mariadbd`` refuses to run as root; it is started as that
user rather than told ``--user``, which would drop the parent-death guard). ``root@localhost``
has no password; :meth:`LocalMariaDB.execute` runs SQL as it over the Unix socket with the
``mariadb`` command-line client.
"""

from __future__ import annotations

import socket
from typing import final

from tcpworkers.testing._certs import TestCA
from tcpworkers.testing._process import ServerLauncher, ServerProcess, find_binary, free_port

__all__ = ["LocalMariaDB"]

_PACKAGE = "mariadb-server"


@final
class LocalMariaDB(ServerLauncher):
    """A MariaDB server in a temporary directory, for the length of a ``with`` block.

    Example::

        ca = TestCA()
        with LocalMariaDB(ca=ca) as db:
            db.execute("CREATE USER app IDENTIFIED BY 'secret' REQUIRE SSL")
            ...  # connect to db.host:db.port, verifying with db.ca_file

    Args:
        ca: when given, the server offers TLS with a certificate from this CA for
            ``localhost``, ``127.0.0.1`` and ``::1``; :attr:`ca_file` is the CA to trust.
        database: a database to create, empty.

    Attributes:
        host: ``"127.0.0.1"``.
        port: the TCP port (chosen free when started).
        unix_socket: the path of the server's Unix socket.
        ca_file: the CA certificate's path when started with ``ca``, else ``None``.
    """

    __test__ = False

    def __init__(self, *, ca: TestCA | None = None, database: str = "test") -> None:
        self._ca = ca
        self.database = database
        self.host = "127.0.0.1"
        self.port = 0
        self.unix_socket = ""
        self.ca_file: str | None = None
        self._proc: ServerProcess | None = None

    @property
    def version(self) -> str:
        """The server's version string, e.g. ``10.11.19-MariaDB-0+deb12u1``."""
        return self.execute("SELECT VERSION()").strip()

    def start(self) -> None:
        """Create the data directory and start the server; returns once it accepts queries."""
        if self._proc is not None:
            raise RuntimeError("this LocalMariaDB is already started")
        mariadbd = find_binary("mariadbd", package=_PACKAGE, what="MariaDB server")
        install_db = find_binary("mariadb-install-db", package=_PACKAGE, what="MariaDB server")
        proc = self._proc = ServerProcess("tcpworkers-mariadb-", run_as="mysql")
        try:
            datadir = proc.directory / "data"
            user = [f"--user={proc.user}"] if proc.user else []
            proc.run(
                [
                    install_db,
                    "--no-defaults",
                    *user,
                    f"--datadir={datadir}",
                    "--auth-root-authentication-method=normal",
                    "--skip-test-db",
                    "--skip-name-resolve",
                ]
            )
            self.port = free_port(self.host)
            self.unix_socket = str(proc.directory / "mysqld.sock")
            tls: list[str] = []
            if self._ca is not None:
                self.ca_file, cert, key = proc.write_tls(self._ca)
                tls = [f"--ssl-ca={self.ca_file}", f"--ssl-cert={cert}", f"--ssl-key={key}"]
            # No --user: ServerProcess starts it as that user (see ServerProcess.start).
            argv = [
                mariadbd,
                "--no-defaults",
                f"--datadir={datadir}",
                f"--bind-address={self.host}",
                f"--port={self.port}",
                f"--socket={self.unix_socket}",
                f"--pid-file={proc.directory / 'mysqld.pid'}",
                f"--log-error={proc.log_path}",
                "--plugin-load-add=auth_ed25519",
                "--skip-log-bin",
                "--skip-name-resolve",
                "--innodb-buffer-pool-size=16M",
                "--innodb-log-file-size=8M",
                "--max-connections=200",
                *tls,
            ]
            proc.start(argv, self._ready, f"mariadbd on {self.host}:{self.port}")
            self.execute(f"CREATE DATABASE IF NOT EXISTS `{self.database}`", database="mysql")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as probe:
                # The server greets first: a handshake packet means it serves.
                return len(probe.recv(4)) == 4
        except OSError:
            return False

    def execute(self, sql: str, *, database: str | None = None) -> str:
        """Run SQL as ``root@localhost`` over the Unix socket, in :attr:`database` unless told
        otherwise; return its tab-separated output."""
        if self._proc is None:
            raise RuntimeError("start the LocalMariaDB first (with LocalMariaDB() as db: ...)")
        client = find_binary("mariadb", package="mariadb-client", what="MariaDB client")
        return self._proc.run(
            [
                client,
                "--no-defaults",
                f"--socket={self.unix_socket}",
                "--user=root",
                "--batch",
                "--skip-column-names",
                f"--database={database or self.database}",
                "--execute",
                sql,
            ]
        )
