"""A throwaway certificate authority for TLS tests, built on trustme.

Each :class:`TestCA` is a fresh CA (an ECDSA key made in memory, nothing written unless asked).
It issues server certificates for loopback names, expired ones, and client certificates for
mutual TLS, and makes ``ssl.SSLContext`` objects for both ends.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import ssl
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, final

if TYPE_CHECKING:
    import trustme

__all__ = ["ClientCert", "TestCA", "untrusted_ca"]

DEFAULT_HOSTNAMES = ("localhost", "127.0.0.1", "::1")
"""Names a server certificate is valid for by default: every way a test reaches loopback."""


def _trustme() -> type[trustme.CA]:
    try:
        import trustme
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "tcpworkers.testing.TestCA needs trustme: pip install 'tcpworkers[testing]'"
        ) from exc
    return trustme.CA


@final
@dataclasses.dataclass(frozen=True)
class ClientCert:
    """A client certificate and its private key, for mutual TLS.

    Attributes:
        name: the name the certificate was issued for.
        cert_pem: the PEM-encoded certificate.
        key_pem: the PEM-encoded (unencrypted) private key.
    """

    name: str
    cert_pem: str
    key_pem: str = dataclasses.field(repr=False)

    def write(self, directory: str | os.PathLike[str]) -> tuple[Path, Path]:
        """Write the certificate and the key to ``<name>.crt`` and ``<name>.key`` in a directory.

        Args:
            directory: an existing directory (such as pytest's ``tmp_path``).

        Returns:
            ``(cert_path, key_path)``, for APIs that take file paths.
        """
        base = Path(directory)
        cert_path = base / f"{self.name}.crt"
        key_path = base / f"{self.name}.key"
        cert_path.write_text(self.cert_pem, encoding="ascii")
        key_path.touch(mode=0o600)
        key_path.write_text(self.key_pem, encoding="ascii")
        return cert_path, key_path

    def configure(self, context: ssl.SSLContext) -> None:
        """Make ``context`` present this certificate (``SSLContext.load_cert_chain``).

        Args:
            context: usually a client context from :meth:`TestCA.client_context`.
        """
        # load_cert_chain() only reads files, so go through a private temporary directory.
        with tempfile.TemporaryDirectory(prefix="tcpworkers-cert-") as tmp:
            cert_path, key_path = self.write(tmp)
            context.load_cert_chain(cert_path, key_path)


@final
class TestCA:
    """A fresh certificate authority that issues certificates for loopback tests.

    Example::

        ca = TestCA()
        async with EchoServer(ssl=ca.server_context()) as srv:
            reader, writer = await asyncio.open_connection(
                srv.host, srv.port, ssl=ca.client_context(), server_hostname="localhost"
            )
    """

    __test__ = False  # its name starts with "Test": keep pytest from collecting it

    def __init__(self) -> None:
        self._ca = _trustme()()

    @property
    def ca_pem(self) -> str:
        """The PEM text of the CA certificate: what a client trusts."""
        return self._ca.cert_pem.bytes().decode("ascii")

    def write_ca(self, path: str | os.PathLike[str]) -> Path:
        """Write the CA certificate (PEM) to a file.

        Args:
            path: the file to write, for example ``tmp_path / "ca.pem"``.

        Returns:
            The path written.
        """
        target = Path(path)
        target.write_text(self.ca_pem, encoding="ascii")
        return target

    def server_context(
        self,
        hostnames: tuple[str, ...] | list[str] = DEFAULT_HOSTNAMES,
        *,
        expired: bool = False,
        require_client_cert: bool = False,
    ) -> ssl.SSLContext:
        """Make a server-side context presenting a certificate from this CA.

        Args:
            hostnames: names and IP addresses the certificate is valid for.
            expired: issue a certificate whose validity ended yesterday, so that clients that
                verify certificates reject it.
            require_client_cert: ask for a client certificate issued by this CA (mutual TLS)
                and fail the handshake without one.

        Returns:
            A new ``ssl.SSLContext`` for ``server_side=True`` use.
        """
        if isinstance(hostnames, str):
            raise TypeError(f"hostnames must be a tuple of names, got the str {hostnames!r}")
        if not hostnames:
            raise ValueError("hostnames must name at least one host, e.g. ('localhost',)")
        not_before = not_after = None
        if expired:
            now = datetime.datetime.now(datetime.UTC)
            not_before = now - datetime.timedelta(days=30)
            not_after = now - datetime.timedelta(days=1)
        leaf = self._ca.issue_cert(*hostnames, not_before=not_before, not_after=not_after)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        leaf.configure_cert(context)
        if require_client_cert:
            context.verify_mode = ssl.CERT_REQUIRED
            self._ca.configure_trust(context)
        return context

    def client_context(self, *, client_cert: ClientCert | None = None) -> ssl.SSLContext:
        """Make a client-side context that trusts this CA (and verifies hostnames).

        Args:
            client_cert: a certificate to present to servers that require one.

        Returns:
            A new ``ssl.SSLContext`` for client use.
        """
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self._ca.configure_trust(context)
        if client_cert is not None:
            client_cert.configure(context)
        return context

    def issue_server_cert(self, hostnames: tuple[str, ...] = DEFAULT_HOSTNAMES) -> ClientCert:
        """Issue a server certificate as PEM text, for servers configured with files (MariaDB,
        Redis, PostgreSQL): ``.write(directory)`` gives ``(cert_path, key_path)``.

        Args:
            hostnames: names and IP addresses the certificate is valid for.

        Returns:
            The certificate and key (a :class:`ClientCert`, named ``"server"``).
        """
        if isinstance(hostnames, str) or not hostnames:
            raise ValueError(f"hostnames must be a non-empty tuple of names, got {hostnames!r}")
        leaf = self._ca.issue_cert(*hostnames)
        return ClientCert(
            name="server",
            cert_pem=leaf.cert_chain_pems[0].bytes().decode("ascii"),
            key_pem=leaf.private_key_pem.bytes().decode("ascii"),
        )

    def issue_client_cert(self, name: str = "client") -> ClientCert:
        """Issue a client certificate for mutual TLS.

        Args:
            name: the identity (a DNS-style name) the certificate is issued for; also the file
                stem :meth:`ClientCert.write` uses.

        Returns:
            The certificate and key, as PEM text.
        """
        leaf = self._ca.issue_cert(name, common_name=name)
        return ClientCert(
            name=name,
            cert_pem=leaf.cert_chain_pems[0].bytes().decode("ascii"),
            key_pem=leaf.private_key_pem.bytes().decode("ascii"),
        )


def untrusted_ca() -> TestCA:
    """Return a CA that no context from another :class:`TestCA` trusts.

    Use it to serve certificates a client must reject::

        EchoServer(ssl=untrusted_ca().server_context())
    """
    return TestCA()
