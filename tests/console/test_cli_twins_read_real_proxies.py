"""`vmesh stat|tap|top|certs|logs` against real `vmesh proxy run` processes carrying traffic.

The mesh (`api`, `store`, `web`; instances api-1, store-2, web-3) and its
traffic (web's app calling api and store, 1 request in 10 failing) are the
`mesh` and `traffic` fixtures of conftest. Text columns and `--json` lines
are read as a script would read them.
"""

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time

from tests.console.conftest import REPO, wait_for
from tests.console.test_cli_twins_print_columns_and_json import vmesh
from tests.integration.mesh import Mesh
from vm_mesh import paths

INSTANCES = {"api-1", "store-2", "web-3"}


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_stat_json_shows_the_failures_of_real_backends(mesh: Mesh, traffic: None) -> None:
    def rows() -> dict[str, dict] | None:
        found = {r["name"]: r for r in json_lines(vmesh("stat", "--json").stdout)}
        failing = [found.get(n, {}).get("success") for n in ("api", "store")]
        return found if all(s is not None and s < 1.0 for s in failing) else None

    found = wait_for(rows, 20, "failed requests in the stats of api and store")
    assert set(found) == {"api", "store", "web"}
    assert all(found[n]["meshed"] == "1/1" for n in found)
    assert found["api"]["rps"] > 0 and found["api"]["latency_p99_ms"] > 0
    assert found["api"]["tcp_conn"] >= 1  # web's proxy keeps its connection to api alive


def test_tap_names_each_request_once_with_its_proxy_instance(mesh: Mesh, traffic: None) -> None:
    lines = vmesh("tap", "--max", "6").stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["req", "rsp", "end"] * 6
    ids = [re.search(r" id=(\S+) ", line).group(1) for line in lines]
    for request in range(6):
        assert len(set(ids[3 * request:3 * request + 3])) == 1  # req, rsp, end: one id
    instances = {i.rsplit(":", 1)[0] for i in ids}
    assert instances <= INSTANCES and all(i.count(":") == 1 for i in ids), ids

    objects = json_lines(vmesh("tap", "--json", "--max", "6").stdout)
    assert {o["proxy"] for o in objects} <= {"api", "store", "web"}
    assert all(o["tls"] for o in objects)  # every tapped request crossed the mesh over mTLS


def test_top_json_ranks_the_routes_of_real_traffic(mesh: Mesh, traffic: None) -> None:
    rows = json_lines(vmesh("top", "--json", "--duration", "2", "--sort", "count").stdout)
    assert rows, "no routes"
    assert {(r["source"], r["destination"]) for r in rows} <= {("web", "api"), ("web", "store")}
    assert {r["path"] for r in rows} <= {"/items/0", "/items/1", "/items/2"}
    counts = [r["count"] for r in rows]
    assert counts == sorted(counts, reverse=True)
    assert all(r["best_ms"] <= r["last_ms"] <= r["worst_ms"] and r["rps"] > 0 for r in rows)


def test_certs_json_lists_the_chain_of_every_real_proxy(mesh: Mesh) -> None:
    result = vmesh("certs", "--json")
    assert result.returncode == 0, result.stderr
    certs = json_lines(result.stdout)
    assert [c["kind"] for c in certs] == ["anchor", "issuer", "leaf", "leaf", "leaf"]
    assert certs[0]["owners"] == certs[1]["owners"] == ["api", "store", "web"]
    leaves = {c["owners"][0]: c for c in certs if c["kind"] == "leaf"}
    assert {name: leaf["san"] for name, leaf in leaves.items()} == {
        name: [f"spiffe://vmesh.local/svc/{name}"] for name in ("api", "store", "web")}
    # every leaf also names `proxy.<trust domain>`, the one name Prometheus verifies
    assert [c["dns"] for c in certs] == [[], [], *[["proxy.vmesh.local"]] * 3]
    assert all(leaf["state"] == "ok" for leaf in leaves.values())
    # these proxies have no identity_url: nothing renews their leaves, and none says it will
    assert [leaf["next_renewal"] for leaf in leaves.values()] == [None] * 3


def test_certs_text_shows_the_dns_names_of_every_leaf(mesh: Mesh) -> None:
    result = vmesh("certs")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0][-1] == "DNS"
    assert {(r[0], r[-1]) for r in rows[1:]} == {
        ("anchor", "-"), ("issuer", "-"), ("leaf", "proxy.vmesh.local")}
    assert len(rows) == 6


def test_logs_follow_json_prints_a_line_the_proxy_logs_later(mesh: Mesh, traffic: None) -> None:
    follow = subprocess.Popen(
        [sys.executable, "-m", "vm_mesh", "logs", "--follow", "--json", "--service", "api"],
        cwd=REPO, env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in follow.stdout], daemon=True).start()
    try:
        first = json.loads(lines.get(timeout=20))  # the backlog: the stream is open
        assert first["proxy"] == "api"
        since = time.time()
        socket = str(paths.admin_socket("api"))
        assert vmesh("tap", "--no-local", "--admin", socket, "--max", "1").returncode == 0

        def tap_logged() -> bool:
            while True:
                try:
                    line = json.loads(lines.get(timeout=0.1))
                except queue.Empty:
                    return False
                if line["msg"] == "tap started" and line["ts"] >= since - 1:
                    return True

        wait_for(tap_logged, 20, "api's log line about the new tap")
    finally:
        follow.kill()
        follow.wait(timeout=10)
