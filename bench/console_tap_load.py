"""Benchmark: `vmesh console` fed 1,000 tap events/s stays responsive with flat memory.

Runs the console in a real terminal (tmux, 80x24) on the tap view while admin
APIs stream tap events at the given total rate, and measures:

- key-to-redraw latency: a view switch key is sent with tmux and the screen is
  polled (every ~5 ms) until the new view's title shows; an upper bound, as it
  includes the polling and tmux's own delay;
- CPU of the console process (percent of one core, over the whole run);
- RSS every second: first, last, max, and the growth over the second half.

The sources are the proxy's real admin API with simulated traffic
(tests/console/simulated_proxy.py) until `vmesh proxy run` is on main; then
point it at real proxies.

    .venv/bin/python bench/console_tap_load.py [--rate 1000] [--seconds 60] [--sources 2]
        [--profile FILE]

`--profile FILE` runs the console under cProfile and writes its statistics
to FILE when the run ends (`python -m pstats FILE`); the figures of such a
run include the profiler's overhead.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="tap events/s in total")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--sources", type=int, default=2, help="admin APIs sharing the rate")
    parser.add_argument("--profile", type=Path, metavar="FILE",
                        help="run the console under cProfile, statistics to FILE")
    args = parser.parse_args()
    if not shutil.which("tmux"):
        print("tmux is not installed (scripts/install-system-deps.sh)", file=sys.stderr)
        return 1

    root = Path(tempfile.mkdtemp(prefix="vmb-", dir="/tmp"))
    env = {**os.environ, "VMESH_ROOT": str(root), "PYTHONPATH": str(REPO)}
    (root / "run" / "vmesh").mkdir(parents=True)
    server = f"vmesh-bench-{os.getpid()}"
    admins: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(args.sources):
            name = f"svc{i}"
            tls_dir = root / "var" / "lib" / "vmesh" / name
            tls_dir.mkdir(parents=True)
            admins.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.console.simulated_proxy",
                        "--name",
                        name,
                        "--socket",
                        str(root / "run" / "vmesh" / f"{name}.sock"),
                        "--tls-dir",
                        str(tls_dir),
                        "--rate",
                        str(args.rate / args.sources),
                    ],
                    cwd=REPO,
                    env=env,
                )
            )
        deadline = time.monotonic() + 15
        while (
            time.monotonic() < deadline
            and len(list((root / "run" / "vmesh").glob("*.sock"))) < args.sources
        ):
            time.sleep(0.05)

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
        console.cpu_percent(None)
        cpu_start = sum(console.cpu_times()[:2])

        latencies: list[float] = []
        missed = 0
        rss: list[int] = []
        start = time.monotonic()
        next_key = start + 1.0
        views = [("1", "vmesh > overview"), ("3", "vmesh > tap")]
        k = 0
        while time.monotonic() - start < args.seconds:
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
        elapsed = time.monotonic() - start
        cpu = (sum(console.cpu_times()[:2]) - cpu_start) / elapsed * 100
        screen = tmux(server, "capture-pane", "-p", "-t", "bench")
        received = int(screen.split("| tap ")[1].split()[0]) if "| tap " in screen else -1
        half = rss[len(rss) // 2 :]
        ordered = sorted(latencies)
        result = {
            "rate_per_s": args.rate,
            "seconds": round(elapsed, 1),
            "sources": args.sources,
            "events_received": received,
            "events_per_s_received": round(received / elapsed, 1) if received >= 0 else None,
            "key_to_redraw_ms": {
                "n": len(latencies),
                "missed": missed,
                "p50": round(statistics.median(ordered) * 1000, 1) if ordered else None,
                "p95": round(ordered[int(len(ordered) * 0.95) - 1] * 1000, 1) if ordered else None,
                "max": round(ordered[-1] * 1000, 1) if ordered else None,
            },
            "cpu_percent_of_one_core": round(cpu, 1),
            "rss_mib": {
                "first": round(rss[0] / 2**20, 1),
                "last": round(rss[-1] / 2**20, 1),
                "max": round(max(rss) / 2**20, 1),
                "growth_second_half": round((half[-1] - half[0]) / 2**20, 1),
                "every_10s": [round(r / 2**20, 1) for r in rss[::10]],
            },
        }
        print(json.dumps(result, indent=2))
        if args.profile:  # quit, so that the profiler writes its file
            tmux(server, "send-keys", "-t", "bench", "q")
            psutil.wait_procs([console], timeout=30)
        return 0
    finally:
        tmux(server, "kill-server")
        tmpdir = Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"
        (tmpdir / server).unlink(missing_ok=True)
        for proc in admins:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
