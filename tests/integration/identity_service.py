"""A real identity service for tests: a process with its CA under a temporary VMESH_ROOT, or
one in a thread of the test's own process, for settings the command line does not offer."""

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from identity import castate
from identity.authority import Authority
from identity.client import obtain
from identity.ratelimit import RateLimiter
from identity.service import IdentityServer
from identity.store import Store
from tests.integration.mesh import Mesh, ProxyProcess
from tests.support import follow_json_logs

REPO = Path(__file__).resolve().parents[2]


def vmesh(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the `vmesh` command with VMESH_ROOT=root."""
    result = subprocess.run(
        [sys.executable, "-m", "vm_mesh", *args],
        cwd=REPO,
        env={**os.environ, "VMESH_ROOT": str(root)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"vmesh {' '.join(args)} failed: {result.stderr}")
    return result


@dataclass
class IdentityService:
    """A running `vmesh identity serve`; `logs` collects its JSON log lines as they come."""

    root: Path
    proc: subprocess.Popen[str]
    url: str = ""
    logs: list[dict] = field(default_factory=list)

    def wait_for_log(self, predicate, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.logs):
                if predicate(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no matching log line; last lines: {self.logs[-5:]}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@contextmanager
def running_identity_service(root: Path, *serve_args: str) -> Iterator[IdentityService]:
    """Start `vmesh identity serve` on a free loopback port (the CA must exist under root)."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vm_mesh",
            "identity",
            "serve",
            "--listen",
            "127.0.0.1:0",
            *serve_args,
        ],
        cwd=REPO,
        env={**os.environ, "VMESH_ROOT": str(root)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    service = IdentityService(root, proc)
    listening = threading.Event()

    def on_record(record: dict) -> None:
        if record.get("msg") == "identity service listening":
            service.url = f"https://{record['listen']}"
            listening.set()

    follow_json_logs(proc, service.logs, on_record)
    try:
        if not listening.wait(20):
            raise AssertionError(f"identity service did not start: {service.logs[-5:]}")
        yield service
    finally:
        service.stop()


@contextmanager
def joined_proxy(
    root: Path, leaf_ttl: str, name: str = "api",
    renew_through: Callable[[str], AbstractContextManager[str]] = nullcontext,
) -> Iterator[ProxyProcess]:
    """The proxy of `name` (on host h1), joined with a one-time token of an identity service
    issuing leaves of `leaf_ttl`, which it renews from there while it runs (through the URL
    that `renew_through` makes of the service's, when given)."""
    mesh = Mesh(root)
    with running_identity_service(root, "--leaf-ttl", leaf_ttl) as service:
        token = vmesh(
            root, "identity", "token", "create", "--host", "h1", "--services", name
        ).stdout.strip()
        asyncio.run(obtain(service.url, token, host="h1", service=name,
                           directory=root / "var/lib/vmesh" / name))
        with renew_through(service.url) as url:
            try:
                yield mesh.start_proxy(name, 1, extra=f'identity_url = "{url}"',
                                       certificate=False)
            finally:
                mesh.stop()


@contextmanager
def identity_server(directory: Path, **settings: Any) -> Iterator[IdentityServer]:
    """An `IdentityServer` (with `settings`) on a free loopback port, serving in a thread,
    for a new CA in `directory`."""
    castate.init(directory, "vmesh.local")
    ca = castate.load(directory)
    server = IdentityServer(("127.0.0.1", 0), Authority(ca, Store(ca.database)),
                            ["127.0.0.1"], RateLimiter(), **settings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
