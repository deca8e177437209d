"""A join or renewal the identity service fails on for a reason of its own (here its database
stays locked by another program past the service's wait, or refuses to record the leaf) gets a
500 with a stable reason instead of a connection closed without an answer; the failure is
logged once, with its traceback, and the service goes on answering (the token, which the
failed join never got to use up, then works)."""

import sqlite3
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from identity import pki
from identity.client import csr_pem
from tests.integration.identity_service import IdentityService, running_identity_service, vmesh


def join_request(token: str) -> dict:
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName(
               [x509.UniformResourceIdentifier("spiffe://vmesh.local/svc/api")]), critical=True)
           .sign(pki.generate_key(), hashes.SHA256()))
    return {"token": token, "host": "h1", "csr": csr_pem(csr)}


@contextmanager
def service_and_token(root: Path) -> Iterator[tuple[IdentityService, httpx.Client, str]]:
    """A running identity service of a new CA under `root`, a client of it, and a join token
    of host h1 for service api; the CA's database is `database(root)`."""
    vmesh(root, "identity", "init", "--trust-domain", "vmesh.local")
    with running_identity_service(root) as service:
        token = vmesh(
            root, "identity", "token", "create", "--host", "h1", "--services", "api"
        ).stdout.strip()
        trusted = ssl.create_default_context(cafile=str(database(root).with_name("bundle.pem")))
        with httpx.Client(base_url=service.url, verify=trusted, timeout=60) as client:
            yield service, client, token


def database(root: Path) -> Path:
    return root / "var/lib/vmesh/identity/ca.db"


def test_a_join_the_service_fails_on_answers_500_and_the_service_goes_on(
    tmp_path: Path,
) -> None:
    with service_and_token(tmp_path) as (service, client, token):
        holder = sqlite3.connect(database(tmp_path), isolation_level=None)
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


def test_a_join_whose_leaf_is_not_recorded_leaves_its_token_usable(tmp_path: Path) -> None:
    with service_and_token(tmp_path) as (_, client, token):
        ca_db = sqlite3.connect(database(tmp_path), isolation_level=None)
        try:
            # the database refuses the record of the leaf, as a full disk would: the service
            # fails after the token was checked and before the leaf went out
            ca_db.execute("CREATE TRIGGER refuse BEFORE INSERT ON certificates "
                          "BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END")
            failed = client.post("/v1/join", json=join_request(token))
            ca_db.execute("DROP TRIGGER refuse")
            joined = client.post("/v1/join", json=join_request(token))
            recorded = [serial for serial, in ca_db.execute("SELECT serial FROM certificates")]
        finally:
            ca_db.close()

    assert failed.status_code == 500
    assert failed.json()["error"] == "internal.error"
    assert joined.status_code == 200, joined.text
    assert recorded == [joined.json()["serial"]]
