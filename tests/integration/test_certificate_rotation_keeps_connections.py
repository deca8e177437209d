"""New certificate files take effect for new handshakes; open connections keep working."""

import socket
import ssl
from pathlib import Path

import httpx
from cryptography import x509

from tests.integration.mesh import Mesh, wait_until
from tests.integration.processes import start_backend


def _client_context(state: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(state / "bundle.pem"))
    context.check_hostname = False
    context.load_cert_chain(state / "cert.pem", state / "key.pem")
    context.set_alpn_protocols(["http/1.1"])
    return context


def _serial_of_server(port: int, context: ssl.SSLContext) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def _get(tls: ssl.SSLSocket, path: str) -> bytes:
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: web\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = tls.recv(65536)
        assert chunk, f"connection closed; got {data!r}"
        data += chunk
    return data


def test_rotated_certificate_serves_new_handshakes_without_dropping_open_ones(
    tmp_path: Path,
) -> None:
    mesh = Mesh(tmp_path)
    backend = start_backend("web")
    try:
        web = mesh.start_proxy("web", backend.port)
        front = mesh.start_proxy("front", 1)
        context = _client_context(tmp_path / "var/lib/vmesh/front")
        before = _serial_of_server(web.ports["inbound"], context)
        with httpx.Client(base_url=f"http://{front.outbound}", headers={"host": "web"}) as app, \
                socket.create_connection(("127.0.0.1", web.ports["inbound"]), timeout=10) as raw, \
                context.wrap_socket(raw) as open_tls:
            assert app.get("/one").status_code == 200
            assert _get(open_tls, "/first").startswith(b"HTTP/1.1 200 ")

            mesh.issue("web")
            wait_until(lambda: _serial_of_server(web.ports["inbound"], context) != before,
                       what="the inbound proxy to present its new certificate")

            assert _get(open_tls, "/second").startswith(b"HTTP/1.1 200 ")
            assert app.get("/two").status_code == 200
    finally:
        mesh.stop()
        backend.stop()
