"""What cryptography reads in a certificate, as the `/v1/certs` entry the proxy must show."""

from cryptography import x509

from identity import pki


def dns_names(cert: x509.Certificate) -> list[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return names.get_values_for_type(x509.DNSName)


def described_by_cryptography(cert: x509.Certificate, kind: str) -> dict:
    """The `/v1/certs` entry of `cert` in the forms cryptography gives (and the proxy wrote
    when it parsed certificates with it)."""
    return {
        "kind": kind,
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "san": pki.uri_sans(cert),
        "dns": dns_names(cert),
        "serial": pki.new_serial_hex(cert),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
    }
