"""The proxy's TLS material: what `/v1/certs` says, and which files it refuses to load."""

from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509

from identity import pki
from proxy.tls import TlsMaterial
from tests.unit.cert_helpers import described_by_cryptography


def _write(
    directory: Path,
    *,
    lifetime: timedelta = timedelta(hours=24),
    now: datetime | None = None,
    spiffe_id: str | None = "spiffe://vmesh.local/svc/api",
    other_anchors: int = 0,
    foreign_bundle: bool = False,
) -> tuple[pki.CertifiedKey, pki.CertifiedKey, x509.Certificate, list[pki.CertifiedKey]]:
    anchor = pki.create_anchor("vmesh.local")
    issuer = pki.create_issuer(anchor, "vmesh.local")
    key = pki.generate_key()
    leaf = pki.issue_leaf(issuer, key.public_key(), spiffe_id=spiffe_id, common_name="api",
                          trust_domain="vmesh.local", lifetime=lifetime, now=now,
                          dns_names=() if spiffe_id else ("api.local",))
    others = [pki.create_anchor("vmesh.local") for _ in range(other_anchors)]
    bundle = [o.cert for o in others] + ([] if foreign_bundle else [anchor.cert])
    pki.write_private(directory / "key.pem", pki.key_pem(key))
    pki.write_file(directory / "cert.pem", pki.cert_pem(leaf, issuer.cert))
    pki.write_file(directory / "bundle.pem", pki.cert_pem(*bundle))
    return anchor, issuer, leaf, others


def test_certs_show_chain_and_bundle_in_file_order(tmp_path: Path) -> None:
    anchor, issuer, leaf, others = _write(tmp_path, other_anchors=2)
    material = TlsMaterial(tmp_path)
    described = material.describe()
    assert described["identity"] == "spiffe://vmesh.local/svc/api"
    assert described["error"] is None
    assert described["chain"][0]["dns"] == [pki.proxy_dns_name("vmesh.local")]
    assert described["chain"] == [described_by_cryptography(leaf, "leaf"),
                                  described_by_cryptography(issuer.cert, "issuer")]
    assert described["bundle"] == [described_by_cryptography(c, "anchor")
                                   for c in (*(o.cert for o in others), anchor.cert)]


def test_a_chain_the_bundle_does_not_trust_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, foreign_bundle=True, other_anchors=1)
    material = TlsMaterial(tmp_path)
    assert not material.loaded
    assert material.last_error is not None
    assert "cert.pem does not verify against bundle.pem" in material.last_error
    assert material.describe()["error"] == material.last_error


def test_a_bad_change_keeps_the_material_in_force(tmp_path: Path) -> None:
    _, _, leaf, _ = _write(tmp_path)
    material = TlsMaterial(tmp_path)
    other = tmp_path / "other"
    other.mkdir()
    _write(other)
    (tmp_path / "key.pem").write_bytes((other / "key.pem").read_bytes())  # key before its cert
    assert material.reload() is False
    assert material.last_error is not None
    assert material.describe()["chain"][0]["serial"] == pki.new_serial_hex(leaf)
    (tmp_path / "cert.pem").write_bytes((other / "cert.pem").read_bytes())
    (tmp_path / "bundle.pem").write_bytes((other / "bundle.pem").read_bytes())
    assert material.reload() is True
    assert material.last_error is None


def test_an_expired_leaf_still_loads_and_shows_its_expiry(tmp_path: Path) -> None:
    _write(tmp_path, now=pki.utcnow() - timedelta(days=2))
    material = TlsMaterial(tmp_path)
    assert material.loaded
    assert material.describe()["chain"][0]["not_after"] < pki.utcnow().isoformat()


def test_a_leaf_without_a_spiffe_id_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, spiffe_id=None)
    material = TlsMaterial(tmp_path)
    assert not material.loaded
    assert material.last_error == "ValueError: certificate must carry exactly one URI SAN, found 0"
