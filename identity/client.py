"""The proxy's side of identity: obtain a first leaf with a join token, and renew it (the loop
that keeps it renewed, and the proxy serving while the CA is away, is identity.renewer).

Files in the service's state directory (written atomically):
`key.pem` (0600), `cert.pem` (leaf followed by the issuer) and `bundle.pem`.
"""

import asyncio
import json
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
from identity.url import check_identity_url
from vm_mesh.defaults import LEAF_FILES
from vm_mesh.errors import UserError, cause_of
from vm_mesh.files import settle, write_together

log = logging.getLogger("vmesh.identity.client")

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
# How long one exchange with the identity service may take in all (a service that sends its
# answer a byte at a time never trips the read timeout).
EXCHANGE_DEADLINE_S = 20.0
# The most of a trust bundle (anchors, PEM) read from a service not yet authenticated.
MAX_BUNDLE_BYTES = 64 * 1024
# The most of an answer to a join or renewal read: a leaf chain and a bundle, as JSON.
MAX_ANSWER_BYTES = 4 * MAX_BUNDLE_BYTES
X509_V_ERR_CERT_HAS_EXPIRED = 10  # OpenSSL's verify code (ssl.SSLCertVerificationError)


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


class LeafNotStored(UserError):
    """The identity service issued a leaf that could not be written where it belongs (a full
    disk, a path whose parent is a file): the files in place stay as they were."""

    def __init__(self, identity: str, error: OSError) -> None:
        where = error.filename or "the state directory"
        super().__init__(f"identity.leaf_not_stored: the identity service issued a leaf for "
                         f"{identity}, but writing {where} failed: {error.strerror or error}")


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


@dataclass(frozen=True, slots=True)
class _Answer:
    """What the identity service answered: its status and its whole (bounded) body."""

    status: int
    body: bytes

    def json(self, url: str) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise InvalidAnswer(url, "the body is not JSON") from None


def _require_https(url: str) -> None:
    """Refuse an identity URL that is no URL, or not https (identity.url's rule)."""
    try:
        check_identity_url(url)
    except ValueError as exc:
        raise UserError(str(exc)) from None


async def _exchange(url: str, method: str, path: str, *, verify: ssl.SSLContext | bool,
                    limit: int, reason: str, body: dict[str, Any] | None = None) -> _Answer:
    """One request to the identity service at `url`: its answer read to at most `limit` bytes
    (`reason`, and nothing read further, beyond that), all within EXCHANGE_DEADLINE_S."""
    _require_https(url)
    try:
        async with asyncio.timeout(EXCHANGE_DEADLINE_S), \
                httpx.AsyncClient(verify=verify, timeout=TIMEOUT) as client, \
                client.stream(method, url.rstrip("/") + path, json=body) as response:
            content = await _read_at_most(response, limit)
            status = response.status_code
    except (TimeoutError, httpx.TimeoutException):
        raise UserError(f"identity.timeout: the identity service at {url} did not answer "
                        f"{method} {path} in time ({TIMEOUT.connect:g} s to connect, "
                        f"{TIMEOUT.read:g} s between reads, {EXCHANGE_DEADLINE_S:g} s in all); "
                        "nothing was stored (check the identity URL and that the service "
                        "runs)") from None
    if content is None:
        raise UserError(f"{reason}: the identity service at {url} answered {method} {path} "
                        f"with over {limit} bytes; nothing was read further or stored "
                        "(check the --identity URL)")
    return _Answer(status, content)


async def _post(url: str, path: str, body: dict[str, Any], context: ssl.SSLContext) -> Any:
    answer = await _exchange(url, "POST", path, verify=context, limit=MAX_ANSWER_BYTES,
                             reason="identity.answer_too_large", body=body)
    if answer.status != 200:
        try:
            refusal = json.loads(answer.body)
            raise IdentityRefused(str(refusal["error"]), str(refusal["detail"]))
        except (ValueError, KeyError, TypeError):
            text = " ".join(answer.body.decode(errors="replace").split())
            raise IdentityRefused(f"http.{answer.status}", text[:200]) from None
    return answer.json(url)


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
    try:
        files.save(pki.key_pem(key), chain_pem, bundle_pem)
    except OSError as exc:
        raise LeafNotStored(identity, exc) from None
    return chain[0]


async def fetch_pinned_anchor(url: str, pin: str) -> x509.Certificate:
    """The anchor that `pin` names, from the CA's published bundle.

    The bundle is fetched without authentication, so it proves nothing but that one
    anchor: only it may authenticate the identity service a token is sent to (an impostor
    could list its own anchor beside the real one, which is public).
    """
    answer = await _exchange(url, "GET", "/v1/bundle", verify=False, limit=MAX_BUNDLE_BYTES,
                             reason="identity.bundle_too_large")
    if answer.status != 200:
        raise UserError(f"identity.bundle_unavailable: the identity service at {url} answered "
                        f"GET /v1/bundle with HTTP {answer.status}; check the --identity URL")
    try:
        bundle = pki.load_certs(answer.body)
    except ValueError:
        raise UserError(f"identity.bundle_invalid: {url} answered GET /v1/bundle without a PEM "
                        "trust bundle (not a vmesh identity service?); check the --identity "
                        "URL") from None
    for anchor in bundle:
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
        unverified = cause_of(exc, ssl.SSLCertVerificationError)
        if unverified is None:
            raise
        raise UserError(_not_proven(url, unverified)) from None
    files = LeafFiles(directory)
    leaf = _store_issued(files, url, answer, key, identity)
    log.info("joined the mesh", extra=_described(identity, leaf))
    return files.leaf()


def _not_proven(url: str, error: ssl.SSLCertVerificationError) -> str:
    """Why the identity service at `url` is not the CA a token pins: an expired certificate
    of that CA (what its operator mends), or a chain to another anchor."""
    if error.verify_code == X509_V_ERR_CERT_HAS_EXPIRED:
        return (f"identity.certificate_expired: the identity service at {url} presents a "
                f"certificate chain that has expired ({error.verify_message}); the token was "
                "not sent: on the CA host `vmesh identity status` names it and `vmesh identity "
                "rotate` replaces it")
    return (f"the identity service at {url} does not prove it is the CA this token was made "
            "for (its certificate does not chain to the anchor the token pins; if that CA "
            "rotated its anchor after the token was made, make a new token)")


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
