"""A join or renewal the identity service fails on for a reason of its own (here its database
stays locked by another program past the service's wait) gets a 500 with a stable reason
instead of a connection closed without an answer; the failure is logged once, with its
traceback, and the service goes on answering (the token, which the failed join never got
to use, then works)."""

import sqlite3
import ssl
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from identity import pki
from identity.client import csr_pem
from tests.integration.identity_service import running_identity_service, vmesh


def join_request(token: str) -> dict:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName(
               [x509.UniformResourceIdentifier("spiffe://vmesh.local/svc/api")]), critical=True)
           .sign(pki.generate_key(), hashes.SHA256()))
    return {"token": token, "host": "h1", "csr": csr_pem(csr)}


def test_a_join_the_service_fails_on_answers_500_and_the_service_goes_on(
    tmp_path: Path,
) -> None:
    vmesh(tmp_path, "identity", "init", "--trust-domain", "vmesh.local")
    ca_dir = tmp_path / "var/lib/vmesh/identity"
    with running_identity_service(tmp_path) as service:
        token = vmesh(
            tmp_path, "identity", "token", "create", "--host", "h1", "--services", "api"
        ).stdout.strip()
        trusted = ssl.create_default_context(cafile=str(ca_dir / "bundle.pem"))
        with httpx.Client(base_url=service.url, verify=trusted, timeout=60) as client:
            holder = sqlite3.connect(ca_dir / "ca.db", isolation_level=None)
            try:
                holder.execute("BEGIN EXCLUSIVE")  # as a program holding it too long would
                failed = client.post("/v1/join", json=join_request(token))
            finally:
                holder.close()
            healthy = client.get("/healthz")
            joined = client.post("/v1/join", json=join_request(token))
        logged = [line for line in service.logs if line.get("reason") == "internal.error"]

    assert failed.status_code == 500
    assert failed.json()["error"] == "internal.error"
    assert failed.headers["connection"] == "close"
    assert healthy.status_code == 200
    assert joined.status_code == 200
    assert len(logged) == 1
    assert logged[0]["level"] == "error"
    assert logged[0]["path"] == "/v1/join"
    assert logged[0]["error"] == "OperationalError: database is locked"
    assert "Traceback" in logged[0]["traceback"]
