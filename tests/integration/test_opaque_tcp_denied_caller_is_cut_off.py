"""Authorization of opaque TCP through real proxies: an allowed caller's bytes reach the app, a
denied caller's connection is closed before the app sees a byte."""

import re
import socket

from tests.integration.policy_mesh import PolicyMesh, policy_mesh_fixture  # noqa: F401
from tests.support import free_ports

POLICY = """\
kind: Authorization
service: db
default: deny
rules:
  - {name: api-only, from: ["spiffe://vmesh.local/svc/api"]}
---
kind: ServicePolicy
service: db
opaque_ports: [{ports}]
"""


def tcp_listener(port: int) -> str:
    """A listener for db on `port`, listed in opaque_ports: HTTP bytes are not detected."""
    return f'[[tcp]]\nservice = "db"\nlisten = "127.0.0.1:{port}"\n'


def exchange(port: int, path: str = "/rows") -> bytes:
    """Send an HTTP request as raw bytes through an opaque TCP listener; what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: db\r\nConnection: close\r\n\r\n".encode())
        received = b""
        try:  # until the connection ends or the (content-length framed) answer is complete
            while data := sock.recv(65536):
                received += data
                head, _, body = received.partition(b"\r\n\r\n")
                length = re.search(rb"(?i)content-length: *(\d+)", head)
                if length and len(body) >= int(length.group(1)):
                    break
        except ConnectionResetError:
            pass
        return received


def test_opaque_connection_of_a_denied_caller_is_refused(policy_mesh: PolicyMesh) -> None:
    api_port, web_port = free_ports(2)
    policy_mesh.write_policy("db.yaml", POLICY.replace("{ports}", f"{api_port}, {web_port}"))
    db, _ = policy_mesh.service("db")
    api = policy_mesh.mesh.start_proxy("api", 1, extra=tcp_listener(api_port))
    web = policy_mesh.mesh.start_proxy("web", 1, extra=tcp_listener(web_port))

    assert exchange(api.ports["tcp:db"]).startswith(b"HTTP/1.1 200")
    assert exchange(web.ports["tcp:db"]) == b""
    assert policy_mesh.stats(db)["by_path"] == {"/rows": 1}
    db_proxy = policy_mesh.mesh.proxies[0]
    denial = db_proxy.wait_for_log(lambda line: line.get("event") == "authz_deny")
    assert denial["client_id"] == "spiffe://vmesh.local/svc/web"
    assert (denial["rule"], denial["reason"]) == ("db.default", "authz.default_deny")


SCOPED_DENY = """\
kind: Authorization
name: db-access
service: db
default: deny
rules:
  - {name: callers, from: ["spiffe://vmesh.local/svc/api", "spiffe://vmesh.local/svc/web"]}
  - {name: no-admin, action: deny, from: ["spiffe://vmesh.local/svc/web"], paths: ["/admin/**"]}
---
kind: ServicePolicy
service: db
opaque_ports: [{ports}]
"""


def test_a_deny_rule_on_http_requests_refuses_the_callers_opaque_connections(
    policy_mesh: PolicyMesh,
) -> None:
    """Opaque bytes may carry any request, so a deny rule naming paths (or methods, or routes)
    cannot be checked on them: it refuses its callers' opaque connections outright (Istio's
    rule), or its callers would reach the denied paths by speaking HTTP through a tunnel."""
    api_port, web_port = free_ports(2)
    policy_mesh.write_policy("db.yaml", SCOPED_DENY.replace("{ports}", f"{api_port}, {web_port}"))
    db, _ = policy_mesh.service("db")
    api = policy_mesh.mesh.start_proxy("api", 1, extra=tcp_listener(api_port))
    web = policy_mesh.mesh.start_proxy("web", 1, extra=tcp_listener(web_port))

    assert exchange(api.ports["tcp:db"], "/admin/users").startswith(b"HTTP/1.1 200")
    assert exchange(web.ports["tcp:db"], "/admin/users") == b""
    assert policy_mesh.stats(db)["by_path"] == {"/admin/users": 1}  # api's only
    db_proxy = policy_mesh.mesh.proxies[0]
    denial = db_proxy.wait_for_log(lambda line: line.get("event") == "authz_deny")
    assert denial["client_id"] == "spiffe://vmesh.local/svc/web"
    assert (denial["rule"], denial["reason"]) == ("db-access.no-admin", "authz.denied_by_rule")
