"""Benchmark: vmesh against a direct connection and against HAProxy doing the same job.

    .venv/bin/python bench/compare.py [--duration 10] [--rounds 3]

One run on this machine, loopback only, every load bounded by wrk's duration,
all paths measured once per round, rounds back to back:

- direct:        wrk -> fixed backend
- vmesh 1 hop:   wrk -> vmesh outbound -> mTLS -> fixed TLS backend (the one proxy on the path)
- haproxy 1 hop: wrk -> haproxy -> mTLS (same certificates) -> fixed TLS backend
- vmesh 2 hops:  wrk -> vmesh outbound -> mTLS -> vmesh inbound -> fixed backend
- haproxy 2 hops: wrk -> haproxy -> mTLS (ECDSA P-256, same CA) -> haproxy -> fixed backend,
  one HAProxy process per hop as sidecars run (and as vmesh's two proxies run here)
- haproxy 2 hops 1 proc: the same two hops served by one HAProxy process, for reference:
  its mTLS hop never has to wake another process, which no pair of sidecars can match
- floor 2 hops:  wrk -> bench/floor.py -> mTLS -> bench/floor.py -> fixed backend: the least
  a pair of Python proxies on vmesh's libraries can do (no routing, policy or metrics), so
  vmesh/floor is what vmesh's own layers cost and floor/haproxy what Python costs
- floor + tasks: the same with each client connection served by a task, as vmesh serves
  it (`bench/floor.py --tasks`): of vmesh's cost above the floor, what waking tasks takes
- vmesh 2 hops with a tap subscriber attached, measured right before or after the
  untapped run at c=32 (alternately), so the two see the same machine

The fixed backend is HAProxy answering from memory (`http-request return`), so
every path ends at the same server; the 1-hop paths end at its TLS frontend, which
holds a mesh certificate (`svc/origin`) and asks for the caller's, as a vmesh
inbound proxy would. Each proxy runs one thread (HAProxy
`nbthread 1`, vmesh is one asyncio process). Prints rps, p50/p99 at c=1 and
c=32, proxy CPU (cores, and microseconds of CPU per request: steadier than rps on a
shared machine) and RSS, and the ratios. A small VM swings by a third between
minutes, so each ratio is taken within one round and the median over the rounds
is reported next to every round's own. A benchmark, not a test.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import hops  # noqa: E402  (bench/, beside this script)

from identity import castate, pki  # noqa: E402

TD = "vmesh.local"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def request_path_build() -> str:
    """Whether the proxies run the request path compiled (setup.py) or as pure Python."""
    compiled = list((REPO / "proxy").glob("http1.cpython-*.so"))
    return "compiled with mypyc" if compiled else "pure Python (not compiled)"


def wait_port(port: int, within: float = 20) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def issue(ca: castate.CertificateAuthority, name: str, directory: Path) -> Path:
    key = pki.generate_key()
    leaf = pki.issue_leaf(
        ca.active,
        key.public_key(),
        spiffe_id=f"spiffe://{TD}/svc/{name}",
        common_name=name,
        trust_domain=TD,
    )
    pki.write_private(directory / "key.pem", pki.key_pem(key))
    pki.write_file(directory / "cert.pem", pki.cert_pem(leaf, ca.active.cert))
    pki.write_file(directory / "bundle.pem", pki.cert_pem(*ca.bundle))
    # HAProxy wants chain and key in one file
    pki.write_private(
        directory / "haproxy.pem", pki.cert_pem(leaf, ca.active.cert) + pki.key_pem(key)
    )
    return directory


HAPROXY_GLOBAL = (
    "global\n  nbthread 1\n  maxconn 4000\n  ssl-default-bind-options ssl-min-ver TLSv1.2\n"
    "defaults\n  mode http\n  timeout client 30s\n  timeout server 30s\n"
    "  timeout connect 2s\n  http-reuse always\n"
)


def haproxy_front(name: str, listen: int, peer: int, certs: Path) -> str:
    """An HAProxy outbound hop: plain HTTP on `listen`, sent over mTLS to `peer`."""
    return (
        f"frontend {name}\n  bind 127.0.0.1:{listen}\n  default_backend to_{name}\n"
        f"backend to_{name}\n  server peer 127.0.0.1:{peer} ssl crt {certs}/haproxy.pem "
        f"ca-file {certs}/bundle.pem verify required alpn http/1.1\n"
    )


def haproxy_back(name: str, listen: int, app: int, certs: Path) -> str:
    """An HAProxy inbound hop: mTLS on `listen` (client certificate required), to `app`."""
    return (
        f"frontend {name}\n  bind 127.0.0.1:{listen} ssl crt {certs}/haproxy.pem "
        f"ca-file {certs}/bundle.pem verify required\n  default_backend app_{name}\n"
        f"backend app_{name}\n  server app 127.0.0.1:{app}\n"
    )


def write_service_file(work: Path, name: str, app_port: int, inbound: int, outbound: int) -> None:
    """The service file of a bench proxy: its app, and its listeners on loopback."""
    path = work / "etc/vmesh/services" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'service = "{name}"\napp_port = {app_port}\ninstance_id = "{name}-1"\n'
        f'[listen]\ninbound = "127.0.0.1:{inbound}"\n'
        f'outbound = "127.0.0.1:{outbound}"\nadmin = "127.0.0.1:0"\n'
    )


def write_endpoints(work: Path, ports: dict[str, int]) -> None:
    """The static discovery file: one instance, `<service>-1` on loopback, of each service."""
    (work / "etc/vmesh/endpoints.toml").write_text("".join(
        f'[[instance]]\nservice = "{service}"\nid = "{service}-1"\naddress = "127.0.0.1"\n'
        f"port = {port}\n"
        for service, port in ports.items()
    ))


def floor_pair(front: int, back: int, app: int, front_certs: Path, back_certs: Path,
               *options: str) -> list[subprocess.Popen]:
    """The two processes of a floor path (bench/floor.py): back first, then front."""
    return [
        subprocess.Popen([sys.executable, str(REPO / "bench/floor.py"), role, str(listen),
                          str(upstream), str(certs), *options])
        for role, listen, upstream, certs in (("back", back, app, back_certs),
                                              ("front", front, back, front_certs))
    ]


def stop_processes(procs: list[subprocess.Popen]) -> None:
    """SIGTERM to each, then wait for each (killed after 20 s)."""
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


WRK_LATENCY = re.compile(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$", re.M)
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, connections: int, seconds: int, host: str | None = None) -> dict[str, float]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if host:
        args += ["-H", f"Host: {host}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    latency = {p: float(v) * UNIT_MS[u] for p, v, u in WRK_LATENCY.findall(out)}
    return {
        "rps": rps,
        "p50_ms": latency.get("50", float("nan")),
        "p99_ms": latency.get("99", float("nan")),
        "errors": int(errors.group(1)) if errors else 0,
    }


def profile(pids: list[int], directory: Path, seconds: int) -> list[subprocess.Popen]:
    """py-spy recorders for `pids`, one collapsed-stack file each, running for `seconds`."""
    if not shutil.which("py-spy"):
        sys.exit("py-spy is not installed (pip install -e '.[bench]')")
    directory.mkdir(parents=True, exist_ok=True)
    return [
        subprocess.Popen(
            ["py-spy", "record", "--format", "raw", "--rate", "250", "--duration", str(seconds),
             "--output", str(directory / f"proxy-{pid}.txt"), "--pid", str(pid), "--nonblocking"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid in pids
    ]


def measure(url: str, connections: int, seconds: int, host: str | None,
            pids: list[int]) -> dict[str, float]:
    """One wrk run with the CPU and memory of `pids` over it."""
    usage = Usage(pids)
    run = wrk(url, connections, seconds, host)
    run.update(usage.done())
    run["cpu_us_per_request"] = 1e6 * run["cpu_seconds"] / max(run["rps"] * seconds, 1)
    return run


def tapped_run(work: Path, url: str, pids: list[int], seconds: int) -> dict[str, float]:
    """vmesh at c=32 while an operator follows every event. The follower is curl, which costs
    next to no CPU, so the figure is the proxy's cost of being tapped rather than the reading
    client's on the same two cores."""
    tapped = work / "tap.ndjson"
    follower = subprocess.Popen(
        ["curl", "-sN", "--unix-socket", str(work / "run/vmesh/front.sock"),
         "-o", str(tapped), "http://admin/v1/tap?rate=10000"]
    )
    try:
        run = measure(url, 32, seconds, "web", pids)
    finally:
        follower.terminate()
        follower.wait(timeout=10)
    run["tap_events"] = sum(1 for line in tapped.read_text().splitlines() if '"id"' in line)
    return run


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """Each figure's median over the rounds (errors: their sum)."""
    merged = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    merged["errors"] = sum(run["errors"] for run in runs)
    return merged


