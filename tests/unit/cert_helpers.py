"""What cryptography reads in a certificate, as the `/v1/certs` entry the proxy must show."""

from cryptography import x509

from identity import pki


def described_by_cryptography(cert: x509.Certificate, kind: str) -> dict:
    """The `/v1/certs` entry of `cert` in the forms cryptography gives (and the proxy wrote
    when it parsed certificates with it)."""
    return {
        "kind": kind,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "san": pki.uri_sans(cert),
        "dns": pki.dns_sans(cert),
        "serial": pki.new_serial_hex(cert),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }
