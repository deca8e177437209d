"""The proxy's TLS material: contexts built from its state directory, reloaded on change.

`key.pem`, `cert.pem` (leaf + issuer) and `bundle.pem` are watched; when they
change, new contexts are built and used by every new connection while open
connections keep theirs, so a renewal never drops traffic. If the new files
do not load (say, a key written before its certificate), the old material
stays in force and the next check tries again.

Mesh hops negotiate ALPN: `http/1.1` for HTTP, `vmesh-opaque/2` for opaque TCP (length-
framed, see proxy/tcp.py; the version keeps a peer with another framing from being used).
"""

import asyncio
import contextlib
import logging
import re
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from identity import spiffe
from proxy import certinfo
from vm_mesh.defaults import LEAF_FILES
from vm_mesh.files import settle

log = logging.getLogger("vmesh.tls")

ALPN_HTTP = "http/1.1"
ALPN_OPAQUE = "vmesh-opaque/2"

# X509_V_FLAG_NO_CHECK_TIME, which the ssl module does not name: the load-time check of
# our own chain asks whether it fits together, not whether it is in date (an expired
# leaf still loads, and `/v1/certs` shows it expired, as peers will find it)
_NO_CHECK_TIME = 0x200000
CHECK_INTERVAL_S = 2.0  # how often `follow` looks at the files
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


class PeerIdentityError(Exception):
    """The peer's certificate chain verified, but its identity is not the one required."""


@dataclass(frozen=True, slots=True)
class _Loaded:
    fingerprint: tuple[int, ...]
    server: ssl.SSLContext
    client: ssl.SSLContext
    client_opaque: ssl.SSLContext
    admin: ssl.SSLContext
    chain: list[certinfo.Cert]  # leaf first, each decoded by the ssl module
    bundle: list[certinfo.Cert]
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


def _own_leaf(directory: Path) -> certinfo.Cert:
    """Our leaf as peers see it, from a handshake in memory with a client trusting our bundle.

    It proves that key, chain and bundle fit together; ValueError when the chain does
    not verify against the bundle.
    """
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_flags |= _NO_CHECK_TIME
    client.load_verify_locations(cafile=str(directory / "bundle.pem"))
    client_in, client_out, server_in, server_out = (ssl.MemoryBIO() for _ in range(4))
    client_side = client.wrap_bio(client_in, client_out)
    server_side = server.wrap_bio(server_in, server_out, server_side=True)
    for _ in range(4):  # the client is done on its second call in TLS 1.3, its third in 1.2
        try:
            client_side.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLCertVerificationError as exc:
            raise ValueError(
                f"cert.pem does not verify against bundle.pem: {exc.verify_message}"
            ) from None
        else:
            cert = client_side.getpeercert()
            if cert is None:  # cannot happen: this client requires a verified certificate
                raise ValueError("cert.pem: our own handshake presented no certificate")
            return cert
        server_in.write(client_out.read())
        with contextlib.suppress(ssl.SSLWantReadError):
            server_side.do_handshake()
        client_in.write(server_out.read())
    raise ValueError("cert.pem: the handshake with our own certificate did not complete")


def _ca_certs(data: bytes, what: str, skip: int = 0) -> list[certinfo.Cert]:
    """The certificates of a PEM file after the first `skip`, in order, decoded by `ssl`.

    `ssl` decodes a certificate this way only when it is a CA; ValueError for one that is not.
    """
    decoded = []
    for number, block in enumerate(_PEM_CERT.findall(data)[skip:], skip + 1):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=block.decode("ascii"))
        certs = context.get_ca_certs()
        if not certs:
            raise ValueError(f"{what}: certificate {number} is not a CA certificate")
        decoded.append(certs[0])
    return decoded


