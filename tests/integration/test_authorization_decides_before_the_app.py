"""Inbound authorization through real proxies: allowed, denied (403 with reason), audited,
unauthenticated and wrong-trust-domain callers; the app never sees a denied byte."""

import socket
import ssl
import time
from pathlib import Path

from identity import pki
from proxy.tls import ALPN_HTTP
from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture, sample  # noqa: F401
from tests.integration.processes import start_backend

POLICY = """\
kind: Authorization
name: store-access
service: store
mode: {mode}
default: deny
rules:
  - name: api-reads
    from: ["spiffe://vmesh.local/svc/api"]
    methods: [GET]
    paths: ["/items/*"]
"""


def raw_request(port: int, context: ssl.SSLContext, path: str) -> bytes:
    """One HTTP/1.1 request over TLS to an inbound proxy; the raw answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock, \
            context.wrap_socket(sock, server_hostname="store") as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: store\r\nConnection: close\r\n\r\n".encode())
        chunks = []
        try:
            while data := tls.recv(65536):
                chunks.append(data)
        except ssl.SSLEOFError:  # the proxy closed after its answer without close_notify
            if not chunks:
                raise
        return b"".join(chunks)


def client_context(directory: Path | None, bundle: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(bundle))
    context.check_hostname = False
    context.set_alpn_protocols([ALPN_HTTP])
    if directory is not None:
        context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


def test_callers_are_allowed_denied_and_audited(policy_mesh: PolicyMesh, tmp_path: Path) -> None:
    policy_file = policy_mesh.write_policy("authz.yaml", POLICY.format(mode="enforce"))
    mesh = policy_mesh.mesh
    # the store also trusts a second trust domain's anchor, so a foreign caller gets through TLS
    foreign_anchor = pki.create_anchor("other.example")
    foreign_issuer = pki.create_issuer(foreign_anchor, "other.example")
    store_dir = mesh.issue("store")
    bundle = store_dir / "bundle.pem"
    pki.write_file(bundle, bundle.read_bytes() + pki.cert_pem(foreign_anchor.cert))
    store_app = start_backend("store")
    policy_mesh.backends.append(store_app)
    store = mesh.start_proxy("store", store_app.port, certificate=False)
    api = mesh.start_proxy("api", 1)
    web = mesh.start_proxy("web", 1)

    with policy_mesh.client(api) as client:
        allowed = client.get("/items/1", headers={"Host": "store"})
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["client_id"].endswith("/svc/api")
        sneaky = client.get("/items%2F..%2Fadmin", headers={"Host": "store"})  # = /admin
        assert sneaky.status_code == 403
        assert sneaky.json() == {"error": "forbidden", "reason": "authz.default_deny",
                                 "rule": "store-access.default"}
    with policy_mesh.client(web) as client:
        denied = client.get("/items/1", headers={"Host": "store"})
        assert denied.status_code == 403, denied.text
        assert denied.headers["vmesh-error"] == "authz.default_deny"

    foreign_dir = mesh.issue("intruder", tmp_path / "foreign", trust_domain="other.example",
                             issuer=foreign_issuer)
    answer = raw_request(store.ports["inbound"], client_context(foreign_dir, bundle), "/items/1")
    assert answer.startswith(b"HTTP/1.1 403"), store.logs[-5:]
    assert b"authz.default_deny" in answer

    try:  # no client certificate: the handshake is refused, nothing is answered
        answer = raw_request(store.ports["inbound"], client_context(None, bundle), "/items/1")
    except (ssl.SSLError, ConnectionError):
        answer = b""
    assert answer == b""
    store.wait_for_log(lambda line: line.get("reason") in ("tls.no_identity",
                                                           "tls.handshake_failed"))

    assert policy_mesh.stats(store_app)["by_path"] == {"/items/1": 1}  # only the allowed request

    tap = policy_mesh.tap("store")
    store.wait_for_log(lambda line: line.get("msg") == "tap started")
    policy_mesh.write_policy("authz.yaml", POLICY.format(mode="audit"))
    deadline = time.monotonic() + 10
    with policy_mesh.client(web) as client:
        while (status := client.get("/items/1", headers={"Host": "store"}).status_code) == 403:
            assert time.monotonic() < deadline, "audit mode did not take effect"
            time.sleep(0.05)
    assert status == 200
    audit = store.wait_for_log(lambda line: line.get("event") == "authz_audit")
    assert audit["rule"] == "store-access.default" and audit["client_id"].endswith("/svc/web")
    deadline = time.monotonic() + 10  # tap shows the would-be denial with its rule
    while not any(e["policy"] == {"decision": "audit", "rule": "store-access.default"}
                  and e["status"] == 200 for e in list(tap)):
        assert time.monotonic() < deadline, tap[-3:]
        time.sleep(0.05)
    metrics = policy_mesh.metrics("store")
    assert sample(metrics, "authz_decision_total", decision="audit",
                  rule="store-access.default") >= 1
    # sneaky path, web, foreign caller, and web's requests until audit mode took effect
    assert sample(metrics, "authz_decision_total", decision="deny",
                  reason="authz.default_deny") >= 3
    allowed_count = sample(metrics, "authz_decision_total", decision="allow",
                           rule="store-access.api-reads")
    assert allowed_count == 1
    assert str(policy_file) in str(policy_mesh.admin("store", "/v1/config")["policy"])
