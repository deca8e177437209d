"""Every bad join or renewal gets a 4xx with a one-line JSON reason, a log line, and no cert."""

import asyncio
import socket
import sqlite3
import ssl
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtensionOID

from identity import castate, pki
from identity.authority import proof_of_possession
from identity.client import LeafFiles, obtain
from tests.integration.identity_service import running_identity_service, vmesh


def _csr(key, *names: x509.GeneralName) -> str:
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=True)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode()


def _csr_with_extension(extension: x509.ExtensionType) -> str:
    """A CSR, properly signed, carrying `extension` as it is (parsed or not)."""
    return (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .add_extension(extension, critical=False)
        .sign(pki.generate_key(), hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )


def _uri(text: str) -> x509.UniformResourceIdentifier:
    return x509.UniformResourceIdentifier(text)


API = "spiffe://vmesh.local/svc/api"


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    root = tmp_path_factory.mktemp("ca")
    vmesh(root, "identity", "init", "--trust-domain", "vmesh.local")
    with running_identity_service(root) as running:
        yield running


def _token(root: Path, host: str = "h1", services: str = "api", ttl: str = "1h") -> str:
    return vmesh(
        root, "identity", "token", "create", "--host", host, "--services", services, "--ttl", ttl
    ).stdout.strip()


def _issued_count(root: Path) -> int:
    with sqlite3.connect(root / "var/lib/vmesh/identity/ca.db") as db:
        return db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0]


def _post(service, path: str, **kwargs) -> httpx.Response:
    context = pki_context(service.root)
    with httpx.Client(verify=context, timeout=10) as client:
        return client.post(service.url + path, **kwargs)


def pki_context(root: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(root / "var/lib/vmesh/identity/bundle.pem"))


def _assert_refused(service, response: httpx.Response, reason: str, before: int) -> None:
    assert 400 <= response.status_code < 500, response.text
    assert response.text.count("\n") == 1  # one line of JSON
    assert response.json()["error"] == reason
    service.wait_for_log(lambda line: line.get("reason") == reason)
    assert _issued_count(service.root) == before


def _join(service, token: str, csr: str, host: str = "h1") -> httpx.Response:
    return _post(service, "/v1/join", json={"token": token, "host": host, "csr": csr})


JOIN_CASES: dict[str, tuple[Callable[[Path], dict], str]] = {
    "token for another host": (
        lambda root: {
            "token": _token(root, host="other"),
            "csr": _csr(pki.generate_key(), _uri(API)),
        },
        "token.wrong_host",
    ),
    "token for another service": (
        lambda root: {
            "token": _token(root, services="web"),
            "csr": _csr(pki.generate_key(), _uri(API)),
        },
        "token.service_not_allowed",
    ),
    "expired token": (
        lambda root: {"token": _token(root, ttl="1ms"), "csr": _csr(pki.generate_key(), _uri(API))},
        "token.expired",
    ),
    "unknown token": (
        lambda root: {
            "token": "vmesh1.000000000000.nope.sha256-00",
            "csr": _csr(pki.generate_key(), _uri(API)),
        },
        "token.unknown",
    ),
    "malformed token": (
        lambda root: {"token": "let-me-in", "csr": _csr(pki.generate_key(), _uri(API))},
        "token.malformed",
    ),
    "CSR without SAN": (
        lambda root: {"token": _token(root), "csr": _csr(pki.generate_key())},
        "csr.no_uri_san",
    ),
    "CSR with two URI SANs": (
        lambda root: {
            "token": _token(root),
            "csr": _csr(pki.generate_key(), _uri(API), _uri("spiffe://vmesh.local/svc/web")),
        },
        "csr.multiple_uri_sans",
    ),
    "CSR outside the trust domain": (
        lambda root: {
            "token": _token(root),
            "csr": _csr(pki.generate_key(), _uri("spiffe://evil.example/svc/api")),
        },
        "csr.wrong_trust_domain",
    ),
    "CSR with a DNS SAN": (
        lambda root: {
            "token": _token(root),
            "csr": _csr(pki.generate_key(), _uri(API), x509.DNSName("api.example")),
        },
        "csr.extra_san",
    ),
    "CSR with an RSA key": (
        lambda root: {
            "token": _token(root),
            "csr": _csr(rsa.generate_private_key(65537, 2048), _uri(API)),
        },
        "csr.key_not_p256",
    ),
    "CSR with a weaker curve": (
        lambda root: {
            "token": _token(root),
            "csr": _csr(ec.generate_private_key(ec.SECP192R1()), _uri(API)),
        },
        "csr.key_not_p256",
    ),
    "CSR whose SAN does not parse": (
        lambda root: {
            "token": _token(root),
            "csr": _csr_with_extension(
                x509.UnrecognizedExtension(ExtensionOID.SUBJECT_ALTERNATIVE_NAME, b"\x30\x03")
            ),
        },
        "csr.malformed",
    ),
    "CSR that is garbage": (
        lambda root: {"token": _token(root), "csr": "-----BEGIN CERTIFICATE REQUEST-----\nxx"},
        "csr.malformed",
    ),
}


@pytest.mark.parametrize("case", list(JOIN_CASES))
def test_bad_join_is_refused(service, case: str) -> None:
    make_body, reason = JOIN_CASES[case]
    body = make_body(service.root)
    before = _issued_count(service.root)
    response = _join(service, body["token"], body["csr"])
    _assert_refused(service, response, reason, before)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\x00\xffnot json", "request.malformed_json"),
        (b"[1, 2]", "request.malformed_json"),
        (b"{}", "request.missing_field"),
    ],
)
def test_garbage_bodies_are_refused(service, payload: bytes, reason: str) -> None:
    before = _issued_count(service.root)
    response = _post(
        service, "/v1/join", content=payload, headers={"content-type": "application/json"}
    )
    _assert_refused(service, response, reason, before)


