"""`/v1/certs` gives the time the proxy's renewal is scheduled for: the renewer's, its jitter
included (renewals are spread over the 5 % of a leaf's life before its 70 % point), which it
logs; after a renewal failed, the time of the next attempt; none when nothing renews the leaf
(no `identity_url`)."""

import asyncio
from datetime import datetime
from pathlib import Path

from identity.client import obtain
from tests.integration.identity_service import running_identity_service, vmesh
from tests.integration.mesh import Mesh, ProxyProcess


def certs(proxy: ProxyProcess) -> dict:
    with proxy.admin() as admin:
        return admin.get("/v1/certs").json()


def renewing_proxy(mesh: Mesh, root: Path, leaf_ttl: str) -> ProxyProcess:
    """The proxy of `api` with a leaf of `leaf_ttl`, renewing from an identity service that
    is gone once the proxy runs."""
    with running_identity_service(root, "--leaf-ttl", leaf_ttl) as service:
        token = vmesh(
            root, "identity", "token", "create", "--host", "h1", "--services", "api"
        ).stdout.strip()
        asyncio.run(obtain(service.url, token, host="h1", service="api",
                           directory=root / "var/lib/vmesh/api"))
    return mesh.start_proxy("api", 1, extra=f'identity_url = "{service.url}"',
                            certificate=False)


def logged(proxy: ProxyProcess, message: str) -> dict:
    return proxy.wait_for_log(lambda line: line.get("msg", "").startswith(message))


def test_the_next_renewal_is_the_one_the_renewer_scheduled_jitter_included(
    tmp_path: Path,
) -> None:
    mesh = Mesh(tmp_path)
    try:
        proxy = renewing_proxy(mesh, tmp_path, "1h")
        scheduled = logged(proxy, "certificate renewal scheduled")
        described = certs(proxy)
    finally:
        mesh.stop()

    leaf = described["chain"][0]
    born, dies = (datetime.fromisoformat(leaf[k]).timestamp() for k in ("not_before", "not_after"))
    assert described["next_renewal"] == scheduled["renew_at"]
    assert born + 0.65 * (dies - born) <= described["next_renewal"] < born + 0.7 * (dies - born)


def test_after_a_failed_renewal_the_next_renewal_is_the_next_attempt(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    try:
        proxy = renewing_proxy(mesh, tmp_path, "8s")
        scheduled = logged(proxy, "certificate renewal scheduled")
        logged(proxy, "certificate renewal failed")
        described = certs(proxy)
    finally:
        mesh.stop()

    assert described["next_renewal"] > scheduled["renew_at"]


def test_a_proxy_that_does_not_renew_names_no_next_renewal(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    try:
        described = certs(mesh.start_proxy("api", 1))  # no identity_url
    finally:
        mesh.stop()

    assert described["chain"][0]["kind"] == "leaf"
    assert described["next_renewal"] is None
