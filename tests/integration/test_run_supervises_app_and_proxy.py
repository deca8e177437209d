"""`vmesh run` without systemd: app and proxy as children, traffic through the mesh, and a stop
that drains the proxy before the app goes and reaches what the app started; a crashing app is
restarted, then given up on."""

import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.integration.mesh import REPO, Mesh, wait_until
from tests.integration.supervised import Run
from tests.support import free_port, require_tool
from vm_mesh.host.launcher import START_LIMIT_BURST, systemd_is_pid1

pytestmark = pytest.mark.skipif(systemd_is_pid1(), reason="with systemd, vmesh run uses units")


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


def test_a_stop_reaches_what_the_app_started(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    mesh.configure("wrapped", free_port())
    mesh.issue("wrapped")
    run = Run(mesh, "wrapped", "sh", "-c", "sleep 977; true")  # a wrapper script's app
    try:
        wait_until(lambda: run.find(msg="proxy ready"), within=30, what="proxy ready")
        [app] = [r["pid"] for r in run.find(msg="started", child="app")]
        wait_until(lambda: psutil.Process(app).children(), within=10, what="the app's child")
        [sleeper] = psutil.Process(app).children()
        run.process.send_signal(signal.SIGTERM)
        run.wait(60)
        _, alive = psutil.wait_procs([sleeper], timeout=10)
        assert alive == []
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