def test_oversized_body_is_refused(service) -> None:
    before = _issued_count(service.root)
    response = _post(service, "/v1/join", content=b"x" * (128 * 1024))
    _assert_refused(service, response, "request.too_large", before)


def test_token_works_once(service, tmp_path: Path) -> None:
    token = _token(service.root)
    asyncio.run(obtain(service.url, token, host="h1", service="api", directory=tmp_path))
    before = _issued_count(service.root)
    response = _join(service, token, _csr(pki.generate_key(), _uri(API)))
    _assert_refused(service, response, "token.already_used", before)


def test_revoked_token_is_refused(service) -> None:
    token = _token(service.root)
    vmesh(service.root, "identity", "token", "revoke", token.split(".")[1])
    before = _issued_count(service.root)
    response = _join(service, token, _csr(pki.generate_key(), _uri(API)))
    _assert_refused(service, response, "token.revoked", before)


def _renew_body(cert_pem: str, current_key, new_key=None, identity: str = API) -> dict:
    new_key = new_key or pki.generate_key()
    csr = x509.load_pem_x509_csr(_csr(new_key, _uri(identity)).encode())
    return {
        "certificate": cert_pem,
        "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
        "proof": proof_of_possession(current_key, csr),
    }


def test_renewal_with_a_leaf_of_another_trust_domain_is_refused(service) -> None:
    anchor = pki.create_anchor("other.example")
    issuer = pki.create_issuer(anchor, "other.example")
    key = pki.generate_key()
    leaf = pki.issue_leaf(
        issuer,
        key.public_key(),
        spiffe_id="spiffe://other.example/svc/api",
        common_name="api",
        trust_domain="other.example",
    )
    before = _issued_count(service.root)
    response = _post(
        service, "/v1/renew", json=_renew_body(pki.cert_pem(leaf, issuer.cert).decode(), key)
    )
    _assert_refused(service, response, "renew.untrusted_certificate", before)
    assert "vmesh join" in response.json()["detail"]  # what to do: join again


def test_renewal_with_an_expired_leaf_is_refused(service) -> None:
    ca = castate.load(service.root / "var/lib/vmesh/identity")
    key = pki.generate_key()
    leaf = pki.issue_leaf(
        ca.active,
        key.public_key(),
        spiffe_id=API,
        common_name="api",
        trust_domain="vmesh.local",
        now=pki.utcnow() - timedelta(days=3),
        lifetime=timedelta(days=1),
    )
    before = _issued_count(service.root)
    response = _post(
        service, "/v1/renew", json=_renew_body(pki.cert_pem(leaf, ca.active.cert).decode(), key)
    )
    _assert_refused(service, response, "renew.certificate_expired", before)
    assert "vmesh join" in response.json()["detail"]  # what to do: join again


def test_renewal_from_a_revoked_host_is_refused(service, tmp_path: Path) -> None:
    token = _token(service.root, host="doomed")
    asyncio.run(obtain(service.url, token, host="doomed", service="api", directory=tmp_path))
    vmesh(service.root, "identity", "revoke-host", "doomed")
    files = LeafFiles(tmp_path)
    before = _issued_count(service.root)
    body = _renew_body(files.cert.read_text(), pki.load_key(files.key.read_bytes()))
    response = _post(service, "/v1/renew", json=body)
    _assert_refused(service, response, "host.revoked", before)


def test_renewal_without_the_current_key_is_refused(service, tmp_path: Path) -> None:
    token = _token(service.root)
    asyncio.run(obtain(service.url, token, host="h1", service="api", directory=tmp_path))
    before = _issued_count(service.root)
    body = _renew_body(LeafFiles(tmp_path).cert.read_text(), pki.generate_key())
    response = _post(service, "/v1/renew", json=body)
    _assert_refused(service, response, "renew.bad_proof", before)


def test_renewal_for_another_identity_is_refused(service, tmp_path: Path) -> None:
    token = _token(service.root)
    asyncio.run(obtain(service.url, token, host="h1", service="api", directory=tmp_path))
    files = LeafFiles(tmp_path)
    before = _issued_count(service.root)
    body = _renew_body(
        files.cert.read_text(),
        pki.load_key(files.key.read_bytes()),
        identity="spiffe://vmesh.local/svc/web",
    )
    response = _post(service, "/v1/renew", json=body)
    _assert_refused(service, response, "renew.identity_mismatch", before)


def test_good_join_is_recorded(service, tmp_path: Path) -> None:
    before = _issued_count(service.root)
    token = _token(service.root, services="api,web")
    leaf = asyncio.run(obtain(service.url, token, host="h1", service="web", directory=tmp_path))
    assert _issued_count(service.root) == before + 1
    issued = service.wait_for_log(
        lambda line: (
            line.get("event") == "certificate_issued"
            and line.get("serial") == format(leaf.serial_number, "x")
        )
    )
    assert issued["identity"] == "spiffe://vmesh.local/svc/web" and issued["host"] == "h1"
    assert (tmp_path / "key.pem").stat().st_mode & 0o777 == 0o600
    assert leaf.not_valid_after_utc.timestamp() - time.time() > 23 * 3600


def test_a_content_length_of_other_digits_is_refused(service) -> None:
    # "²" is a digit to str.isdigit (and latin-1, as http.server decodes headers) but not to int
    host, port = service.url.removeprefix("https://").rsplit(":", 1)
    request = (b"POST /v1/join HTTP/1.1\r\nHost: " + host.encode()
               + b"\r\nConnection: close\r\nContent-Length: \xb2\r\n\r\n{}")
    context = pki_context(service.root)
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(request)
        answer = tls.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 411 "), answer
    assert b'"error": "request.length_required"' in answer
