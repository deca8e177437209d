"""Fixtures of the console tests under a private VMESH_ROOT.

`mesh` + `traffic`: real `vmesh proxy run` processes with real mTLS traffic.
`expired_store`: real proxies, one of them with an expired leaf.
`start_admin`: a proxy's real admin API with simulated traffic, for what a
real proxy cannot be made to show on demand (1,000 events/s, a steady mix of
failures for the golden metrics).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.integration.mesh import Mesh
from tests.integration.processes import start_backend
from vm_mesh import paths

REPO = Path(__file__).resolve().parents[2]
START_DEADLINE_S = 15.0
TRAFFIC_LIMIT = 5_000  # requests, at most
TRAFFIC_SECONDS = 120.0  # and never longer than this


@dataclass
class AdminProcess:
    """One running proxy admin API with simulated traffic (see `start_admin`)."""

    name: str
    proc: subprocess.Popen[bytes]
    socket: Path | None
    tls_dir: Path
    port: int | None = None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)


def wait_for(condition: Callable[[], object], deadline_s: float, what: str) -> object:
    """Poll `condition` until it is truthy; fail the test naming `what` after the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {deadline_s}s waiting for {what}")


@pytest.fixture
def vmesh_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private VMESH_ROOT (short path: unix socket paths are limited to 107 bytes)."""
    root = Path(f"/tmp/vmc-{os.getpid()}-{tmp_path.name[-12:]}")
    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("VMESH_ROOT", str(root))
    paths.run_dir().mkdir(parents=True, exist_ok=True)
    yield root
    subprocess.run(["rm", "-rf", str(root)], check=False)


@pytest.fixture
def start_admin(vmesh_root: Path) -> Iterator[Callable[..., AdminProcess]]:
    """Start admin API processes; every one is killed by PID when the test ends."""
    started: list[AdminProcess] = []

    def start(name: str, *, tls: bool = False, rate: float = 20.0,
              ca_dir: Path | None = None) -> AdminProcess:
        tls_dir = paths.state_dir(name)
        tls_dir.mkdir(parents=True, exist_ok=True)
        socket = None if tls else paths.admin_socket(name)
        port_file = vmesh_root / f"{name}.port"
        cmd = [sys.executable, "-m", "tests.console.simulated_proxy", "--name", name,
               "--tls-dir", str(tls_dir), "--rate", str(rate)]
        cmd += ["--port-file", str(port_file)] if tls else ["--socket", str(socket)]
        if ca_dir:
            cmd += ["--ca-dir", str(ca_dir)]
        proc = subprocess.Popen(cmd, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
        admin = AdminProcess(name, proc, socket, tls_dir)
        started.append(admin)
        if tls:
            wait_for(port_file.exists, START_DEADLINE_S, f"{name} to listen")
            admin.port = int(port_file.read_text())
        else:
            wait_for(lambda: _answers(socket), START_DEADLINE_S, f"{name} to answer on {socket}")
        return admin

    yield start
    for admin in started:
        admin.kill()


def _answers(socket: Path | None) -> bool:
    if socket is None or not socket.exists():
        return False
    try:
        transport = httpx.HTTPTransport(uds=str(socket))
        with httpx.Client(transport=transport, base_url="http://admin", timeout=1) as client:
            return client.get("/ready").status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def mesh(vmesh_root) -> Iterator[Mesh]:
    mesh = Mesh(vmesh_root)
    backends = []
    try:
        for name in ("api", "store"):
            backends.append(backend := start_backend(name, fail_every=10, status=503))
            mesh.start_proxy(name, backend.port)
        mesh.start_proxy("web", 1)
        yield mesh
    finally:
        mesh.stop()
        for backend in backends:
            backend.stop()


@pytest.fixture
def expired_store(vmesh_root) -> Iterator[Mesh]:
    """Real proxies: `api` with a fresh leaf, `store` with a leaf that expired two hours ago.

    The proxy starts with an expired leaf (it loads its files without judging
    their dates, so that it can serve its admin API and renew) and reports it.
    """
    mesh = Mesh(vmesh_root)
    try:
        mesh.start_proxy("api", 1)
        mesh.configure("store", 1)
        mesh.issue("store", now=datetime.now(UTC) - timedelta(hours=26))  # 24 h lifetime
        mesh.start_proxy("store", 1, certificate=False)
        yield mesh
    finally:
        mesh.stop()


@pytest.fixture
def traffic(mesh: Mesh) -> Iterator[None]:
    """Requests from web's app to api and store through web's proxy, until the test ends.

    Bounded in count and time; backends `api` and `store` fail 1 request in 10.
    """
    web = next(p for p in mesh.proxies if p.service == "web")
    stop = threading.Event()

    def send() -> None:
        deadline = time.monotonic() + TRAFFIC_SECONDS
        with httpx.Client(base_url=f"http://{web.outbound}", timeout=5) as client:
            for n in range(TRAFFIC_LIMIT):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                host = ("api", "store")[n % 2]
                # A proxy killed by the test fails its requests: keep sending to the others.
                with contextlib.suppress(httpx.HTTPError):
                    client.get(f"/items/{n % 3}", headers={"host": host})
                stop.wait(0.02)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(timeout=10)


@pytest.fixture
def no_cursor_blink(monkeypatch: pytest.MonkeyPatch) -> None:
    """A blinking cursor makes screenshots depend on timing."""
    from textual.widgets import Input

    monkeypatch.setattr(Input, "_toggle_cursor", lambda self: None, raising=False)
