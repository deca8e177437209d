"""Benchmark: `vmesh console` fed 1,000 tap events/s stays responsive with flat memory.

Runs the console in a real terminal (tmux, 80x24) on the tap view while the
proxies' admin APIs stream tap events at the given total rate, and measures:

- key-to-redraw latency: a view switch key is sent with tmux and the screen is
  polled (every ~5 ms) until the new view's title shows; an upper bound, as it
  includes the polling and tmux's own delay;
- CPU of the console process (percent of one core, over the whole run);
- RSS every second: first, last, max, and the growth over the second half.

Sources (`--sources`):

- `real` (default): two real `vmesh proxy run` processes, web -> api over
  mTLS, in front of the test backend (1 request in 10 answers 503), and a
  paced HTTP/1.1 client sending `rate / 2` requests/s to web's outbound
  port: each request is tapped twice (outbound at web, inbound at api). The
  proxies' own CPU is reported too: on a 2-core machine they and the client
  compete with the console for the cores, so its figures are a bound.
- `simulated`: `--admins` processes serving the proxy's real admin API
  (tests/console/simulated_proxy.py) that publish simulated request events
  at `rate / admins` each: the console's load without the data plane's.

    .venv/bin/python bench/console_tap_load.py [--rate 1000] [--seconds 60]
        [--sources real|simulated] [--admins 2] [--profile FILE]

`--profile FILE` runs the console under cProfile and writes its statistics
to FILE when the run ends (`python -m pstats FILE`); the figures of such a
run include the profiler's overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import h11
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the real sources are the test suite's mesh of real proxies

POLL_S = 0.005
KEY_TIMEOUT_S = 5.0


def tmux(server: str, *args: str) -> str:
    return subprocess.run(
        ["tmux", "-L", server, *args], capture_output=True, text=True, check=False, timeout=10
    ).stdout


def wait_screen(server: str, text: str, timeout_s: float) -> float | None:
    """Seconds until `text` is on screen, or None after `timeout_s`."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if text in tmux(server, "capture-pane", "-p", "-t", "bench"):
            return time.perf_counter() - start
        time.sleep(POLL_S)
    return None


class PacedClient:
    """`rate` requests/s for `host` to an HTTP/1.1 proxy port, on keep-alive connections.

    Request n is due at start + n / rate; a late one is sent at once, never
    skipped, so the rate holds while the proxies keep up. Runs its own event
    loop in a thread until `stop()`.
    """

    def __init__(self, address: str, host: str, rate: float, connections: int = 8) -> None:
        self.address, self.host, self.rate, self.connections = address, host, rate, connections
        self.statuses: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)
        self._start = 0.0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    async def _run(self) -> None:
        self._start = time.monotonic()
        await asyncio.gather(*(self._connection(k) for k in range(self.connections)))

    async def _connection(self, first: int) -> None:
        host, port = self.address.rsplit(":", 1)
        stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        n = first
        while not self._stop.is_set():
            delay = self._start + n / self.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                stream = stream or await asyncio.open_connection(host, int(port))
                keep = await self._request(*stream, f"/items/{n % 5}")
            except (OSError, h11.ProtocolError):
                self.statuses["error"] += 1
                keep = False
            if not keep and stream is not None:
                stream[1].close()
                stream = None
            n += self.connections
        if stream is not None:
            stream[1].close()

    async def _request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                       path: str) -> bool:
        """One request and its response; whether the connection stays open."""
        conn = h11.Connection(h11.CLIENT)
        writer.write(conn.send(h11.Request(method="GET", target=path,
                                           headers=[("host", self.host)])))
        writer.write(conn.send(h11.EndOfMessage()))
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Response):
                self.statuses[str(event.status_code)] += 1
            elif isinstance(event, h11.EndOfMessage):
                return conn.their_state is not h11.MUST_CLOSE
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionError("closed before the response ended")


@contextlib.contextmanager
def real_sources(root: Path, rate: float) -> Iterator[tuple[list[int], PacedClient]]:
    """web -> api (real proxies, mTLS) in front of the test backend, with paced traffic.

    Yields the proxies' PIDs and the client sending `rate / 2` requests/s.
    """
    from tests.integration.mesh import Mesh
    from tests.integration.processes import start_backend

    mesh = Mesh(root)
    backend = start_backend("api", fail_every=10, status=503)
    client = None
    try:
        mesh.start_proxy("api", backend.port)
        web = mesh.start_proxy("web", 1)
        client = PacedClient(web.outbound, "api", rate / 2)
        client.start()
        yield [p.proc.pid for p in mesh.proxies], client
    finally:
        if client is not None:
            client.stop()
        mesh.stop()
        backend.stop()


