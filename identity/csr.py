"""Validation of certificate signing requests: what a CSR may ask for, and nothing more.

The CA takes only the public key and the requested identity from a CSR; the
identity must be allowed by the caller's credential (token or current leaf),
and the leaf is then built from scratch, never from the CSR's extensions.
"""

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from identity import spiffe
from identity.errors import Rejection

MAX_CSR_BYTES = 16 * 1024


def load_csr(pem: object) -> x509.CertificateSigningRequest:
    """Parse a PEM CSR; Rejection(`csr.malformed`) when it is not one."""
    if not isinstance(pem, str) or len(pem) > MAX_CSR_BYTES:
        raise Rejection("csr.malformed", "csr must be a PEM string of at most 16 KiB")
    try:
        return x509.load_pem_x509_csr(pem.encode())
    except ValueError as exc:
        raise Rejection("csr.malformed", f"not a PEM certificate signing request ({exc})") from None


def check_csr(
    csr: x509.CertificateSigningRequest, *, trust_domain: str
) -> tuple[spiffe.SpiffeId, ec.EllipticCurvePublicKey]:
    """The service identity a CSR asks for and its key, or a Rejection saying why not."""
    if not csr.is_signature_valid:
        raise Rejection("csr.bad_signature", "the CSR is not signed by its own key")
    key = csr.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise Rejection("csr.key_not_p256", "the CSR's key must be ECDSA P-256")
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise Rejection("csr.no_uri_san", "the CSR carries no SPIFFE ID (URI SAN)") from None
    except (ValueError, x509.DuplicateExtension) as exc:  # one that does not parse, or twice
        raise Rejection("csr.malformed", f"the CSR's extensions do not parse ({exc})") from None
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    if len(list(san)) != len(uris):
        raise Rejection("csr.extra_san", "the CSR may carry only a URI SAN (no DNS, IP or email)")
    if not uris:
        raise Rejection("csr.no_uri_san", "the CSR carries no SPIFFE ID (URI SAN)")
    if len(uris) > 1:
        raise Rejection("csr.multiple_uri_sans", f"the CSR carries {len(uris)} URI SANs, not one")
    try:
        identity = spiffe.parse(uris[0])
    except ValueError as exc:
        raise Rejection("csr.invalid_spiffe_id", str(exc)) from None
    if identity.trust_domain != trust_domain:
        raise Rejection(
            "csr.wrong_trust_domain",
            f"{identity} is outside the trust domain {trust_domain}",
            403,
        )
    if identity.kind != "svc":
        raise Rejection("csr.not_a_service", f"{identity} is not a service identity", 403)
    return identity, key
