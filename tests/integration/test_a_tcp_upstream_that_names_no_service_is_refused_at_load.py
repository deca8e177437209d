"""A `[[tcp]]` table's `service` must name a service (`db`) or another site's (`db.east`): a
name that is neither (a Consul DNS name, say) is a load error naming the file, the line of
that `service` and why, at start and on SIGHUP, where the config in force stays."""

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.integration.mesh import REPO, Mesh
from tests.integration.processes import answered_by, start_echo

BAD = 'service = "db.service.consul"'
UPSTREAMS = ('[[tcp]]\nservice = "echo"\nlisten = "127.0.0.1:0"\n'
             f'[[tcp]]\n{BAD}\nlisten = "127.0.0.1:0"')
REASON = ("tcp[1].service: 'db.service.consul' is neither a service name nor "
          "<service>.<datacenter> (a service of another site, e.g. api.east)")


def _bad_line(path: Path) -> int:
    return path.read_text().splitlines().index(BAD) + 1


def test_a_proxy_does_not_start_on_a_tcp_upstream_that_names_no_service(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    path = mesh.configure("front", 1, UPSTREAMS)
    mesh.issue("front")
    result = subprocess.run([sys.executable, "-m", "vm_mesh", "proxy", "run", "front"],
                            cwd=REPO, env=mesh.env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert f"{path}:{_bad_line(path)}: {REASON}" in result.stdout + result.stderr


def test_sighup_keeps_the_tcp_listeners_in_force_when_one_names_no_service(
    tmp_path: Path,
) -> None:
    mesh = Mesh(tmp_path)
    app = start_echo("echo-app")
    try:
        mesh.start_proxy("echo", app.port)
        front = mesh.start_proxy(
            "front", 1, extra='[[tcp]]\nservice = "echo"\nlisten = "127.0.0.1:0"')
        port = front.ports["tcp:echo"]
        assert answered_by(port) == "echo-app"

        path = mesh.configure("front", 1, UPSTREAMS, instance_id="front-2")
        os.kill(front.proc.pid, signal.SIGHUP)
        failed = front.wait_for_log(lambda line: line.get("event") == "config_reload_failed")
        assert failed["detail"] == f"{path}:{_bad_line(path)}: {REASON}"
        assert answered_by(port) == "echo-app"
        assert not [line for line in list(front.logs)
                    if line.get("event") == "config_restart_needed"]
        with front.admin() as admin:
            shown = admin.get("/v1/config").json()["service"]["tcp"]
        assert [upstream["service"] for upstream in shown] == ["echo"]
    finally:
        mesh.stop()
        app.stop()