@contextlib.contextmanager
def simulated_sources(root: Path, rate: float, count: int) -> Iterator[list[int]]:
    """`count` admin API processes publishing simulated request events; yields their PIDs."""
    env = {**os.environ, "VMESH_ROOT": str(root), "PYTHONPATH": str(REPO)}
    sockets = root / "run" / "vmesh"
    sockets.mkdir(parents=True)
    admins: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(count):
            tls_dir = root / "var" / "lib" / "vmesh" / f"svc{i}"
            tls_dir.mkdir(parents=True)
            admins.append(subprocess.Popen(
                [sys.executable, "-m", "tests.console.simulated_proxy", "--name", f"svc{i}",
                 "--socket", str(sockets / f"svc{i}.sock"), "--tls-dir", str(tls_dir),
                 "--rate", str(rate / count)], cwd=REPO, env=env))
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(list(sockets.glob("*.sock"))) < count:
            time.sleep(0.05)
        yield [p.pid for p in admins]
    finally:
        for proc in admins:
            proc.kill()
            proc.wait()


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def measure(server: str, console: psutil.Process, seconds: float) -> dict[str, object]:
    """Switch views every 2 s and time each redraw; sample the console's RSS every second."""
    latencies: list[float] = []
    missed = 0
    rss: list[int] = []
    start = time.monotonic()
    next_key = start + 1.0
    views = [("1", "vmesh > overview"), ("3", "vmesh > tap")]
    k = 0
    while time.monotonic() - start < seconds:
        now = time.monotonic()
        if len(rss) < int(now - start) + 1:
            rss.append(console.memory_info().rss)
        if now >= next_key:
            key, title = views[k % 2]
            k += 1
            tmux(server, "send-keys", "-t", "bench", key)
            took = wait_screen(server, title, KEY_TIMEOUT_S)
            if took is None:
                missed += 1
            else:
                latencies.append(took)
            next_key = time.monotonic() + 2.0
        time.sleep(0.05)
    ordered = sorted(latencies)
    half = rss[len(rss) // 2:]
    return {
        "key_to_redraw_ms": {
            "n": len(latencies),
            "missed": missed,
            "p50": round(statistics.median(ordered) * 1000, 1) if ordered else None,
            "p95": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 1) if ordered else None,
            "max": round(ordered[-1] * 1000, 1) if ordered else None,
        },
        "rss_mib": {
            "first": round(rss[0] / 2**20, 1),
            "last": round(rss[-1] / 2**20, 1),
            "max": round(max(rss) / 2**20, 1),
            "growth_second_half": round((half[-1] - half[0]) / 2**20, 1),
            "every_10s": [round(r / 2**20, 1) for r in rss[::10]],
        },
    }


def run_console(server: str, root: Path, sources: list[int], args: argparse.Namespace,
                client: PacedClient | None) -> int:
    profiler = ""
    if args.profile:
        profiler = f"-m cProfile -o {shlex.quote(str(args.profile.resolve()))}"
    command = (
        f"cd {shlex.quote(str(REPO))} && exec env VMESH_ROOT={shlex.quote(str(root))} "
        f"TERM=xterm-256color {shlex.quote(sys.executable)} {profiler} -m vm_mesh console "
        "--view tap"
    )
    tmux(server, "new-session", "-d", "-s", "bench", "-x", "80", "-y", "24", command)
    if wait_screen(server, "vmesh > tap", 20) is None:
        print("the console did not start", file=sys.stderr)
        return 1
    pid = int(tmux(server, "list-panes", "-t", "bench", "-F", "#{pane_pid}").split()[0])
    console = psutil.Process(pid)
    cpu_start, sources_start = cpu_seconds([pid]), cpu_seconds(sources)
    sent_start = sum(client.statuses.values()) if client else 0
    start = time.monotonic()
    figures = measure(server, console, args.seconds)
    elapsed = time.monotonic() - start
    cpu = (cpu_seconds([pid]) - cpu_start) / elapsed * 100
    screen = tmux(server, "capture-pane", "-p", "-t", "bench")
    received = int(screen.split("| tap ")[1].split()[0]) if "| tap " in screen else -1
    result: dict[str, object] = {
        "sources": args.sources,
        "rate_per_s": args.rate,
        "seconds": round(elapsed, 1),
        "events_received": received,
        "events_per_s_received": round(received / elapsed, 1) if received >= 0 else None,
        **figures,
        "cpu_percent_of_one_core": round(cpu, 1),
        "sources_cpu_percent_of_one_core": round(
            (cpu_seconds(sources) - sources_start) / elapsed * 100, 1),
    }
    if client is not None:
        result["requests_per_s_sent"] = round(
            (sum(client.statuses.values()) - sent_start) / elapsed, 1)
        result["responses"] = dict(client.statuses)
    print(json.dumps(result, indent=2))
    if args.profile:  # quit, so that the profiler writes its file
        tmux(server, "send-keys", "-t", "bench", "q")
        psutil.wait_procs([console], timeout=30)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="tap events/s in total")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sources", choices=("real", "simulated"), default="real",
                        help="real proxies with traffic, or simulated admin APIs")
    parser.add_argument("--admins", type=int, default=2,
                        help="simulated admin APIs sharing the rate (--sources simulated)")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="run the console under cProfile, statistics to FILE")
    args = parser.parse_args()
    if not shutil.which("tmux"):
        print("tmux is not installed (scripts/install-system-deps.sh)", file=sys.stderr)
        return 1

    root = Path(tempfile.mkdtemp(prefix="vmb-", dir="/tmp"))
    server = f"vmesh-bench-{os.getpid()}"
    try:
        if args.sources == "real":
            with real_sources(root, args.rate) as (pids, client):
                return run_console(server, root, pids, args, client)
        with simulated_sources(root, args.rate, args.admins) as pids:
            return run_console(server, root, pids, args, None)
    finally:
        tmux(server, "kill-server")
        tmpdir = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (tmpdir / server).unlink(missing_ok=True)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