def round_ratios(one: dict[str, dict[str, dict[str, float]]]) -> dict[str, float]:
    """The issue's ratios within one round."""
    v, h, d = one["vmesh 2 hops mTLS"], one["haproxy 2 hops mTLS"], one["direct"]
    h_pair = one["haproxy 2 hops 1 proc"]
    v1, h1 = one["vmesh 1 hop mTLS"], one["haproxy 1 hop mTLS"]
    f, f_tasks = one["floor 2 hops mTLS"], one["floor + tasks"]
    tapped = one["vmesh 2 hops + tap"]["c=32"]

    def added_p50_ratio(vmesh: dict[str, dict[str, float]],
                        haproxy: dict[str, dict[str, float]]) -> float:
        """The p50 vmesh adds over direct at c=1, as a multiple of what HAProxy adds."""
        added_vmesh = vmesh["c=1"]["p50_ms"] - d["c=1"]["p50_ms"]
        added_haproxy = haproxy["c=1"]["p50_ms"] - d["c=1"]["p50_ms"]
        return added_vmesh / added_haproxy if added_haproxy > 0 else float("inf")

    return {
        "vmesh/haproxy rps at c=32 (target >= 0.50)": v["c=32"]["rps"] / h["c=32"]["rps"],
        "p50 added over direct at c=1, vmesh/haproxy (target <= 2.0)": added_p50_ratio(v, h),
        "same, haproxy's 2 hops in 1 process: rps at c=32": v["c=32"]["rps"]
        / h_pair["c=32"]["rps"],
        "same, haproxy's 2 hops in 1 process: p50 added at c=1": added_p50_ratio(v, h_pair),
        "1 hop: vmesh/haproxy rps at c=32": v1["c=32"]["rps"] / h1["c=32"]["rps"],
        "1 hop: p50 added over direct at c=1, vmesh/haproxy": added_p50_ratio(v1, h1),
        "tap attached rps cost (target <= 0.10)": 1 - tapped["rps"] / v["c=32"]["rps"],
        "tap attached CPU per request cost": tapped["cpu_us_per_request"]
        / v["c=32"]["cpu_us_per_request"] - 1,
        "floor/haproxy rps at c=32 (bare Python proxies)": f["c=32"]["rps"] / h["c=32"]["rps"],
        "vmesh/floor CPU per request at c=32 (vmesh's layers)": v["c=32"]["cpu_us_per_request"]
        / f["c=32"]["cpu_us_per_request"],
        "floor+tasks/floor CPU per request at c=32 (waking tasks)":
        f_tasks["c=32"]["cpu_us_per_request"] / f["c=32"]["cpu_us_per_request"],
        "floor+tasks/floor p50 at c=1 (waking tasks)": f_tasks["c=1"]["p50_ms"]
        / f["c=1"]["p50_ms"],
    }


