"""What the identity service decides: who gets a leaf, for which identity, and for how long.

No sockets here: `join` and `renew` take the decoded request body and either
return the response body or raise a `Rejection`. Every issued leaf is recorded
in the store and logged.
"""

import base64
import logging
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from identity import pki, spiffe
from identity.castate import CertificateAuthority
from identity.csr import check_csr, load_csr
from identity.errors import Rejection
from identity.store import IssuedCert, Store
from identity.tokens import check_token, parse_token
from vm_mesh import defaults

log = logging.getLogger("vmesh.identity")

# what a host does about a leaf that can no longer renew
JOIN_AGAIN = ("join this host again with a new token (`vmesh identity token create` on the CA "
              "host, then `vmesh join --use-service-file ...`)")


def _field(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise Rejection("request.missing_field", f"field {name!r} must be a non-empty string")
    return value


class Authority:
    """Issues leaves from the CA's active issuer, recording each in the store."""

    def __init__(
        self, ca: CertificateAuthority, store: Store, leaf_ttl: timedelta = defaults.LEAF_LIFETIME
    ) -> None:
        self.ca = ca
        self.store = store
        self.leaf_ttl = leaf_ttl

    def check_issuer(self, now: float) -> None:
        """Rejection(`ca.issuer_expired`) when the issuer that signs has expired at `now`."""
        not_after = self.ca.active.cert.not_valid_after_utc
        if not_after.timestamp() <= now:
            raise Rejection(
                "ca.issuer_expired",
                f"the CA's issuer expired at {not_after:%Y-%m-%d %H:%M} UTC: on the CA host, "
                "run `vmesh identity rotate` and restart the identity service",
                503,
            )

    def join(self, body: dict[str, Any], now: float | None = None) -> dict[str, Any]:
        """Exchange a one-time join token and a CSR for a first leaf."""
        now = time.time() if now is None else now
        self.check_issuer(now)  # before the token is used up
        token = parse_token(_field(body, "token"))
        host = _field(body, "host")
        identity, key = check_csr(load_csr(body.get("csr")), trust_domain=self.ca.trust_domain)
        record = self.store.token(token.token_id)
        check_token(record, token, host=host, service=identity.name, now=now)
        if self.store.host_revoked(host):
            raise Rejection("host.revoked", f"host {host} is revoked", 403)
        return self._issue(identity, key, host=host, token_id=token.token_id, now=now,
                           spends_token=True)

    def renew(self, body: dict[str, Any], now: float | None = None) -> dict[str, Any]:
        """Exchange the current, valid leaf (proven by a signature with its key) for a new one."""
        now = time.time() if now is None else now
        self.check_issuer(now)
        chain = self._verified_chain(_field(body, "certificate"), now)
        current = chain[0]
        try:
            holder = pki.identity_of(current)
        except ValueError as exc:
            raise Rejection("renew.invalid_identity", str(exc), 403) from None
        csr = load_csr(body.get("csr"))
        _check_proof(current, csr, _field(body, "proof"))
        identity, key = check_csr(csr, trust_domain=self.ca.trust_domain)
        if identity != holder:
            raise Rejection(
                "renew.identity_mismatch", f"a leaf for {holder} cannot renew as {identity}", 403
            )
        issued = self.store.issued(pki.new_serial_hex(current))
        if issued is None:
            raise Rejection("renew.unknown_certificate",
                            f"this CA has no record of that leaf; {JOIN_AGAIN}", 403)
        if self.store.host_revoked(issued.host):
            raise Rejection("host.revoked", f"host {issued.host} is revoked", 403)
        return self._issue(identity, key, host=issued.host, token_id=issued.token_id, now=now)

    def _verified_chain(self, pem: str, now: float) -> list[x509.Certificate]:
        """The chain of a renewing leaf, once its leaf is in date at `now` and signed by the
        issuer of a generation this CA trusts; Rejection otherwise.

        Those issuers are this CA's own, every one known, so a signature check against each
        is the path validation (a generic verifier such as `cryptography`'s refuses the URI
        name constraints they carry); the leaf's name is held to the trust domain by
        `check_csr` and the identity match in `renew`."""
        try:
            certs = pki.load_certs(pem.encode())
        except ValueError:
            raise Rejection("renew.malformed_certificate", "certificate is not PEM") from None
        if not certs:
            raise Rejection("renew.malformed_certificate", "no certificate given")
        leaf = certs[0]
        if leaf.not_valid_after_utc.timestamp() <= now:
            raise Rejection("renew.certificate_expired",
                            f"the current leaf has expired, so it cannot renew; {JOIN_AGAIN}", 401)
        if not self._trusted_issuer_signed(leaf, now):
            raise Rejection(
                "renew.untrusted_certificate",
                "the leaf does not chain to this CA (no issuer it trusts signed it, or not in "
                f"date); if this is the CA the host should use and it retired the leaf's "
                f"anchor, {JOIN_AGAIN}", 401,
            )
        return certs

    def _trusted_issuer_signed(self, leaf: x509.Certificate, now: float) -> bool:
        """Whether `leaf` is valid at `now` and signed by a generation's issuer not retired."""
        if leaf.not_valid_before_utc.timestamp() > now:
            return False
        for generation in self.ca.generations:
            if generation.retired:
                continue
            try:
                leaf.verify_directly_issued_by(generation.issuer)
            except (ValueError, TypeError, InvalidSignature):
                continue
            return True
        return False

    def _issue(
        self,
        identity: spiffe.SpiffeId,
        key: ec.EllipticCurvePublicKey,
        *,
        host: str,
        token_id: str | None,
        now: float,
        spends_token: bool = False,
    ) -> dict[str, Any]:
        """Sign a leaf and record it (with the use of its token when it `spends_token`, in
        the same transaction, so a failure to record it leaves the token usable)."""
        issuer = self.ca.active
        leaf = pki.issue_leaf(
            issuer,
            key,
            spiffe_id=str(identity),
            common_name=identity.name,
            trust_domain=self.ca.trust_domain,
            now=datetime.fromtimestamp(now, UTC),
            lifetime=self.leaf_ttl,
        )
        record = IssuedCert(
            serial=pki.new_serial_hex(leaf),
            identity=str(identity),
            host=host,
            issuer_serial=pki.new_serial_hex(issuer.cert),
            not_after=leaf.not_valid_after_utc.timestamp(),
            issued_at=now,
            token_id=token_id,
        )
        if not spends_token:
            self.store.record_issued(record)
        elif not self.store.spend_token(record):
            raise Rejection("token.already_used", f"token {token_id} was used already", 401)
        log.info(
            "certificate issued",
            extra={
                "event": "certificate_issued",
                "serial": record.serial,
                "identity": record.identity,
                "host": host,
                "not_after": leaf.not_valid_after_utc.isoformat(),
                "token_id": token_id,
            },
        )
        return {
            "certificate": pki.cert_pem(leaf, issuer.cert).decode(),
            "bundle": pki.cert_pem(*self.ca.bundle).decode(),
            "serial": record.serial,
            "not_after": leaf.not_valid_after_utc.isoformat(),
        }


def proof_of_possession(
    key: ec.EllipticCurvePrivateKey, csr: x509.CertificateSigningRequest
) -> str:
    """The renewal proof: the new CSR signed with the current leaf's key, base64."""
    der = csr.public_bytes(serialization.Encoding.DER)
    return base64.b64encode(key.sign(der, ec.ECDSA(hashes.SHA256()))).decode()


def _check_proof(leaf: x509.Certificate, csr: x509.CertificateSigningRequest, proof: str) -> None:
    public_key = leaf.public_key()
    try:
        signature = base64.b64decode(proof, validate=True)
        if not isinstance(public_key, ec.EllipticCurvePublicKey):
            raise InvalidSignature
        public_key.verify(
            signature, csr.public_bytes(serialization.Encoding.DER), ec.ECDSA(hashes.SHA256())
        )
    except (InvalidSignature, ValueError):
        raise Rejection(
            "renew.bad_proof", "the CSR is not signed with the current leaf's key", 401
        ) from None
