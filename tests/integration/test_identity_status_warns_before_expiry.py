"""`vmesh identity status` shows the CA's certificates and fails when one is close to expiry;
`vmesh identity serve` refuses to start on an expired issuer, saying what to do."""

import json
from datetime import timedelta
from pathlib import Path

from identity import castate, pki
from tests.integration.identity_service import vmesh


def test_fresh_ca_is_healthy(tmp_path: Path) -> None:
    vmesh(tmp_path, "identity", "init")
    result = vmesh(tmp_path, "identity", "status")
    assert "anchor" in result.stdout and "issuer" in result.stdout
    assert "PROBLEM" not in result.stdout


def test_issuer_with_under_thirty_days_fails_status(tmp_path: Path) -> None:
    directory = tmp_path / "var/lib/vmesh/identity"
    castate.init(directory, "vmesh.local", now=pki.utcnow() - timedelta(days=340))
    result = vmesh(tmp_path, "identity", "status", check=False)
    assert result.returncode == 1
    assert "issuer of generation 1 has 25 days left" in result.stdout
    assert "vmesh identity rotate" in result.stdout


def test_rotation_clears_the_problem_and_keeps_both_anchors(tmp_path: Path) -> None:
    directory = tmp_path / "var/lib/vmesh/identity"
    castate.init(directory, "vmesh.local", now=pki.utcnow() - timedelta(days=340))
    vmesh(tmp_path, "identity", "rotate")
    status = json.loads(vmesh(tmp_path, "identity", "status", "--json").stdout)
    assert status["problems"] == []
    anchors = [c for c in status["certificates"] if c["role"] == "anchor" and not c["retired"]]
    assert len(anchors) == 2
    vmesh(tmp_path, "identity", "retire", "1")
    status = json.loads(vmesh(tmp_path, "identity", "status", "--json").stdout)
    assert [c["generation"] for c in status["certificates"] if c["retired"]] == [1, 1]
    assert (directory / "bundle.pem").read_text().count("BEGIN CERTIFICATE") == 1


def test_init_refuses_to_overwrite_a_ca(tmp_path: Path) -> None:
    vmesh(tmp_path, "identity", "init")
    result = vmesh(tmp_path, "identity", "init", check=False)
    assert result.returncode == 1
    assert "refusing to overwrite" in result.stderr and "Traceback" not in result.stderr


def test_encrypted_anchor_key_needs_its_passphrase(tmp_path: Path) -> None:
    secret = tmp_path / "passphrase"
    secret.write_text("correct horse\n")
    vmesh(tmp_path, "identity", "init", "--anchor-passphrase-file", str(secret))
    key_pem = (tmp_path / "var/lib/vmesh/identity/gen-1/anchor.key").read_bytes()
    assert b"ENCRYPTED" in key_pem
    assert pki.load_key(key_pem, b"correct horse") is not None
    assert (tmp_path / "var/lib/vmesh/identity/gen-1/anchor.key").stat().st_mode & 0o777 == 0o600


def test_serve_with_an_expired_issuer_says_to_rotate(tmp_path: Path) -> None:
    castate.init(tmp_path / "var/lib/vmesh/identity", "vmesh.local",
                 now=pki.utcnow() - timedelta(days=400))  # the issuer expired 35 days ago
    result = vmesh(tmp_path, "identity", "serve", "--listen", "127.0.0.1:0", check=False)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert "vmesh identity rotate" in result.stderr.strip().splitlines()[-1]
