"""The proxy's side of identity: obtain a first leaf with a join token, and renew it (the loop
that keeps it renewed, and the proxy serving while the CA is away, is identity.renewer).

Files in the service's state directory (written atomically):
`key.pem` (0600), `cert.pem` (leaf followed by the issuer) and `bundle.pem`.
"""

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from identity import pki, spiffe
from identity.authority import proof_of_possession
from identity.tokens import anchor_pin, parse_token
from vm_mesh.defaults import LEAF_FILES
from vm_mesh.errors import UserError, caused_by
from vm_mesh.files import settle, write_together

log = logging.getLogger("vmesh.identity.client")

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# The most of a trust bundle (anchors, PEM) read from a service not yet authenticated.
MAX_BUNDLE_BYTES = 64 * 1024


class IdentityRefused(Exception):
    """The identity service answered with a refusal (a 4xx and a reason)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidAnswer(UserError):
    """The identity service answered 200, but not with a leaf for the request: nothing is
    stored, so the files in place (and their ability to renew) stay as they were."""

    def __init__(self, url: str, why: str) -> None:
        super().__init__(f"identity.invalid_answer: the identity service at {url} answered "
                         f"without a usable leaf ({why}); nothing was stored")


@dataclass(frozen=True, slots=True)
class LeafFiles:
    """Where a service's key, leaf chain and trust bundle live."""

    directory: Path

    @property
    def key(self) -> Path:
        return self.directory / "key.pem"

    @property
    def cert(self) -> Path:
        return self.directory / "cert.pem"

    @property
    def bundle(self) -> Path:
        return self.directory / "bundle.pem"

    def leaf(self) -> x509.Certificate:
        self.settle()
        return pki.load_certs(self.cert.read_bytes())[0]

    def save(self, key_pem: bytes, chain_pem: str, bundle_pem: str) -> None:
        """Replace key, chain and bundle together (see `settle`)."""
        write_together(self.directory, [(LEAF_FILES[0], bundle_pem.encode(), 0o644),
                                        (LEAF_FILES[1], key_pem, 0o600),
                                        (LEAF_FILES[2], chain_pem.encode(), 0o644)])

    def settle(self) -> None:
        """Finish a `save` that was cut off (a renewal killed halfway), so that the key and
        the certificate in place always belong together."""
        settle(self.directory, LEAF_FILES)


def _csr(key: Any, identity: str) -> x509.CertificateSigningRequest:
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True
        )
        .sign(key, hashes.SHA256())
    )


def _trusting(anchors_pem: str) -> ssl.SSLContext:
    """A TLS 1.2+ client context that trusts these PEM anchors and nothing else."""
    context = ssl.create_default_context(cadata=anchors_pem)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def _post(url: str, path: str, body: dict[str, Any], context: ssl.SSLContext) -> Any:
    async with httpx.AsyncClient(verify=context, timeout=TIMEOUT) as client:
        response = await client.post(url.rstrip("/") + path, json=body)
    if response.status_code != 200:
        try:
            answer = response.json()
            raise IdentityRefused(answer["error"], answer["detail"])
        except (ValueError, KeyError, TypeError):
            raise IdentityRefused(f"http.{response.status_code}", response.text[:200]) from None
    try:
        return response.json()
    except ValueError:
        raise InvalidAnswer(url, "the body is not JSON") from None


async def _read_at_most(response: httpx.Response, limit: int) -> bytes | None:
    """The body of `response` (decoded), or None as soon as it is over `limit` bytes."""
    length = response.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        return None
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _store_issued(files: LeafFiles, url: str, answer: Any, key: ec.EllipticCurvePrivateKey,
                  identity: str) -> x509.Certificate:
    """Store the leaf of an answer to a join or renewal, with `key`, once it is known to be a
    leaf of `identity` for that key, with a trust bundle; InvalidAnswer, and nothing stored,
    otherwise."""
    fields = answer if isinstance(answer, dict) else {}
    chain_pem, bundle_pem = fields.get("certificate"), fields.get("bundle")
    if not (isinstance(chain_pem, str) and isinstance(bundle_pem, str)):
        raise InvalidAnswer(url, "no certificate and bundle in it")
    try:
        chain, bundle = (pki.load_certs(pem.encode()) for pem in (chain_pem, bundle_pem))
        named = str(pki.identity_of(chain[0])) if chain else None
    except ValueError as exc:
        raise InvalidAnswer(url, f"its certificates do not parse: {exc}") from None
    if not (chain and bundle):
        raise InvalidAnswer(url, "no leaf or no trust bundle in it")
    if chain[0].public_key() != key.public_key():
        raise InvalidAnswer(url, "its leaf is not for the key this request sent")
    if named != identity:
        raise InvalidAnswer(url, f"its leaf is of {named}, not {identity}")
    files.save(pki.key_pem(key), chain_pem, bundle_pem)
    return chain[0]


