"""Proxies announce themselves over mDNS and route to what they find, with no endpoints file."""

import json
import secrets
import subprocess
from pathlib import Path

from tests.integration.mesh import Mesh, wait_until
from tests.integration.processes import start_backend
from tests.support import require_tool

MDNS = 'backend = "mdns"\ninterfaces = ["127.0.0.1"]\n'


def test_request_reaches_a_service_found_over_mdns_and_stops_after_goodbye(
    tmp_path: Path,
) -> None:
    curl = require_tool("curl")
    mesh = Mesh(tmp_path, discovery=MDNS)
    name = f"web{secrets.token_hex(3)}"  # unique: other meshes may share this host's mDNS
    backend = start_backend(name)
    try:
        web = mesh.start_proxy(name, backend.port)
        front = mesh.start_proxy("front", 1)

        def get() -> subprocess.CompletedProcess[str]:
            return subprocess.run([curl, "-sS", "-H", f"Host: {name}.mesh",
                                   f"http://{front.outbound}/hello"],
                                  capture_output=True, text=True, timeout=30)

        answer = json.loads(get().stdout)
        assert answer["name"] == name
        with front.admin() as admin:
            (upstream,) = admin.get("/v1/endpoints").json()["upstreams"]
        assert upstream["source"] == "mdns"
        assert upstream["instances"][0]["addr"] == f"127.0.0.1:{web.ports['inbound']}"

        assert web.stop() == 0  # drains and says goodbye over mDNS
        wait_until(lambda: "no_endpoints" in get().stdout, within=10,
                   what="the stopped instance leaving the endpoint set")
    finally:
        mesh.stop()
        backend.stop()
