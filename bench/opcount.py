"""Python work per request in each proxy, counted, not timed: bytecodes and function calls.

    .venv/bin/python bench/opcount.py [--requests 2000]

CPU time per request swings by a third between minutes on a small VM, so a
change of a few percent in the proxy's own work cannot be seen in it. This
runs the two-hop path of bench/compare.py (client -> vmesh outbound -> mTLS ->
vmesh inbound -> a fixed backend) with both proxies under a tracer that counts
every bytecode and every Python call, once with a few requests and once with
many more, and prints the difference divided by the difference in requests:
start-up, shutdown and timers cancel out. The count is the same from run to
run, so a change to the request path shows as a number of bytecodes saved.
Bytecodes are not time (a bytecode may call into C for long), but the
request path's Python is where vmesh differs from the floor. The proxies run
from a copy of the source without its compiled modules (setup.py), so what is
counted is the Python that mypyc compiles; with `--compiled` they run the
compiled build, and what is counted is the Python left interpreted on the
request path. A benchmark tool, not a test.
"""

import argparse
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.compare import (  # noqa: E402
    TD,
    free_port,
    issue,
    wait_port,
    write_endpoints,
    write_service_file,
)
from identity import castate  # noqa: E402

# Run as a proxy: `opcount.py --proxy SERVICE COUNT_FILE` traces `vmesh proxy run SERVICE`.
TRACED_PROXY = "--proxy"


def traced_proxy(service: str, count_file: Path) -> None:
    """Run a proxy with every bytecode and call counted per function; write the counts (JSON)
    when it exits."""
    import proxy.server  # noqa: F401  (imported before tracing: start-up is not the subject)
    from vm_mesh.cli import main

    opcodes: Counter[str] = Counter()
    calls: Counter[str] = Counter()

    def trace(frame, event, arg):  # type: ignore[no-untyped-def]
        code = frame.f_code
        where = f"{code.co_filename.rpartition('/')[2]}:{code.co_name}"
        if event == "opcode":
            opcodes[where] += 1
        elif event == "call":
            calls[where] += 1
            frame.f_trace_opcodes = True
        return trace

    sys.settrace(trace)
    try:
        main(["proxy", "run", service])
    finally:
        sys.settrace(None)
        count_file.write_text(json.dumps({"opcodes": opcodes, "calls": calls}))


def source_copy(work: Path, compiled: bool) -> Path:
    """A copy of the repository's source, with or without its compiled modules."""
    left_out = [".venv", ".git", "build", "tests", "__pycache__", "*_cache"]
    return Path(shutil.copytree(REPO, work / "source", ignore=shutil.ignore_patterns(
        *left_out, *([] if compiled else ["*.so"]))))


def run(requests: int, work: Path, backend_port: int,
        source: Path) -> dict[str, dict[str, Counter[str]]]:
    """Both proxies, run from `source` under the tracer, `requests` requests on one
    keep-alive connection."""
    env = {**os.environ, "VMESH_ROOT": str(work)}
    procs, outbound_port = [], 0
    for name, app_port in (("web", backend_port), ("front", 1)):
        inbound, outbound = free_port(), free_port()
        write_service_file(work, name, app_port, inbound, outbound)
        if name == "web":
            write_endpoints(work, {"web": inbound})
        procs.append((name, subprocess.Popen(
            [sys.executable, str(source / "bench/opcount.py"), TRACED_PROXY, name,
             str(work / f"{name}.count")],
            cwd=source, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )))
        wait_port(outbound, within=120)
        outbound_port = outbound
    try:
        client = http.client.HTTPConnection("127.0.0.1", outbound_port, timeout=60)
        for _ in range(requests):
            client.request("GET", "/", headers={"Host": "web"})
            answer = client.getresponse()
            answer.read()
            if answer.status != 200:
                sys.exit(f"the two hops answer {answer.status}")
        client.close()
    finally:
        for _, proc in procs:
            proc.send_signal(signal.SIGTERM)
        for _, proc in procs:
            proc.wait(timeout=120)
    return {
        name: {kind: Counter(by_function) for kind, by_function
               in json.loads((work / f"{name}.count").read_text()).items()}
        for name, _ in procs
    }


def main() -> None:
    if sys.argv[1:2] == [TRACED_PROXY]:
        traced_proxy(sys.argv[2], Path(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000,
                        help="requests of the larger run (the smaller one sends a tenth)")
    parser.add_argument("--functions", type=int, default=0, metavar="N",
                        help="also list the N functions that run the most bytecodes per request")
    parser.add_argument("--compiled", action="store_true",
                        help="run the compiled build: count the Python it leaves interpreted")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vmesh-opcount-"))
    ca_dir = work / "var/lib/vmesh/identity"
    castate.init(ca_dir, TD)
    ca = castate.load(ca_dir)
    for name in ("web", "front"):
        issue(ca, name, work / "var/lib/vmesh" / name)
    (work / "etc/vmesh").mkdir(parents=True, exist_ok=True)
    (work / "etc/vmesh/mesh.toml").write_text('[discovery]\nbackend = "static"\n')
    backend_port = free_port()
    (work / "backend.cfg").write_text(
        "global\n  nbthread 1\ndefaults\n  mode http\n  timeout client 30s\n"
        "  timeout server 30s\n  timeout connect 2s\n"
        f"frontend fixed\n  bind 127.0.0.1:{backend_port}\n"
        '  http-request return status 200 content-type text/plain string "hello, mesh\\n"\n'
    )
    backend = subprocess.Popen(["haproxy", "-f", str(work / "backend.cfg")])
    try:
        wait_port(backend_port)
        few, many = args.requests // 10, args.requests
        started = time.monotonic()
        source = source_copy(work, args.compiled)
        small, large = (run(few, work, backend_port, source),
                        run(many, work, backend_port, source))
        print(f"{many - few} requests counted ({time.monotonic() - started:.0f} s), per request:")
        for name, role in (("front", "outbound"), ("web", "inbound")):
            per_request = {kind: {where: (large[name][kind][where] - small[name][kind][where])
                                  / (many - few) for where in large[name][kind]}
                           for kind in ("opcodes", "calls")}
            print(f"  {role:<9} proxy: {sum(per_request['opcodes'].values()):7.0f} bytecodes "
                  f"{sum(per_request['calls'].values()):6.1f} Python calls")
            ranked = sorted(per_request["opcodes"].items(), key=lambda item: -item[1])
            for where, opcodes in ranked[:args.functions]:
                print(f"    {opcodes:6.0f} {per_request['calls'][where]:5.1f}  {where}")
    finally:
        backend.terminate()
        backend.wait(timeout=10)


if __name__ == "__main__":
    main()
