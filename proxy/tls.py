"""The proxy's TLS material: contexts built from its state directory, reloaded on change.

`key.pem`, `cert.pem` (leaf + issuer) and `bundle.pem` are watched; when they
change, new contexts are built and used by every new connection while open
connections keep theirs, so a renewal never drops traffic. If the new files
do not load (say, a key written before its certificate), the old material
stays in force and the next check tries again.

Mesh hops negotiate ALPN: `http/1.1` for HTTP, `vmesh-opaque/2` for opaque TCP (length-
framed, see proxy/tcp.py; the version keeps a peer with another framing from being used).
"""

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from identity import pki, spiffe
from identity.renewal import renewal_time

log = logging.getLogger("vmesh.tls")

ALPN_HTTP = "http/1.1"
ALPN_OPAQUE = "vmesh-opaque/2"


class PeerIdentityError(Exception):
    """The peer's certificate chain verified, but its identity is not the one required."""


@dataclass(frozen=True, slots=True)
class _Loaded:
    fingerprint: tuple[int, ...]
    server: ssl.SSLContext
    client: ssl.SSLContext
    client_opaque: ssl.SSLContext
    admin: ssl.SSLContext
    leaf: x509.Certificate
    chain: list[x509.Certificate]
    bundle: list[x509.Certificate]
    identity: spiffe.SpiffeId
    identity_uri: str  # str(identity), which every request's event carries


def _context(
    purpose: int,
    directory: Path,
    alpn: tuple[str, ...] = (ALPN_HTTP, ALPN_OPAQUE),
    verify: ssl.VerifyMode = ssl.CERT_REQUIRED,
) -> ssl.SSLContext:
    context = ssl.SSLContext(purpose)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = verify
    context.check_hostname = False  # identities are SPIFFE URIs, checked after the handshake
    context.load_verify_locations(cafile=str(directory / "bundle.pem"))
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    context.set_alpn_protocols(list(alpn))
    return context


def _admin_context(directory: Path) -> ssl.SSLContext:
    return _context(ssl.PROTOCOL_TLS_SERVER, directory, (ALPN_HTTP,), ssl.CERT_OPTIONAL)


class TlsMaterial:
    """Current server and client contexts of one proxy, and what its certificates say."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._loaded: _Loaded | None = None
        self.last_error: str | None = None
        self.reload()
        # the listeners' context: each handshake is switched to the material current then
        self.front = _context(ssl.PROTOCOL_TLS_SERVER, directory) if self._loaded else None
        if self.front is not None:
            self.front.sni_callback = self._select
        # the admin port's: a client certificate is asked for and verified when sent, but not
        # required, so health checkers without a mesh identity reach /ready and /live
        self.admin_front = _admin_context(directory) if self._loaded else None
        if self.admin_front is not None:
            self.admin_front.sni_callback = self._select_admin

    def _fingerprint(self) -> tuple[int, ...]:
        stats = [(self.directory / n).stat() for n in ("key.pem", "cert.pem", "bundle.pem")]
        return tuple(v for s in stats for v in (s.st_mtime_ns, s.st_size, s.st_ino))

    def reload(self) -> bool:
        """Load the files if they changed; True when new material is in force."""
        try:
            fingerprint = self._fingerprint()
            if self._loaded and fingerprint == self._loaded.fingerprint:
                return False
            chain = pki.load_certs((self.directory / "cert.pem").read_bytes())
            identity = pki.identity_of(chain[0])
            loaded = _Loaded(
                fingerprint,
                _context(ssl.PROTOCOL_TLS_SERVER, self.directory),
                _context(ssl.PROTOCOL_TLS_CLIENT, self.directory, (ALPN_HTTP,)),
                _context(ssl.PROTOCOL_TLS_CLIENT, self.directory, (ALPN_OPAQUE,)),
                _admin_context(self.directory),
                chain[0],
                chain,
                pki.load_certs((self.directory / "bundle.pem").read_bytes()),
                identity,
                str(identity),
            )
        except (OSError, ssl.SSLError, ValueError, IndexError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "certificates not loaded; the current ones stay in force",
                extra={"directory": str(self.directory), "error": self.last_error},
            )
            return False
        self._loaded = loaded
        self.last_error = None
        log.info(
            "certificates loaded",
            extra={
                "serial": pki.new_serial_hex(loaded.leaf),
                "identity": pki.uri_sans(loaded.leaf),
                "not_after": loaded.leaf.not_valid_after_utc.isoformat(),
            },
        )
        return True

    def _select(self, ssl_object: ssl.SSLObject, server_name: str | None, _: Any) -> None:
        if self._loaded is not None:
            ssl_object.context = self._loaded.server

    def _select_admin(self, ssl_object: ssl.SSLObject, server_name: str | None, _: Any) -> None:
        if self._loaded is not None:
            ssl_object.context = self._loaded.admin

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def client(self) -> ssl.SSLContext:
        assert self._loaded is not None, "no certificates loaded"
        return self._loaded.client

    @property
    def client_opaque(self) -> ssl.SSLContext:
        assert self._loaded is not None, "no certificates loaded"
        return self._loaded.client_opaque

    @property
    def identity(self) -> spiffe.SpiffeId:
        assert self._loaded is not None, "no certificates loaded"
        return self._loaded.identity

    @property
    def identity_uri(self) -> str:
        """The identity as its SPIFFE URI string."""
        assert self._loaded is not None, "no certificates loaded"
        return self._loaded.identity_uri

    def describe(self) -> dict[str, Any]:
        """`/v1/certs`: the chain (leaf first), the trust bundle and the next renewal."""
        if self._loaded is None:
            return {"identity": None, "chain": [], "bundle": [], "error": self.last_error}
        leaf = self._loaded.leaf
        renew_at = renewal_time(
            leaf.not_valid_before_utc.timestamp(), leaf.not_valid_after_utc.timestamp(), jitter=0.0
        )
        return {
            "identity": str(self.identity),
            "chain": [
                _describe(c, "leaf" if i == 0 else "issuer")
                for i, c in enumerate(self._loaded.chain)
            ],
            "bundle": [_describe(c, "anchor") for c in self._loaded.bundle],
            "next_renewal": renew_at,
            "error": self.last_error,
        }


def _describe(cert: x509.Certificate, kind: str) -> dict[str, Any]:
    return {
        "kind": kind,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "san": pki.uri_sans(cert),
        "serial": pki.new_serial_hex(cert),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> spiffe.SpiffeId:
    """The SPIFFE ID of a verified peer; PeerIdentityError when it has none we accept."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object else None
    if not der:
        raise PeerIdentityError("the peer presented no certificate")
    try:
        return pki.identity_of(x509.load_der_x509_certificate(der))
    except ValueError as exc:
        raise PeerIdentityError(str(exc)) from None
