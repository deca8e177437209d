"""Leaves from our CA obey the X.509-SVID rules and verify with an independent tool."""

import subprocess
from pathlib import Path

from cryptography import x509

from identity import pki, spiffe
from tests.support import require_tool


def _mesh_ca() -> tuple[pki.CertifiedKey, pki.CertifiedKey]:
    anchor = pki.create_anchor("vmesh.local")
    return anchor, pki.create_issuer(anchor, "vmesh.local")


def test_leaf_has_one_spiffe_uri_and_leaf_constraints() -> None:
    _, issuer = _mesh_ca()
    key = pki.generate_key()
    leaf = pki.issue_leaf(
        issuer, key.public_key(), spiffe_id="spiffe://vmesh.local/svc/api",
        common_name="api", trust_domain="vmesh.local",
    )
    assert str(pki.identity_of(leaf)) == "spiffe://vmesh.local/svc/api"
    constraints = leaf.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    usage = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert leaf.not_valid_after_utc <= issuer.cert.not_valid_after_utc


def test_openssl_verifies_leaf_through_issuer_to_anchor(tmp_path: Path) -> None:
    openssl = require_tool("openssl")
    anchor, issuer = _mesh_ca()
    leaf = pki.issue_leaf(
        issuer, pki.generate_key().public_key(), spiffe_id="spiffe://vmesh.local/svc/web",
        common_name="web", trust_domain="vmesh.local",
    )
    for name, cert in (("anchor", anchor.cert), ("issuer", issuer.cert), ("leaf", leaf)):
        (tmp_path / f"{name}.pem").write_bytes(pki.cert_pem(cert))
    result = subprocess.run(
        [openssl, "verify", "-CAfile", "anchor.pem", "-untrusted", "issuer.pem", "leaf.pem"],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "leaf.pem: OK" in result.stdout


def test_parse_rejects_ids_outside_the_vmesh_shape() -> None:
    for bad in ("https://vmesh.local/svc/a", "spiffe://vmesh.local", "spiffe://vmesh.local/svc",
                "spiffe://vmesh.local/pod/a", "spiffe://Bad_TD/svc/a"):
        try:
            spiffe.parse(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad} was accepted")


def test_service_leaves_also_name_the_proxy_dns_name_and_operator_leaves_do_not() -> None:
    _, issuer = _mesh_ca()

    def sans(spiffe_id: str) -> tuple[list[str], list[str]]:
        leaf = pki.issue_leaf(issuer, pki.generate_key().public_key(), spiffe_id=spiffe_id,
                              common_name="x", trust_domain="vmesh.local")
        return pki.uri_sans(leaf), pki.dns_sans(leaf)

    assert sans("spiffe://vmesh.local/svc/web") == (["spiffe://vmesh.local/svc/web"],
                                                    ["proxy.vmesh.local"])
    assert sans("spiffe://vmesh.local/operator/ann") == (["spiffe://vmesh.local/operator/ann"], [])
