"""What a certificate decoded by the stdlib says, in the forms vmesh shows (pure).

`ssl` decodes a verified certificate into a dict (`getpeercert()`, `get_ca_certs()`):
names as tuples of RDNs of (long name, value) pairs, times as OpenSSL text
(`'Dec  2 02:07:14 2026 GMT'`), the serial as upper-case hex and the SANs as
(type, value) pairs. These helpers turn that into what `/v1/certs`, the logs
and the authorization layer use: the SPIFFE ID, RFC 4514 names written as
`cryptography`'s `Name.rfc4514_string()` writes them, ISO 8601 UTC times and
the serial as lower-case hex. The proxy thus never loads `cryptography`.
"""

import ssl
from datetime import UTC, datetime
from typing import Any

from identity import spiffe

# the certificate dict of `ssl.SSLSocket.getpeercert()`
Cert = dict[str, Any]
# one name as `ssl` decodes it: RDNs, each a tuple of (attribute long name, value) pairs
Name = tuple[tuple[tuple[str, str], ...], ...]

# OpenSSL long names -> what RFC 4514 strings show: the short names RFC 4514 defines,
# else the dotted OID (as `cryptography` writes them); names missing here are kept as `ssl`
# gives them (it gives the dotted OID for attributes OpenSSL has no name for)
_ATTRIBUTE_NAMES = {
    "commonName": "CN",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
    "surname": "2.5.4.4",
    "serialNumber": "2.5.4.5",
    "title": "2.5.4.12",
    "businessCategory": "2.5.4.15",
    "postalAddress": "2.5.4.16",
    "postalCode": "2.5.4.17",
    "givenName": "2.5.4.42",
    "initials": "2.5.4.43",
    "generationQualifier": "2.5.4.44",
    "x500UniqueIdentifier": "2.5.4.45",
    "dnQualifier": "2.5.4.46",
    "pseudonym": "2.5.4.65",
    "organizationIdentifier": "2.5.4.97",
    "emailAddress": "1.2.840.113549.1.9.1",
    "unstructuredName": "1.2.840.113549.1.9.2",
    "jurisdictionLocalityName": "1.3.6.1.4.1.311.60.2.1.1",
    "jurisdictionStateOrProvinceName": "1.3.6.1.4.1.311.60.2.1.2",
    "jurisdictionCountryName": "1.3.6.1.4.1.311.60.2.1.3",
}


def uri_sans(cert: Cert) -> list[str]:
    """All URI subject alternative names of a decoded certificate, in order."""
    return [value for kind, value in cert.get("subjectAltName", ()) if kind == "URI"]


def dns_sans(cert: Cert) -> list[str]:
    """All DNS subject alternative names of a decoded certificate, in order (a service leaf
    carries `proxy.<trust domain>`, the name Prometheus verifies)."""
    return [value for kind, value in cert.get("subjectAltName", ()) if kind == "DNS"]


def identity(cert: Cert) -> spiffe.SpiffeId:
    """The identity of a decoded leaf: its single URI SAN (X.509-SVID rule), else ValueError."""
    return spiffe.of_uri_sans(uri_sans(cert))


def escape_dn_value(value: str) -> str:
    """An attribute value escaped for an RFC 4514 string (section 2.4)."""
    if not value:
        return ""
    for char in ("\\", '"', "+", ",", ";", "<", ">"):
        value = value.replace(char, "\\" + char)
    value = value.replace("\0", "\\00")
    if value[0] == "#" or (value[0] == " " and len(value) > 1):
        value = "\\" + value
    if value[-1] == " ":
        value = value[:-1] + "\\ "
    return value


def rfc4514(name: Name) -> str:
    """A decoded name as an RFC 4514 string: last RDN first, `+` within a multi-valued RDN."""
    return ",".join(
        "+".join(f"{_ATTRIBUTE_NAMES.get(attr, attr)}={escape_dn_value(value)}"
                 for attr, value in rdn)
        for rdn in reversed(name)
    )


def timestamp(cert_time: str) -> float:
    """A certificate time as `ssl` writes it (`'Dec  2 02:07:14 2026 GMT'`) in epoch seconds."""
    return float(ssl.cert_time_to_seconds(cert_time))


def iso_utc(cert_time: str) -> str:
    """A certificate time as `ssl` writes it, in ISO 8601 UTC (`2026-12-02T02:07:14+00:00`)."""
    return datetime.fromtimestamp(ssl.cert_time_to_seconds(cert_time), UTC).isoformat()


def serial_hex(serial: str) -> str:
    """The serial as `ssl` writes it (upper-case hex) in the form logs and the CA use."""
    return format(int(serial, 16), "x")


def describe(cert: Cert, kind: str) -> dict[str, Any]:
    """One certificate as `/v1/certs` shows it; `kind` is leaf, issuer or anchor."""
    return {
        "kind": kind,
        "subject": rfc4514(cert["subject"]),
        "issuer": rfc4514(cert["issuer"]),
        "san": uri_sans(cert),
        "dns": dns_sans(cert),
        "serial": serial_hex(cert["serialNumber"]),
        "not_before": iso_utc(cert["notBefore"]),
        "not_after": iso_utc(cert["notAfter"]),
    }
