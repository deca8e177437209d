"""A running proxy renews its leaf from the identity service when due and serves the new one;
the renewal runs in a child process, so the proxy's own never maps cryptography."""

from pathlib import Path

from tests.integration.identity_service import joined_proxy
from tests.integration.mesh import wait_until
from tests.integration.processes import mapped_files


def test_the_proxy_renews_and_loads_the_new_leaf(tmp_path: Path) -> None:
    with joined_proxy(tmp_path, "8s") as proxy:
        with proxy.admin() as admin:
            first = admin.get("/v1/certs").json()["chain"][0]["serial"]

            def renewed() -> bool:
                return admin.get("/v1/certs").json()["chain"][0]["serial"] != first

            wait_until(renewed, within=20, what="a renewed leaf in /v1/certs")
        # the new files may be loaded (their watcher) a moment before the renewal is logged
        renewal = proxy.wait_for_log(lambda line: line.get("msg") == "certificate renewed")
        assert renewal["identity"] == "spiffe://vmesh.local/svc/api"
        assert renewal["serial"] != first
        mapped = mapped_files(proxy.proc.pid)
        assert any("python" in path for path in mapped), "not the proxy's own memory map"
        assert not [path for path in mapped if "cryptography" in path]
