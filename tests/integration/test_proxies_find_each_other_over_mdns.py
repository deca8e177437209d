"""Proxies announce themselves over mDNS and route to what they find, with no endpoints file;
an instance leaves on its goodbye, or when its records stop being answered."""

import json
import secrets
import signal
import subprocess
import time
from pathlib import Path

import httpx

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


def test_instance_killed_without_goodbye_leaves_when_its_records_go_unanswered(
    tmp_path: Path,
) -> None:
    mesh = Mesh(tmp_path, discovery=MDNS)
    name = f"web{secrets.token_hex(3)}"
    backend = start_backend(name)
    try:
        web = mesh.start_proxy(name, backend.port)
        front = mesh.start_proxy("front", 1)

        def instances() -> list[str]:
            with front.admin() as admin:
                upstreams = admin.get("/v1/endpoints").json()["upstreams"]
            return [i["id"] for u in upstreams if u["service"] == name for i in u["instances"]]

        with httpx.Client(timeout=10) as client:
            answer = client.get(f"http://{front.outbound}/", headers={"Host": name})
        assert answer.status_code == 200 and instances() == [f"{name}-1"]

        web.stop(signal.SIGKILL)  # no drain, no goodbye: its records just stop being answered
        started = time.monotonic()
        wait_until(lambda: instances() == [], within=30,
                   what="the silent instance leaving the endpoint set")
        silent = front.wait_for_log(lambda line: line.get("event") == "discovery_mdns_silent")
        assert silent["instance"] == f"{name}-1"
        print(f"left {time.monotonic() - started:.1f} s after SIGKILL")
    finally:
        mesh.stop()
        backend.stop()
