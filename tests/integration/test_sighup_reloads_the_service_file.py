"""SIGHUP re-reads the service file: timeouts change live, a broken file keeps the config in
force, and changes that need a restart are named."""

import os
import signal
from pathlib import Path

from tests.integration.mesh import Mesh, wait_until
from tests.integration.processes import start_backend


def _header_timeout(proxy) -> float:
    with proxy.admin() as admin:
        return admin.get("/v1/config").json()["service"]["timeouts"]["header"]


def test_sighup_applies_new_timeouts_and_refuses_a_broken_file(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    backend = start_backend("web")
    try:
        web = mesh.start_proxy("web", backend.port)
        path = tmp_path / "etc/vmesh/services/web.toml"
        original = path.read_text()
        assert _header_timeout(web) == 2.0

        path.write_text(original.replace('header = "2s"', 'header = "7s"'))
        os.kill(web.proc.pid, signal.SIGHUP)
        wait_until(lambda: _header_timeout(web) == 7.0, what="the new header timeout")

        path.write_text(original.replace('header = "2s"', 'header = "soon"'))
        os.kill(web.proc.pid, signal.SIGHUP)
        failed = web.wait_for_log(lambda line: line.get("event") == "config_reload_failed")
        assert f"{path}:" in failed["detail"]
        assert _header_timeout(web) == 7.0

        path.write_text(original.replace('inbound = "127.0.0.1:0"', 'inbound = "127.0.0.1:1"'))
        os.kill(web.proc.pid, signal.SIGHUP)
        warned = web.wait_for_log(lambda line: line.get("event") == "config_restart_needed")
        assert warned["fields"] == ["listen"]
        assert _header_timeout(web) == 2.0
        assert web.proc.poll() is None
    finally:
        mesh.stop()
        backend.stop()
