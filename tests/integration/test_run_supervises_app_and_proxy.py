"""`vmesh run` without systemd: app and proxy as children, traffic through the mesh, and a stop
that drains the proxy before the app goes; a crashing app is restarted, then given up on."""

import json
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from tests.integration.mesh import REPO, Mesh, wait_until
from tests.support import require_tool
from vm_mesh.host.launcher import START_LIMIT_BURST, systemd_is_pid1

pytestmark = pytest.mark.skipif(systemd_is_pid1(), reason="with systemd, vmesh run uses units")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Run:
    """A `vmesh run` process and the JSON log lines it (and its children) printed."""

    def __init__(self, mesh: Mesh, service: str, *command: str) -> None:
        self.records: list[dict] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vm_mesh", "run", service, "--", *command],
            cwd=REPO, env=mesh.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def wait(self, within: float) -> int:
        """The exit code, once every line it printed has been read."""
        code = self.process.wait(timeout=within)
        self.reader.join(timeout=10)
        return code

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.records.append(json.loads(line))
            except json.JSONDecodeError:
                self.records.append({"msg": line.rstrip()})

    def find(self, **fields: object) -> list[dict]:
        return [r for r in list(self.records)
                if all(r.get(k) == v for k, v in fields.items())]

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        for record in self.find(msg="started"):  # children of a killed supervisor
            if psutil.pid_exists(record["pid"]):
                psutil.Process(record["pid"]).kill()


def test_request_reaches_the_app_and_stop_drains_proxy_before_app(tmp_path: Path) -> None:
    curl = require_tool("curl")
    mesh = Mesh(tmp_path)
    app_port = free_port()
    mesh.configure("shop", app_port)
    mesh.issue("shop")
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "hello.txt").write_text("hello from the app\n")
    run = Run(mesh, "shop", sys.executable, "-m", "http.server", str(app_port),
              "--bind", "127.0.0.1", "--directory", str(tmp_path / "www"))
    try:
        wait_until(lambda: run.find(msg="proxy ready"), within=30, what="proxy ready")
        inbound = run.find(msg="proxy ready")[0]["inbound"]
        mesh.add_instance("shop", inbound, "shop-1")
        front = mesh.start_proxy("front", 1)

        def get() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [curl, "-sS", "-H", "Host: shop", f"http://{front.outbound}/hello.txt"],
                capture_output=True, text=True, timeout=30)

        wait_until(lambda: get().stdout == "hello from the app\n", within=20, what="app reachable")
        children = {r["child"]: r["pid"] for r in run.find(msg="started")}
        assert set(children) == {"proxy", "app"}

        run.process.send_signal(signal.SIGTERM)
        assert run.wait(60) == 0
        stops = [r["child"] for r in run.records if r.get("msg") == "stopped" and "child" in r]
        assert stops == ["proxy", "app"]  # the proxy drained while the app still answered
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie"
                       for pid in children.values())
    finally:
        run.kill()
        mesh.stop()


def test_a_crashing_app_is_restarted_then_given_up_on(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    mesh.configure("crashy", free_port())
    mesh.issue("crashy")
    run = Run(mesh, "crashy", "sh", "-c", "exit 3")
    try:
        assert run.wait(60) == 3
        app_starts = run.find(msg="started", child="app")
        assert len(app_starts) == START_LIMIT_BURST
        assert run.find(msg="failed too often; giving up", child="app")
        assert run.find(msg="stopped", child="proxy")  # and the proxy left with it
    finally:
        run.kill()
        mesh.stop()


def test_run_without_a_command_says_how_to_use_it(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "vm_mesh", "run", "shop"], cwd=REPO,
                          env=Mesh(tmp_path).env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert done.stderr.strip() == ("vmesh: vmesh run shop: no app command "
                                   "(usage: vmesh run shop -- <command> [args...])")
