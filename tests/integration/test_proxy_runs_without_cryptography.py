"""A running proxy reads certificates through the stdlib only: cryptography's native library
(6.5 MB resident) is never mapped into it, even after traffic and with renewal configured."""

from pathlib import Path

import httpx

from tests.integration.mesh import Mesh
from tests.integration.processes import mapped_files, start_backend


def test_proxies_serve_mtls_and_certs_without_loading_cryptography(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    web = start_backend("web")
    try:
        # renewal configured, as on every joined host: nothing to renew for hours yet
        mesh.start_proxy("web", web.port, extra='identity_url = "https://127.0.0.1:9"')
        front = mesh.start_proxy("front", 1)
        answer = httpx.get(f"http://{front.outbound}/items/1", headers={"Host": "web"},
                           timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json()["client_id"] == "spiffe://vmesh.local/svc/front"
        with front.admin() as admin:
            certs = admin.get("/v1/certs").json()
        assert certs["identity"] == "spiffe://vmesh.local/svc/front"
        assert [c["kind"] for c in certs["chain"]] == ["leaf", "issuer"]
        for proxy in mesh.proxies:
            mapped = mapped_files(proxy.proc.pid)
            assert any("python" in path for path in mapped), "not the proxy's own memory map"
            assert not [path for path in mapped if "cryptography" in path], proxy.service
    finally:
        mesh.stop()
        web.stop()
