"""The issuers a CA creates are name-constrained to the URIs of its trust domain (critical
NameConstraints, permitted URI host `<td>`): a leaf their key signs for another trust domain
fails the chain check of a proxy's handshake, while the leaves of the mesh keep verifying in
the proxies, in the identity client and in renewal. A CA made before, whose issuers lack the
constraint, keeps working, and `vmesh check` and `vmesh identity status` name each such
issuer and how to replace it, in the same words."""

import asyncio
import json
import socket
import ssl
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from identity import castate, pki
from identity.client import obtain, renew
from tests.integration.identity_service import running_identity_service, vmesh
from tests.integration.mesh import TRUST_DOMAIN, Mesh
from tests.integration.processes import start_backend

REQUEST = b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n"


def client_context(credentials: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(credentials / "cert.pem", credentials / "key.pem")
    return context


def answer_to(port: int, credentials: Path) -> bytes:
    """What the inbound port answers a request over mutual TLS with `credentials` (b"" when
    the handshake or the connection is refused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        try:
            with client_context(credentials).wrap_socket(raw) as tls:
                tls.sendall(REQUEST)
                return tls.recv(100)
        except (ssl.SSLError, ConnectionError):
            return b""


def test_a_leaf_the_issuer_signs_for_another_trust_domain_fails_the_handshake(
    tmp_path: Path,
) -> None:
    mesh = Mesh(tmp_path)
    constraints = mesh.ca.active.cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert constraints.value.permitted_subtrees == [x509.UniformResourceIdentifier(TRUST_DOMAIN)]
    backend = start_backend("web")
    try:
        web = mesh.start_proxy("web", backend.port)
        member = mesh.issue("api", tmp_path / "api")
        forged = mesh.issue("api", tmp_path / "forged", trust_domain="evil.example")

        assert answer_to(web.ports["inbound"], member).startswith(b"HTTP/1.1 ")
        assert answer_to(web.ports["inbound"], forged) == b""
        line = web.wait_for_log(lambda entry: entry.get("reason") == "tls.handshake_failed")
        assert "permitted subtree violation" in line["detail"]
    finally:
        mesh.stop()
        backend.stop()


def test_the_identity_client_joins_and_renews_under_a_constrained_issuer(tmp_path: Path) -> None:
    vmesh(tmp_path, "identity", "init")
    token = vmesh(tmp_path, "identity", "token", "create", "--host", "h1",
                  "--services", "api").stdout.strip()
    directory = tmp_path / "var/lib/vmesh/api"
    with running_identity_service(tmp_path) as service:
        first = asyncio.run(obtain(service.url, token, host="h1", service="api",
                                   directory=directory))
        second = asyncio.run(renew(service.url, directory))
    assert second.serial_number != first.serial_number
    assert pki.uri_sans(second) == [f"spiffe://{TRUST_DOMAIN}/svc/api"]
    issuer = pki.load_certs((directory / "cert.pem").read_bytes())[1]
    assert issuer.extensions.get_extension_for_class(x509.NameConstraints).critical


def without_name_constraints(ca_dir: Path, number: int) -> None:
    """Make generation `number`'s issuer as a CA made before the constraint did: the same
    key and names, re-signed by its anchor without NameConstraints."""
    generation = ca_dir / f"gen-{number}"
    anchor_key = pki.load_key((generation / "anchor.key").read_bytes())
    issuer = pki.load_certs((generation / "issuer.pem").read_bytes())[0]
    builder = (x509.CertificateBuilder().subject_name(issuer.subject)
               .issuer_name(issuer.issuer).public_key(issuer.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(issuer.not_valid_before_utc)
               .not_valid_after(issuer.not_valid_after_utc))
    for extension in issuer.extensions:
        if not isinstance(extension.value, x509.NameConstraints):
            builder = builder.add_extension(extension.value, extension.critical)
    pki.write_file(generation / "issuer.pem",
                   pki.cert_pem(builder.sign(anchor_key, hashes.SHA256())))


def unconstrained_findings(root: Path) -> list[dict]:
    result = vmesh(root, "check", "--json", check=False)
    findings = [json.loads(line) for line in result.stdout.splitlines()]
    return [f for f in findings if f["reason"] == "identity.issuer_unconstrained"]


def test_a_ca_made_before_the_constraint_works_and_check_says_how_to_replace_it(
    tmp_path: Path,
) -> None:
    vmesh(tmp_path, "identity", "init")
    ca_dir = tmp_path / "var/lib/vmesh/identity"
    without_name_constraints(ca_dir, 1)
    token = vmesh(tmp_path, "identity", "token", "create", "--host", "h1",
                  "--services", "api").stdout.strip()
    with running_identity_service(tmp_path) as service:
        asyncio.run(obtain(service.url, token, host="h1", service="api",
                           directory=tmp_path / "var/lib/vmesh/api"))
        asyncio.run(renew(service.url, tmp_path / "var/lib/vmesh/api"))

    [finding] = unconstrained_findings(tmp_path)
    assert finding["status"] == "warn" and "generation 1" in finding["target"]
    assert "vmesh identity rotate" in finding["hint"]

    vmesh(tmp_path, "identity", "rotate")
    [finding] = unconstrained_findings(tmp_path)  # still trusted, and its key still signs
    assert "generation 1" in finding["target"] and "vmesh identity retire 1" in finding["hint"]
    assert castate.load(ca_dir).active.cert.extensions.get_extension_for_class(
        x509.NameConstraints).critical
    vmesh(tmp_path, "identity", "retire", "1")
    assert unconstrained_findings(tmp_path) == []


def test_identity_status_says_what_check_says_of_an_unconstrained_issuer(tmp_path: Path) -> None:
    vmesh(tmp_path, "identity", "init")
    assert "name constraint" not in vmesh(tmp_path, "identity", "status").stdout
    without_name_constraints(tmp_path / "var/lib/vmesh/identity", 1)
    status = vmesh(tmp_path, "identity", "status")  # a warning, as in vmesh check: exit 0
    said = [line for line in vmesh(tmp_path, "check", check=False).stdout.splitlines()
            if "lacks the name constraint" in line]
    assert len(said) == 1 and said[0] in status.stdout.splitlines()
    [warning] = json.loads(vmesh(tmp_path, "identity", "status", "--json").stdout)["warnings"]
    assert warning["reason"] == "identity.issuer_unconstrained"
    assert "vmesh identity rotate" in warning["hint"]