class TlsMaterial:
    """Current server and client contexts of one proxy, and what its certificates say."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._loaded: _Loaded | None = None
        self.last_error: str | None = None
        self.reload()
        # the listeners' context: each handshake is switched to the material current then
        self.front: ssl.SSLContext | None = (
            _context(ssl.PROTOCOL_TLS_SERVER, directory) if self._loaded else None
        )
        if self.front is not None:
            self.front.sni_callback = self._select
        # the admin port's: a client certificate is asked for and verified when sent, but not
        # required, so health checkers without a mesh identity reach /ready and /live
        self.admin_front: ssl.SSLContext | None = (
            _admin_context(directory) if self._loaded else None
        )
        if self.admin_front is not None:
            self.admin_front.sni_callback = self._select_admin

    def _fingerprint(self) -> tuple[int, ...]:
        stats = [(self.directory / name).stat() for name in LEAF_FILES]
        return tuple(v for s in stats for v in (s.st_mtime_ns, s.st_size, s.st_ino))

    def reload(self) -> bool:
        """Load the files if they changed; True when new material is in force."""
        try:
            settle(self.directory, LEAF_FILES)  # a renewal cut off halfway: finish it
            fingerprint = self._fingerprint()
            if self._loaded and fingerprint == self._loaded.fingerprint:
                return False
            contexts = (
                _context(ssl.PROTOCOL_TLS_SERVER, self.directory),
                _context(ssl.PROTOCOL_TLS_CLIENT, self.directory, (ALPN_HTTP,)),
                _context(ssl.PROTOCOL_TLS_CLIENT, self.directory, (ALPN_OPAQUE,)),
                _admin_context(self.directory),
            )
            leaf = _own_leaf(self.directory)
            identity = certinfo.identity(leaf)
            issuers = _ca_certs((self.directory / "cert.pem").read_bytes(), "cert.pem", skip=1)
            bundle = _ca_certs((self.directory / "bundle.pem").read_bytes(), "bundle.pem")
            loaded = _Loaded(
                fingerprint, *contexts, [leaf, *issuers], bundle, identity, str(identity)
            )
        except (OSError, ssl.SSLError, ValueError) as exc:
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
                "serial": certinfo.serial_hex(leaf["serialNumber"]),
                "identity": certinfo.uri_sans(leaf),
                "not_after": certinfo.iso_utc(leaf["notAfter"]),
            },
        )
        return True

    async def follow(self, interval: float = CHECK_INTERVAL_S) -> None:
        """Reload the files whenever they change (a renewal by this process or another, a
        rotation), until cancelled."""
        while True:
            await asyncio.sleep(interval)
            self.reload()

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

    @property
    def validity(self) -> tuple[float, float]:
        """The leaf's not_before and not_after, in epoch seconds."""
        assert self._loaded is not None, "no certificates loaded"
        leaf = self._loaded.chain[0]
        return certinfo.timestamp(leaf["notBefore"]), certinfo.timestamp(leaf["notAfter"])

    def describe(self) -> dict[str, Any]:
        """`/v1/certs` but its next renewal (the renewer's): the chain (leaf first) and the
        trust bundle."""
        if self._loaded is None:
            return {"identity": None, "chain": [], "bundle": [], "error": self.last_error}
        return {
            "identity": str(self.identity),
            "chain": [
                certinfo.describe(c, "leaf" if i == 0 else "issuer")
                for i, c in enumerate(self._loaded.chain)
            ],
            "bundle": [certinfo.describe(c, "anchor") for c in self._loaded.bundle],
            "error": self.last_error,
        }


def peer_identity(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> spiffe.SpiffeId:
    """The SPIFFE ID of a verified peer; PeerIdentityError when it has none we accept."""
    cert = ssl_object.getpeercert() if ssl_object else None
    if not cert:
        raise PeerIdentityError("the peer presented no certificate")
    try:
        return certinfo.identity(cert)
    except ValueError as exc:
        raise PeerIdentityError(str(exc)) from None


def upstream_refusal(
    ssl_object: ssl.SSLObject | None, expected: str, protocol: str
) -> str | None:
    """Why an upstream connection whose handshake succeeded must not be used (None: it may):
    its certificate names no mesh identity (`upstream.bad_identity`) or another one than
    `expected` (`upstream.wrong_identity`: discovery lists something else as the service),
    or the peer did not agree to the ALPN `protocol` asked for (`upstream.http_not_supported`,
    `upstream.opaque_not_supported`: it speaks another version of the protocol)."""
    try:
        identity = str(peer_identity(ssl_object))
    except PeerIdentityError as exc:
        return f"upstream.bad_identity: {exc}"[:200]
    if identity != expected:
        return f"upstream.wrong_identity: {identity}, expected {expected}"[:200]
    if ssl_object is None or ssl_object.selected_alpn_protocol() != protocol:
        kind = "http" if protocol == ALPN_HTTP else "opaque"
        return f"upstream.{kind}_not_supported: {identity} did not agree to ALPN {protocol}"
    return None
