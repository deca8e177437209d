"""A caller without a valid mesh identity is refused at the handshake, in the log, in tap and
in `tls_handshake_failure_total`."""

import json
import socket
import ssl
import threading
from pathlib import Path

import httpx

from identity import pki
from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend


def _tap_lines(proxy, lines: list[dict], ready: threading.Event) -> None:
    with proxy.admin() as client, client.stream("GET", "/v1/tap") as response:
        ready.set()
        for line in response.iter_lines():
            lines.append(json.loads(line))
            return


def test_foreign_certificate_is_refused_logged_and_tapped(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    backend = start_backend("web")
    try:
        web = mesh.start_proxy("web", backend.port)
        foreign_anchor = pki.create_anchor("evil.example")
        foreign_issuer = pki.create_issuer(foreign_anchor, "evil.example")
        creds = mesh.issue(
            "mallory", tmp_path / "mallory", trust_domain="evil.example", issuer=foreign_issuer
        )
        tapped: list[dict] = []
        ready = threading.Event()
        tap = threading.Thread(target=_tap_lines, args=(web, tapped, ready), daemon=True)
        tap.start()
        assert ready.wait(10)

        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        context.load_cert_chain(creds / "cert.pem", creds / "key.pem")
        with socket.create_connection(("127.0.0.1", web.ports["inbound"]), timeout=10) as raw:
            try:
                with context.wrap_socket(raw, server_hostname="web") as tls:
                    tls.sendall(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
                    assert tls.recv(100) == b""
            except (ssl.SSLError, ConnectionError):
                pass  # refused during or right after the handshake, as it should be

        line = web.wait_for_log(lambda entry: entry.get("reason") == "tls.handshake_failed")
        assert "certificate" in line["detail"]
        tap.join(10)
        assert tapped and tapped[0]["error"].startswith("tls.handshake_failed")
        assert tapped[0]["direction"] == "inbound" and tapped[0]["dst"]["service"] == "web"
        refused = web.metric(
            "tls_handshake_failure_total", direction="inbound", error="tls.handshake_failed"
        )
        assert refused == 1
        assert web.metric("tcp_open_total", direction="inbound") == 0
        assert httpx.get(f"http://127.0.0.1:{backend.port}/_stats").json()["requests"] == 0
    finally:
        mesh.stop()
        backend.stop()


def test_caller_without_any_certificate_is_refused_at_the_handshake(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    backend = start_backend("web")
    try:
        web = mesh.start_proxy("web", backend.port)
        # Trusts the mesh (so only the missing client certificate can fail it).
        context = ssl.create_default_context(cafile=str(tmp_path / "var/lib/vmesh/web/bundle.pem"))
        context.check_hostname = False
        with socket.create_connection(("127.0.0.1", web.ports["inbound"]), timeout=10) as raw:
            try:
                with context.wrap_socket(raw) as tls:
                    tls.sendall(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n")
                    assert tls.recv(100) == b""
            except (ssl.SSLError, ConnectionError):
                pass  # TLS 1.3 reports the refusal on the first read, 1.2 in the handshake

        web.wait_for_log(lambda entry: entry.get("reason") == "tls.handshake_failed")
        assert httpx.get(f"http://127.0.0.1:{backend.port}/_stats").json()["requests"] == 0
    finally:
        mesh.stop()
        backend.stop()
