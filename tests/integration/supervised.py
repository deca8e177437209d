"""`vmesh run` as a test starts it, and a bounded load through a local proxy."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from tests.integration.mesh import REPO, Mesh


class Run:
    """A `vmesh run` process and the JSON log lines it (and its children) printed."""

    def __init__(self, mesh: Mesh, service: str, *command: str,
                 options: tuple[str, ...] = ()) -> None:
        self.records: list[dict] = []
        self.process = subprocess.Popen(
            [sys.executable, "-m", "vm_mesh", "run", *options, service, "--", *command],
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


def admin_get(root: Path, service: str, path: str, **params: str) -> httpx.Response:
    """GET `path` from the proxy that holds `service`'s admin socket now."""
    transport = httpx.HTTPTransport(uds=str(root / f"run/vmesh/{service}.sock"))
    with httpx.Client(transport=transport, base_url="http://admin", timeout=5) as client:
        return client.get(path, params=params)


def admin_stats(root: Path, service: str) -> dict:
    """`/v1/stats` over the last minute from the proxy that holds `service`'s admin socket."""
    return admin_get(root, service, "/v1/stats", window="60s").json()


def requests_seen(root: Path, service: str, direction: str) -> int:
    """Requests the proxy of `service` carried in the last minute, inbound or outbound."""
    stats = admin_stats(root, service)
    rows = stats["routes"] if direction == "inbound" else stats["upstreams"]
    return sum(row["requests"] for row in rows)


@dataclass
class LoadSummary:
    ok: int = 0
    failed: int = 0
    failures: list = field(default_factory=list)
    backends: dict = field(default_factory=dict)
    seconds: float = 0.0


@contextlib.contextmanager
def load(port: int, service: str, rate: int = 100, max_seconds: int = 60, method: str = "GET",
         ) -> Iterator[LoadSummary]:
    """`tests.e2e.loadgen` (keep-alive workers sending `method`, every non-200 a failure)
    against a local outbound listener for the block; the summary is filled in when the block
    ends."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.loadgen", "--port", str(port), "--service", service,
         "--rate", str(rate), "--max-requests", str(rate * max_seconds),
         "--max-seconds", str(max_seconds), "--method", method],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    summary = LoadSummary()
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "STARTED"
        yield summary
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    lines = out.strip().splitlines()
    assert lines, f"the load generator printed no summary: {err[-2000:]}"
    summary.__dict__.update(json.loads(lines[-1]))
