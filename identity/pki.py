"""Certificate authority primitives: keys, trust anchor, issuer and SPIFFE leaves.

Pure functions over `cryptography` objects; files and services live elsewhere.
Keys are ECDSA P-256 throughout. Every certificate starts slightly in the past
(clock skew between hosts) and never outlives the certificate that signed it.
"""

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from identity import spiffe
from vm_mesh import defaults

# PEM files are written with these; they live in vm_mesh.files, free of cryptography
from vm_mesh.files import write_file as write_file
from vm_mesh.files import write_private as write_private


@dataclass(frozen=True, slots=True)
class CertifiedKey:
    """A private key and the certificate for it."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


def generate_key() -> ec.EllipticCurvePrivateKey:
    """A new ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def utcnow() -> datetime:
    return datetime.now(UTC)


def _name(common_name: str, trust_domain: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64]),
        ]
    )


def _signing_cert(
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    trust_domain: str,
    path_length: int,
    not_before: datetime,
    not_after: datetime,
    issuer: CertifiedKey | None,
    key: ec.EllipticCurvePrivateKey,
) -> x509.Certificate:
    """A CA certificate; an intermediate (one with an `issuer`) is name-constrained to the
    URIs of `trust_domain` (`trust_domain_constraint`)."""
    signer_key = issuer.key if issuer else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.UniformResourceIdentifier(f"spiffe://{trust_domain}")]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        ).add_extension(trust_domain_constraint(trust_domain), critical=True)
    return builder.sign(signer_key, hashes.SHA256())


def trust_domain_constraint(trust_domain: str) -> x509.NameConstraints:
    """What an issuer of `trust_domain` may certify: URIs whose host is the trust domain
    (`spiffe://<td>/...`; RFC 5280 matches a URI constraint against the host). Names of
    other types stay free (the identity service's own DNS names and addresses). A stolen
    issuer key thus cannot mint identities of another trust domain for a relying party that
    trusts this one's anchor beside that domain's."""
    return x509.NameConstraints(
        permitted_subtrees=[x509.UniformResourceIdentifier(trust_domain)], excluded_subtrees=None
    )


def is_constrained_to(issuer: x509.Certificate, trust_domain: str) -> bool:
    """Whether `issuer` carries `trust_domain_constraint(trust_domain)`, critical."""
    try:
        extension = issuer.extensions.get_extension_for_class(x509.NameConstraints)
    except x509.ExtensionNotFound:
        return False
    return extension.critical and extension.value == trust_domain_constraint(trust_domain)


def create_anchor(
    trust_domain: str,
    *,
    now: datetime | None = None,
    lifetime: timedelta = defaults.ANCHOR_LIFETIME,
) -> CertifiedKey:
    """A self-signed trust anchor (root) for `trust_domain`."""
    now = now or utcnow()
    key = generate_key()
    cert = _signing_cert(
        subject=_name(f"vmesh trust anchor {now:%Y-%m-%d %H%M%S}", trust_domain),
        public_key=key.public_key(),
        trust_domain=trust_domain,
        path_length=1,
        not_before=now - defaults.CLOCK_SKEW_BACKDATE,
        not_after=now + lifetime,
        issuer=None,
        key=key,
    )
    return CertifiedKey(key, cert)


def create_issuer(
    anchor: CertifiedKey,
    trust_domain: str,
    *,
    now: datetime | None = None,
    lifetime: timedelta = defaults.ISSUER_LIFETIME,
) -> CertifiedKey:
    """An intermediate CA (path length 0) signed by `anchor`, name-constrained to the URIs of
    `trust_domain`; it signs every leaf."""
    now = now or utcnow()
    key = generate_key()
    cert = _signing_cert(
        subject=_name(f"vmesh issuer {now:%Y-%m-%d %H%M%S}", trust_domain),
        public_key=key.public_key(),
        trust_domain=trust_domain,
        path_length=0,
        not_before=now - defaults.CLOCK_SKEW_BACKDATE,
        not_after=min(now + lifetime, anchor.cert.not_valid_after_utc),
        issuer=anchor,
        key=key,
    )
    return CertifiedKey(key, cert)


