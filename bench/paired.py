"""Paired runs: two builds of vmesh, loaded in turn, so that a change's effect can be seen.

    .venv/bin/python bench/paired.py --base DIR [--rounds 6] [--duration 6]

`DIR` is another checkout of vmesh with its own built `.venv` (the build before a
change), for instance:

    git worktree add /tmp/vmesh-base HEAD~1 && make -C /tmp/vmesh-base venv

Each build runs its own pair of proxies (`front` -> mTLS -> `web`) in front of one
fixed backend (HAProxy answering from memory). Every round loads each pair in turn
at c=32 and then at c=1, the order alternating from round to round, so the two
builds see the same machine: runs minutes apart on a small VM differ by a third,
runs interleaved like this agree within a few percent (run a build against itself
to see how close on this machine). Prints, per build, the medians over the rounds
of rps and both proxies' CPU per request at c=32 and of p50 at c=1, each round's
figures, and this tree's figures as a ratio of the base's, taken within each round.
A benchmark, not a test.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
from compare import (
    REPO,
    TD,
    free_port,
    issue,
    stop_processes,
    wait_port,
    write_endpoints,
    write_service_file,
    wrk,
)

from identity import castate

FIGURES = ("rps", "cpu_us", "p50_ms")
LABELS = {
    "rps": "rps at c=32",
    "cpu_us": "CPU us per request at c=32, both proxies",
    "p50_ms": "p50 ms at c=1",
}


def start_pair(tree: Path, work: Path, ca: castate.CertificateAuthority, backend_port: int,
               procs: list[subprocess.Popen]) -> tuple[str, list[psutil.Process]]:
    """A `front` and a `web` proxy of the build in `tree`, its state under `work`: the URL
    that reaches the backend through both, and the two processes."""
    (work / "etc/vmesh").mkdir(parents=True)
    (work / "etc/vmesh/mesh.toml").write_text('[discovery]\nbackend = "static"\n')
    env = {**os.environ, "VMESH_ROOT": str(work)}
    processes, url = [], ""
    for name, app_port in (("web", backend_port), ("front", 1)):
        issue(ca, name, work / "var/lib/vmesh" / name)
        inbound, outbound = free_port(), free_port()
        write_service_file(work, name, app_port, inbound, outbound)
        if name == "web":
            write_endpoints(work, {"web": inbound})
        proc = subprocess.Popen(
            [str(tree / ".venv/bin/python"), "-m", "vm_mesh", "proxy", "run", name],
            cwd=tree, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        processes.append(psutil.Process(proc.pid))
        wait_port(outbound)
        url = f"http://127.0.0.1:{outbound}/"
    return url, processes


def cpu_seconds(processes: list[psutil.Process]) -> float:
    return sum(p.cpu_times().user + p.cpu_times().system for p in processes)


def load(url: str, processes: list[psutil.Process], duration: int) -> dict[str, float]:
    """One c=32 run (rps, CPU per request) and one c=1 run (p50) of a pair."""
    before = cpu_seconds(processes)
    busy = wrk(url, 32, duration, "web")
    used = cpu_seconds(processes) - before
    if busy["errors"]:
        sys.exit(f"{url}: {busy['errors']:.0f} non-2xx responses; the figures would mean nothing")
    quiet = wrk(url, 1, max(2, duration * 2 // 3), "web")
    return {
        "rps": busy["rps"],
        "cpu_us": 1e6 * used / max(busy["rps"] * duration, 1),
        "p50_ms": quiet["p50_ms"],
    }


def report(rounds: list[dict[str, dict[str, float]]], builds: dict[str, Path]) -> str:
    lines = [f"{len(rounds)} paired rounds; base: {builds['base']}, this tree: {builds['this']}"]
    for figure in FIGURES:
        lines.append(f"\n{LABELS[figure]}")
        for build in builds:
            each = [one[build][figure] for one in rounds]
            lines.append(f"  {build:<6}{statistics.median(each):>10.3f}   (rounds: "
                         + ", ".join(f"{v:.3f}" for v in each) + ")")
        ratios = [one["this"][figure] / one["base"][figure] for one in rounds]
        lines.append(f"  this/base{statistics.median(ratios):>7.3f}   (rounds: "
                     + ", ".join(f"{r:.3f}" for r in ratios) + ")")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True,
                        help="a checkout of vmesh with a built .venv: the build to compare with")
    parser.add_argument("--rounds", type=int, default=6, help="paired rounds (default 6)")
    parser.add_argument("--duration", type=int, default=6, help="seconds of each c=32 run")
    args = parser.parse_args()
    base = args.base.resolve()
    if not (base / ".venv/bin/python").exists():
        sys.exit(f"{base} has no .venv: build it first (make -C {base} venv)")
    for tool in ("wrk", "haproxy"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (scripts/install-system-deps.sh installs it)")
    builds = {"base": base, "this": REPO}
    work = Path(tempfile.mkdtemp(prefix="vmesh-paired-"))
    procs: list[subprocess.Popen] = []
    try:
        castate.init(work / "identity", TD)
        ca = castate.load(work / "identity")
        backend_port = free_port()
        (work / "backend.cfg").write_text(
            "global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode http\n  timeout client 30s\n"
            "  timeout server 30s\n  timeout connect 2s\n"
            f"frontend fixed\n  bind 127.0.0.1:{backend_port}\n"
            '  http-request return status 200 content-type text/plain string "hello, mesh\\n"\n'
        )
        procs.append(subprocess.Popen(["haproxy", "-f", str(work / "backend.cfg")]))
        wait_port(backend_port)
        pairs = {build: start_pair(tree, work / build, ca, backend_port, procs)
                 for build, tree in builds.items()}
        for url, _ in pairs.values():
            wrk(url, 8, 2, "web")  # warm up the pools and the allocator
        rounds: list[dict[str, dict[str, float]]] = []
        for number in range(args.rounds):
            order = ["base", "this"] if number % 2 == 0 else ["this", "base"]
            rounds.append({build: load(*pairs[build], args.duration) for build in order})
            print(f"round {number + 1}: " + ", ".join(
                f"{build} {rounds[-1][build]['rps']:.0f} rps" for build in order), flush=True)
        print()
        print(report(rounds, builds))
    finally:
        stop_processes(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