class Usage:
    """CPU seconds and peak RSS of some processes over a measurement."""

    def __init__(self, pids: list[int]) -> None:
        self.processes = [psutil.Process(p) for p in pids]
        self.cpu0 = sum(p.cpu_times().user + p.cpu_times().system for p in self.processes)
        self.t0 = time.monotonic()
        self.peak_rss = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_rss = max(self.peak_rss, max(p.memory_info().rss for p in self.processes))
            time.sleep(0.1)

    def done(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        cpu = sum(p.cpu_times().user + p.cpu_times().system for p in self.processes) - self.cpu0
        return {
            "cpu_cores": cpu / (time.monotonic() - self.t0),
            "cpu_seconds": cpu,
            "peak_rss_mb": self.peak_rss / 2**20,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="measure every path this many times, interleaved (default 3)")
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record py-spy profiles (collapsed stacks) of both vmesh proxies at c=32 into DIR",
    )
    parser.add_argument(
        "--hops",
        action="store_true",
        help="after the rounds, time each hop of the 2-hop paths at c=1 from packet stamps "
        "(tcpdump; see bench/hops.py)",
    )
    args = parser.parse_args()
    for tool in ("wrk", "haproxy", "curl") + (("tcpdump",) if args.hops else ()):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed (scripts/install-system-deps.sh installs it)")
    work = Path(tempfile.mkdtemp(prefix="vmesh-bench-"))
    procs: list[subprocess.Popen] = []
    try:
        ca_dir = work / "var/lib/vmesh/identity"
        castate.init(ca_dir, TD)
        ca = castate.load(ca_dir)
        backend_port, ha_front, ha_mtls = free_port(), free_port(), free_port()
        tls_backend_port, ha_one_hop = free_port(), free_port()
        ha_pair_front, ha_pair_mtls = free_port(), free_port()
        floor_front, floor_back = free_port(), free_port()
        tasks_front, tasks_back = free_port(), free_port()
        ha_a = issue(ca, "front", work / "ha-a")
        ha_b = issue(ca, "web", work / "ha-b")
        origin = issue(ca, "origin", work / "origin")
        fixed_answer = (
            '  http-request return status 200 content-type text/plain string "hello, mesh\\n"\n'
        )
        (work / "backend.cfg").write_text(
            "global\n  nbthread 1\n  maxconn 4000\ndefaults\n  mode http\n  timeout client 30s\n"
            "  timeout server 30s\n  timeout connect 2s\n"
            f"frontend fixed\n  bind 127.0.0.1:{backend_port}\n{fixed_answer}"
            f"frontend fixed_tls\n  bind 127.0.0.1:{tls_backend_port} ssl crt {origin}/haproxy.pem "
            f"ca-file {origin}/bundle.pem verify required alpn http/1.1\n{fixed_answer}"
        )
        # the sidecar layout, as vmesh runs: one process per hop (each `nbthread 1`)
        (work / "sidecar-a.cfg").write_text(
            HAPROXY_GLOBAL + haproxy_front("a", ha_front, ha_mtls, ha_a)
            + f"frontend one_hop\n  bind 127.0.0.1:{ha_one_hop}\n  default_backend to_origin\n"
            f"backend to_origin\n  server origin 127.0.0.1:{tls_backend_port} ssl crt "
            f"{ha_a}/haproxy.pem ca-file {ha_a}/bundle.pem verify required alpn http/1.1\n"
        )
        (work / "sidecar-b.cfg").write_text(
            HAPROXY_GLOBAL + haproxy_back("b", ha_mtls, backend_port, ha_b)
        )
        # both hops in one process: the mTLS hop never wakes another process
        (work / "pair.cfg").write_text(
            HAPROXY_GLOBAL + haproxy_front("a", ha_pair_front, ha_pair_mtls, ha_a)
            + haproxy_back("b", ha_pair_mtls, backend_port, ha_b)
        )
        backend = subprocess.Popen(["haproxy", "-f", str(work / "backend.cfg")])
        procs.append(backend)
        wait_port(backend_port)

        env = {**os.environ, "VMESH_ROOT": str(work)}
        mesh_toml = work / "etc/vmesh/mesh.toml"
        mesh_toml.parent.mkdir(parents=True, exist_ok=True)
        mesh_toml.write_text('[discovery]\nbackend = "static"\n')  # etc/vmesh/endpoints.toml
        vmesh_ports, inbound_ports = {}, {}
        for name, app_port in (("web", backend_port), ("front", 1)):
            issue(ca, name, work / "var/lib/vmesh" / name)
            out = free_port()
            vmesh_ports[name] = out
            inbound = inbound_ports[name] = free_port()
            write_service_file(work, name, app_port, inbound, out)
            if name == "web":
                write_endpoints(work, {"web": inbound, "origin": tls_backend_port})
            proc = subprocess.Popen(
                [sys.executable, "-m", "vm_mesh", "proxy", "run", name],
                cwd=REPO,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(proc)
            wait_port(out)
        web_proxy, front_proxy = procs[-2:]
        vmesh_pids = [web_proxy.pid, front_proxy.pid]
        time.sleep(1)
        idle_rss = [psutil.Process(p).memory_info().rss / 2**20 for p in vmesh_pids]
        # USS: the pages only this proxy holds (shared libraries counted once per host)
        idle_uss = [psutil.Process(p).memory_full_info().uss / 2**20 for p in vmesh_pids]
        sidecars = [subprocess.Popen(["haproxy", "-f", str(work / f"sidecar-{side}.cfg")])
                    for side in "ab"]
        haproxy_pair = subprocess.Popen(["haproxy", "-f", str(work / "pair.cfg")])
        procs.extend([*sidecars, haproxy_pair])
        for port in (ha_front, ha_mtls, ha_pair_front):
            wait_port(port)
        floor = floor_pair(floor_front, floor_back, backend_port, ha_a, ha_b)
        tasks_floor = floor_pair(tasks_front, tasks_back, backend_port, ha_a, ha_b, "--tasks")
        procs.extend(floor + tasks_floor)
        for port in (floor_back, floor_front, tasks_back, tasks_front):
            wait_port(port)
        floor_url = f"http://127.0.0.1:{floor_front}/"
        tasks_floor_url = f"http://127.0.0.1:{tasks_front}/"

        vmesh_url = f"http://127.0.0.1:{vmesh_ports['front']}/"
        # every path must answer 200 before it is measured: errors are fast and would flatter it
        for url, host in ((vmesh_url, "web"), (vmesh_url, "origin"),
                          (f"http://127.0.0.1:{ha_front}/", None),
                          (f"http://127.0.0.1:{ha_one_hop}/", None), (floor_url, None),
                          (tasks_floor_url, None),
                          (f"http://127.0.0.1:{ha_pair_front}/", None)):
            answer = httpx.get(url, headers={"Host": host} if host else None, timeout=10)
            if answer.status_code != 200:
                sys.exit(f"{url} (Host: {host}) answers {answer.status_code}: {answer.text}")
            wrk(url, 4, 1, host)  # warm up keep-alive pools on both sides

        paths = {
            "direct": (f"http://127.0.0.1:{backend_port}/", None, [backend.pid]),
            "vmesh 1 hop mTLS": (vmesh_url, "origin", [front_proxy.pid]),
            "haproxy 1 hop mTLS": (f"http://127.0.0.1:{ha_one_hop}/", None, [sidecars[0].pid]),
            "vmesh 2 hops mTLS": (vmesh_url, "web", vmesh_pids),
            "haproxy 2 hops mTLS": (f"http://127.0.0.1:{ha_front}/", None,
                                    [p.pid for p in sidecars]),
            "haproxy 2 hops 1 proc": (f"http://127.0.0.1:{ha_pair_front}/", None,
                                      [haproxy_pair.pid]),
            "floor 2 hops mTLS": (floor_url, None, [p.pid for p in floor]),
            "floor + tasks": (tasks_floor_url, None, [p.pid for p in tasks_floor]),
        }
        rounds: list[dict[str, dict[str, dict[str, float]]]] = []
        for number in range(args.rounds):
            measured: dict[str, dict[str, dict[str, float]]] = {}
            for label, (url, host, pids) in paths.items():
                measured[label] = {}
                for connections in (1, 32):
                    profiling = (
                        profile(pids, args.profile, args.duration)
                        if args.profile and number == 0 and label.startswith("vmesh")
                        and connections == 32 else []
                    )
                    # the tapped run right next to the untapped one (alternately before and
                    # after it), so that both see the same machine
                    tapped = label == "vmesh 2 hops mTLS" and connections == 32
                    if tapped and number % 2:
                        measured["vmesh 2 hops + tap"] = {
                            "c=32": tapped_run(work, vmesh_url, vmesh_pids, args.duration)}
                    run = measure(url, connections, args.duration, host, pids)
                    for recorder in profiling:
                        recorder.wait(timeout=60)
                    measured[label][f"c={connections}"] = run
                    if tapped and not number % 2:
                        measured["vmesh 2 hops + tap"] = {
                            "c=32": tapped_run(work, vmesh_url, vmesh_pids, args.duration)}
            rounds.append(measured)

        results = {label: {conns: median_run([r[label][conns] for r in rounds])
                           for conns in runs} for label, runs in rounds[0].items()}
        print(
            f"\nvmesh benchmark, {args.rounds} rounds of {args.duration}s per run (medians; "
            f"rps range over the rounds), wrk -t1, loopback, this machine "
            f"({os.cpu_count()} cores); vmesh's request path {request_path_build()}\n"
        )
        print(
            f"{'path':<22}{'conns':>6}{'rps':>10}{'rps range':>16}{'p50 ms':>9}{'p99 ms':>9}"
            f"{'cpu cores':>11}{'cpu us/req':>12}{'peak RSS MB':>13}{'non-2xx':>9}"
        )
        for label, runs in results.items():
            for conns, r in runs.items():
                spread = [one[label][conns]["rps"] for one in rounds]
                print(
                    f"{label:<22}{conns:>6}{r['rps']:>10.0f}"
                    f"{f'{min(spread):.0f}-{max(spread):.0f}':>16}"
                    f"{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                    f"{r['cpu_cores']:>11.2f}{r['cpu_us_per_request']:>12.0f}"
                    f"{r['peak_rss_mb']:>13.1f}{r['errors']:>9.0f}"
                )
        # each ratio is taken within a round (runs minutes apart see different machines here),
        # then the median over the rounds
        per_round = [round_ratios(one) for one in rounds]
        ratios = {name: statistics.median(r[name] for r in per_round) for name in per_round[0]}
        ratios["idle RSS per vmesh proxy, MB (target <= 40)"] = max(idle_rss)
        ratios["idle USS per vmesh proxy, MB (its own pages)"] = max(idle_uss)
        failed = [f"{label} {conns}" for label, runs in results.items()
                  for conns, r in runs.items() if r["errors"]]
        if failed:
            print(f"\nnon-2xx responses in: {', '.join(failed)}; the ratios below mean nothing")
        events = [one["vmesh 2 hops + tap"]["c=32"]["tap_events"] for one in rounds]
        print(f"\ntap follower received {', '.join(f'{e:.0f}' for e in events)} events during "
              "the tapped runs")
        print()
        for name, value in ratios.items():
            each = ", ".join(f"{r[name]:.2f}" for r in per_round) if name in per_round[0] else ""
            print(f"{name:<64}{value:>8.2f}" + (f"   (rounds: {each})" if each else ""))
        if args.hops:
            print("\nwhere the time goes at c=1: each hop's median gap between packets, us "
                  "(bench/hops.py)")
            print(hops.report({
                "vmesh": (vmesh_url, "web", hops.Ports(vmesh_ports["front"],
                                                      inbound_ports["web"], backend_port)),
                "floor": (floor_url, None, hops.Ports(floor_front, floor_back, backend_port)),
                "floor + tasks": (tasks_floor_url, None,
                                  hops.Ports(tasks_front, tasks_back, backend_port)),
                "haproxy": (f"http://127.0.0.1:{ha_front}/", None,
                            hops.Ports(ha_front, ha_mtls, backend_port)),
                "haproxy 1 proc": (f"http://127.0.0.1:{ha_pair_front}/", None,
                                   hops.Ports(ha_pair_front, ha_pair_mtls, backend_port)),
            }, seconds=args.duration))
        memory = {"idle_rss_mb": idle_rss, "idle_uss_mb": idle_uss}
        print(json.dumps({"results": results, "rounds": rounds, "ratios": ratios, **memory}))
    finally:
        stop_processes(procs)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
