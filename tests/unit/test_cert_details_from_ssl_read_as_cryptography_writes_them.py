"""The proxy reads certificates through the stdlib's `ssl`; what it shows matches `cryptography`."""

import ssl
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from identity import pki
from proxy import certinfo
from tests.unit.cert_helpers import described_by_cryptography


def _decoded(cert: x509.Certificate) -> certinfo.Cert:
    """A CA certificate as `ssl` decodes it."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=pki.cert_pem(cert).decode())
    [decoded] = context.get_ca_certs()
    return decoded


def _ca(name: x509.Name, *, serial: int = 0x0123, uris: tuple[str, ...] = ()) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime(2026, 12, 2, 2, 7, 14, tzinfo=UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    if uris:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(u) for u in uris]),
            critical=False,
        )
    return builder.sign(key, hashes.SHA256())


def _attr(oid: x509.ObjectIdentifier, value: str) -> x509.NameAttribute:
    return x509.NameAttribute(oid, value)


NAMES = {
    "vmesh": x509.Name([_attr(NameOID.ORGANIZATION_NAME, "vmesh.local"),
                        _attr(NameOID.COMMON_NAME, "vmesh issuer 2026-12-02 020714")]),
    "specials": x509.Name([_attr(NameOID.COMMON_NAME, 'a,b+c;d<e>f"g\\h')]),
    "leading hash and spaces": x509.Name([_attr(NameOID.ORGANIZATION_NAME, "#team "),
                                          _attr(NameOID.COMMON_NAME, " padded ")]),
    "one space": x509.Name([_attr(NameOID.COMMON_NAME, " ")]),
    "multi-valued rdn": x509.Name([
        x509.RelativeDistinguishedName([_attr(NameOID.COMMON_NAME, "x"),
                                        _attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "ops")]),
    ]),
    "short names": x509.Name([
        _attr(NameOID.COUNTRY_NAME, "DE"), _attr(NameOID.STATE_OR_PROVINCE_NAME, "Berlin"),
        _attr(NameOID.LOCALITY_NAME, "Berlin"), _attr(NameOID.STREET_ADDRESS, "Main St 1"),
        _attr(NameOID.DOMAIN_COMPONENT, "example"), _attr(NameOID.USER_ID, "u1"),
        _attr(NameOID.ORGANIZATIONAL_UNIT_NAME, "mesh"),
    ]),
    "dotted oids": x509.Name([
        _attr(NameOID.EMAIL_ADDRESS, "ops@example.com"), _attr(NameOID.SERIAL_NUMBER, "42"),
        _attr(NameOID.GIVEN_NAME, "Ada"), _attr(NameOID.SURNAME, "Lovelace"),
        _attr(NameOID.TITLE, "ops"), _attr(NameOID.COMMON_NAME, "ünïcode"),
    ]),
}


@pytest.mark.parametrize("name", NAMES.values(), ids=NAMES.keys())
def test_names_read_as_rfc4514_strings_like_cryptography(name: x509.Name) -> None:
    decoded = _decoded(_ca(name))
    assert certinfo.rfc4514(decoded["subject"]) == name.rfc4514_string()
    assert certinfo.rfc4514(decoded["issuer"]) == name.rfc4514_string()


def test_a_certificate_is_described_as_cryptography_describes_it() -> None:
    cert = _ca(NAMES["vmesh"], serial=0x00AB_CDEF, uris=("spiffe://vmesh.local",))
    assert certinfo.describe(_decoded(cert), "anchor") == described_by_cryptography(cert, "anchor")


def test_escaping_follows_rfc4514_section_2_4() -> None:
    assert certinfo.escape_dn_value("") == ""
    assert certinfo.escape_dn_value("a,b") == "a\\,b"
    assert certinfo.escape_dn_value("#x") == "\\#x"
    assert certinfo.escape_dn_value(" x ") == "\\ x\\ "
    assert certinfo.escape_dn_value(" ") == "\\ "
    assert certinfo.escape_dn_value("nul\0") == "nul\\00"


def test_names_list_the_last_rdn_first() -> None:
    name = ((("organizationName", "vmesh.local"),), (("commonName", "api"),))
    assert certinfo.rfc4514(name) == "CN=api,O=vmesh.local"
    assert certinfo.rfc4514(((("1.2.3.4", "x"),),)) == "1.2.3.4=x"
    assert certinfo.rfc4514(()) == ""


def test_times_and_serials_take_the_forms_logs_and_the_ca_use() -> None:
    assert certinfo.iso_utc("Dec  2 02:07:14 2026 GMT") == "2026-12-02T02:07:14+00:00"
    assert certinfo.timestamp("Jan  1 00:00:00 1970 GMT") == 0.0
    assert certinfo.serial_hex("00AB12") == "ab12"


def test_identity_is_the_single_uri_san() -> None:
    cert = {"subjectAltName": (("DNS", "api.local"), ("URI", "spiffe://vmesh.local/svc/api"))}
    assert certinfo.uri_sans(cert) == ["spiffe://vmesh.local/svc/api"]
    assert str(certinfo.identity(cert)) == "spiffe://vmesh.local/svc/api"


@pytest.mark.parametrize(("sans", "found"), [((), 0), ((("DNS", "a"),), 0),
                                             ((("URI", "spiffe://a/svc/x"),) * 2, 2)])
def test_a_leaf_without_exactly_one_uri_san_has_no_identity(sans: tuple, found: int) -> None:
    with pytest.raises(ValueError, match=f"exactly one URI SAN, found {found}"):
        certinfo.identity({"subjectAltName": sans})


def test_a_uri_san_that_is_no_vmesh_id_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="must have the form"):
        certinfo.identity({"subjectAltName": (("URI", "spiffe://vmesh.local/svc"),)})
