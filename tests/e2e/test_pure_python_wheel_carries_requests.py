"""The universal wheel (`VMESH_PURE_PYTHON=1`, for a fleet of mixed Pythons or machines, see
ansible/README.md) holds no compiled module, and its proxies carry requests over mTLS."""

import zipfile
from pathlib import Path

import httpx
import psutil

from tests.e2e.playbooks import build_wheel
from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend


def test_the_pure_wheel_is_universal_and_its_proxies_carry_requests(tmp_path: Path) -> None:
    (wheel,) = build_wheel(tmp_path, pure=True).glob("*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        assert "proxy/http1.py" in names
        assert not [name for name in names if name.endswith(".so")]
        archive.extractall(tmp_path / "installed")

    mesh = Mesh(tmp_path / "root", source=tmp_path / "installed")
    web = start_backend("web")
    try:
        web_proxy = mesh.start_proxy("web", web.port)
        front = mesh.start_proxy("front", 1)
        with httpx.Client(base_url=f"http://{front.outbound}", headers={"host": "web"}) as app:
            answers = [app.get(f"/items/{n}") for n in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert [a.json()["path"] for a in answers] == ["/items/0", "/items/1", "/items/2"]
        assert {a.json()["client_id"] for a in answers} == {"spiffe://vmesh.local/svc/front"}
        assert front.metric("connection_open_total", direction="outbound") == 1  # pooled
        for proxy in (web_proxy, front):  # run from the wheel: no compiled module is loaded
            mapped = {Path(m.path).name for m in psutil.Process(proxy.proc.pid).memory_maps()}
            assert not [name for name in mapped if "mypyc" in name], mapped
    finally:
        mesh.stop()
        web.stop()