def proxy_dns_name(trust_domain: str) -> str:
    """The DNS name every service leaf carries besides its SPIFFE ID, the same for all: a
    TLS client that checks a host name and cannot read a SPIFFE ID (Prometheus scraping
    the admin port) verifies with it that it reached a proxy of this mesh. Identity and
    authorization never read it; they go by the SPIFFE ID alone."""
    return f"proxy.{trust_domain}"


def issue_leaf(
    issuer: CertifiedKey,
    public_key: ec.EllipticCurvePublicKey,
    *,
    spiffe_id: str | None,
    common_name: str,
    trust_domain: str,
    now: datetime | None = None,
    lifetime: timedelta = defaults.LEAF_LIFETIME,
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
) -> x509.Certificate:
    """A leaf for mutual TLS: CA:false, digitalSignature, serverAuth + clientAuth.

    The start is backdated for clock skew, by at most a tenth of the lifetime so
    that short-lived leaves still renew at the intended point of their life.
    Workload leaves carry exactly one URI SAN (`spiffe_id`), and a service's
    leaf also the DNS name `proxy_dns_name(trust_domain)`; the identity
    service's own server certificate carries DNS/IP names instead.
    """
    now = now or utcnow()
    backdate = min(defaults.CLOCK_SKEW_BACKDATE, lifetime / 10)
    names: list[x509.GeneralName] = []
    if spiffe_id:
        names.append(x509.UniformResourceIdentifier(spiffe_id))
        if spiffe_id.startswith(f"spiffe://{trust_domain}/svc/"):
            names.append(x509.DNSName(proxy_dns_name(trust_domain)))
    names += [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    if not names:
        raise ValueError("a leaf certificate needs a SPIFFE ID or at least one DNS/IP name")
    return (
        x509.CertificateBuilder()
        .subject_name(_name(common_name, trust_domain))
        .issuer_name(issuer.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(min(now + lifetime, issuer.cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False,
        )
        .sign(issuer.key, hashes.SHA256())
    )


def _sans(cert: x509.Certificate, kind: type[x509.UniformResourceIdentifier | x509.DNSName],
          ) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return san.value.get_values_for_type(kind)


def uri_sans(cert: x509.Certificate) -> list[str]:
    """All URI subject alternative names of a certificate (none if it has no SAN)."""
    return _sans(cert, x509.UniformResourceIdentifier)


def dns_sans(cert: x509.Certificate) -> list[str]:
    """All DNS subject alternative names of a certificate (a service leaf's is
    `proxy.<trust domain>`)."""
    return _sans(cert, x509.DNSName)


def identity_of(cert: x509.Certificate) -> spiffe.SpiffeId:
    """The identity of a leaf: its single URI SAN (X.509-SVID rule), else ValueError."""
    return spiffe.of_uri_sans(uri_sans(cert))


def new_serial_hex(cert: x509.Certificate) -> str:
    """The certificate serial as lowercase hex, the form logs and the CA database use."""
    return format(cert.serial_number, "x")


# --- PEM encoding ----------------------------------------------------------------------


def cert_pem(*certs: x509.Certificate) -> bytes:
    """PEM text of one or more certificates (a chain when several)."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None = None) -> bytes:
    """PKCS#8 PEM of a private key, encrypted when a passphrase is given."""
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase)
        if passphrase
        else serialization.NoEncryption()
    )
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
    )


def load_certs(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, in order."""
    return x509.load_pem_x509_certificates(data)


def load_key(data: bytes, passphrase: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """An ECDSA private key from PEM; ValueError when it is another kind of key."""
    key = serialization.load_pem_private_key(data, password=passphrase)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError("expected an ECDSA private key")
    return key