async def fetch_pinned_anchor(url: str, pin: str) -> x509.Certificate:
    """The anchor that `pin` names, from the CA's published bundle.

    The bundle is fetched without authentication, so it proves nothing but that one
    anchor: only it may authenticate the identity service a token is sent to (an impostor
    could list its own anchor beside the real one, which is public).
    """
    async with httpx.AsyncClient(verify=False, timeout=TIMEOUT) as client, \
            client.stream("GET", url.rstrip("/") + "/v1/bundle") as response:
        response.raise_for_status()
        bundle = await _read_at_most(response, MAX_BUNDLE_BYTES)
    if bundle is None:
        raise UserError(
            f"identity.bundle_too_large: the identity service at {url} published a trust "
            f"bundle over {MAX_BUNDLE_BYTES} bytes; nothing was read further or stored "
            "(check the --identity URL)"
        )
    for anchor in pki.load_certs(bundle):
        if anchor_pin(anchor) == pin:
            return anchor
    raise UserError(
        f"the identity service at {url} is not the CA this token was made for "
        "(anchor pin mismatch); check the --identity URL"
    )


async def obtain(
    url: str, token_text: str, *, host: str, service: str, directory: Path
) -> x509.Certificate:
    """Join the mesh: exchange a token for a first leaf and store it in `directory`.

    The token goes only to a service whose certificate chains to the anchor the token
    pins; the trust bundle stored is the one that service answers with.
    """
    token = parse_token(token_text)
    anchor = await fetch_pinned_anchor(url, token.anchor_pin)
    trust_domain = pki.uri_sans(anchor)[0].removeprefix("spiffe://")
    identity = str(spiffe.make(trust_domain, "svc", service))
    key = pki.generate_key()
    csr = _csr(key, identity)
    try:
        answer = await _post(
            url,
            "/v1/join",
            {"token": str(token), "host": host, "csr": csr_pem(csr)},
            _trusting(pki.cert_pem(anchor).decode()),
        )
    except httpx.ConnectError as exc:
        if not caused_by(exc, ssl.SSLCertVerificationError):
            raise
        raise UserError(
            f"the identity service at {url} does not prove it is the CA this token was made "
            "for (its certificate does not chain to the anchor the token pins; if that CA "
            "rotated its anchor after the token was made, make a new token)"
        ) from None
    files = LeafFiles(directory)
    leaf = _store_issued(files, url, answer, key, identity)
    log.info("joined the mesh", extra=_described(identity, leaf))
    return files.leaf()


def csr_pem(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode()


async def renew(url: str, directory: Path) -> x509.Certificate:
    """Exchange the current leaf in `directory` for a new one (new key) and store it."""
    files = LeafFiles(directory)
    current_key = pki.load_key(files.key.read_bytes())
    leaf = files.leaf()
    identity = str(pki.identity_of(leaf))
    key = pki.generate_key()
    csr = _csr(key, identity)
    answer = await _post(
        url,
        "/v1/renew",
        {
            "certificate": files.cert.read_text(),
            "csr": csr_pem(csr),
            "proof": proof_of_possession(current_key, csr),
        },
        _trusting(files.bundle.read_text()),
    )
    log.info("certificate renewed",
             extra=_described(identity, _store_issued(files, url, answer, key, identity)))
    return files.leaf()


def _described(identity: str, leaf: x509.Certificate) -> dict[str, str]:
    """A stored leaf as the log names it."""
    return {"identity": identity, "serial": pki.new_serial_hex(leaf),
            "not_after": leaf.not_valid_after_utc.isoformat()}
