"""Large bodies stream through with flat memory; SIGTERM drains."""

import contextlib
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil

from tests.integration.mesh import Mesh, wait_until
from tests.integration.processes import start_backend
from tests.support import require_tool

MB = 1024 * 1024


@contextlib.contextmanager
def rss_growth(pids: list[int]) -> Iterator[dict[int, int]]:
    """The peak RSS growth of each process over the block, sampled every 50 ms."""
    processes = [psutil.Process(pid) for pid in pids]
    baseline = {p.pid: p.memory_info().rss for p in processes}
    growth = dict.fromkeys(pids, 0)
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            for process in processes:
                grown = process.memory_info().rss - baseline[process.pid]
                growth[process.pid] = max(growth[process.pid], grown)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield growth
    finally:
        stop.set()
        sampler.join(5)


def test_hundred_megabyte_upload_streams_with_flat_proxy_memory(tmp_path: Path) -> None:
    curl = require_tool("curl")
    mesh = Mesh(tmp_path)
    backend = start_backend("sink")
    try:
        sink = mesh.start_proxy("sink", backend.port)
        front = mesh.start_proxy("front", 1)
        with rss_growth([sink.proc.pid, front.proc.pid]) as growth:
            zeros = subprocess.Popen(["head", "-c", str(100 * MB), "/dev/zero"],
                                     stdout=subprocess.PIPE)
            result = subprocess.run(
                [curl, "-sS", "-T", "-", "-H", "Host: sink", f"http://{front.outbound}/upload"],
                stdin=zeros.stdout,
                capture_output=True,
                text=True,
                timeout=240,
            )
            zeros.wait(timeout=10)
        assert result.returncode == 0, result.stderr
        assert '"body_bytes": 104857600' in result.stdout
        assert all(grown < 32 * MB for grown in growth.values()), growth
    finally:
        mesh.stop()
        backend.stop()


def test_hundred_megabyte_download_to_a_slow_client_keeps_proxy_memory_flat(
    tmp_path: Path,
) -> None:
    curl = require_tool("curl")
    mesh = Mesh(tmp_path)
    backend = start_backend("source")
    try:
        source = mesh.start_proxy("source", backend.port)
        front = mesh.start_proxy("front", 1)
        # the app writes as fast as it can; the client reads at 40 MB/s: without
        # backpressure the difference would pile up in the proxies
        with rss_growth([source.proc.pid, front.proc.pid]) as growth:
            result = subprocess.run(
                [curl, "-sS", "-o", "/dev/null", "-w", "%{size_download}", "--limit-rate", "40M",
                 "-H", "Host: source", f"http://{front.outbound}/_bytes/{100 * MB}"],
                capture_output=True,
                text=True,
                timeout=240,
            )
        assert result.returncode == 0, result.stderr
        assert result.stdout == str(100 * MB)
        assert all(grown < 32 * MB for grown in growth.values()), growth
    finally:
        mesh.stop()
        backend.stop()


def test_sigterm_finishes_the_request_in_flight_then_exits(tmp_path: Path) -> None:
    mesh = Mesh(tmp_path)
    backend = start_backend("slow", delay=1.5)
    try:
        mesh.start_proxy("slow", backend.port)
        front = mesh.start_proxy("front", 1)
        answers: list[httpx.Response] = []
        client = threading.Thread(
            target=lambda: answers.append(
                httpx.get(f"http://{front.outbound}/work", headers={"host": "slow"}, timeout=30)
            )
        )
        client.start()
        with front.admin() as admin:
            deadline = time.monotonic() + 10
            while admin.get("/v1/stats").json()["in_flight"] != 1:
                assert time.monotonic() < deadline, "the request never got in flight"
                time.sleep(0.02)
        assert front.stop() == 0
        client.join(30)
        assert answers and answers[0].status_code == 200
        assert answers[0].json()["name"] == "slow"
        front.wait_for_log(lambda entry: entry.get("msg") == "stopped")
    finally:
        mesh.stop()
        backend.stop()


def _read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length body."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:")))
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_sigterm_closes_idle_client_connections_after_a_grace_and_busy_ones_after_their_response(
    tmp_path: Path,
) -> None:
    mesh = Mesh(tmp_path)
    backend = start_backend("web")
    try:
        mesh.start_proxy("web", backend.port)
        front = mesh.start_proxy("front", 1)
        host, port = front.outbound.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=10) as idle:
            idle.sendall(b"GET /first HTTP/1.1\r\nHost: web\r\n\r\n")
            assert _read_response(idle).startswith(b"HTTP/1.1 200 ")  # now idle, kept alive
            httpx.post(f"http://127.0.0.1:{backend.port}/_control", json={"delay": 1.5})
            answers: list[httpx.Response] = []
            busy = threading.Thread(
                target=lambda: answers.append(
                    httpx.get(f"http://{front.outbound}/slow", headers={"host": "web"},
                              timeout=30)
                )
            )
            busy.start()
            with front.admin() as admin:
                wait_until(lambda: admin.get("/v1/stats").json()["in_flight"] == 1,
                           what="the slow request in flight")
                front.proc.send_signal(signal.SIGTERM)
                assert idle.recv(65536) == b""  # closed by the proxy (after DRAIN_IDLE_GRACE_S)...
                # ... while the busy request is still being answered
                assert admin.get("/v1/stats").json()["in_flight"] == 1
        busy.join(30)
        assert answers[0].status_code == 200
        assert answers[0].headers["connection"] == "close"
        assert front.proc.wait(timeout=30) == 0
    finally:
        mesh.stop()
        backend.stop()
