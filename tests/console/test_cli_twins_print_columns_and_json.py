"""`vmesh stat|tap|top|certs|logs|check` against running admin APIs, as a user runs them."""

import json
import os
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta

from tests.console.conftest import REPO, wait_for
from tests.integration.mesh import Mesh
from vm_mesh import paths


def vmesh(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vm_mesh", *args], cwd=REPO, env=os.environ,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_stat_prints_linkerd_columns_and_names_an_unreachable_proxy(start_admin) -> None:
    start_admin("api")
    start_admin("web")
    start_admin("cache").kill()

    def stat_once_api_failed() -> tuple[subprocess.CompletedProcess[str], dict] | None:
        # the simulated api fails its 10th request of every 10, the first ~1 s after it started
        result = vmesh("stat")
        rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
        try:
            success = float(rows["api"][2].removesuffix("%"))
        except (KeyError, IndexError, ValueError):  # not listed yet, or no request yet ("-")
            return None
        return (result, rows) if success < 100.0 else None

    result, rows = wait_for(stat_once_api_failed, 20, "a failed request in api's stats")
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50",
                                "LATENCY_P95", "LATENCY_P99", "TCP_CONN", "IN_FLIGHT",
                                "LISTENERS"]
    assert rows["api"][1] == "1/1"
    assert 80.0 <= float(rows["api"][2].removesuffix("%")) < 100.0  # 1 in 10 simulated fails
    assert float(rows["api"][3]) > 0
    assert rows["api"][9] == "ok"  # its admin listeners, far below their caps
    assert rows["cache"][1] == "0/1"
    assert "cache: connection to" in result.stderr and "[admin.connect_refused]" in result.stderr
    assert result.returncode == 0
    as_json = [json.loads(line) for line in vmesh("stat", "--json").stdout.splitlines()]
    assert {row["name"] for row in as_json} == {"api", "web", "cache"}


def test_tap_prints_req_rsp_end_and_json_objects(start_admin) -> None:
    start_admin("api", rate=50)
    text = vmesh("tap", "--max", "3", "method=GET").stdout.splitlines()
    assert [line.split()[0] for line in text] == ["req", "rsp", "end"] * 3
    assert ":method=GET" in text[0] and ":status=" in text[1] and "duration=" in text[2]
    objects = [json.loads(x) for x in vmesh("tap", "--json", "--max", "4").stdout.splitlines()]
    assert len(objects) == 4 and {o["proxy"] for o in objects} == {"api"}
    assert {"src", "dst", "latency_ms", "policy", "trace_id"} <= set(objects[0])


def test_top_aggregates_a_few_seconds_of_tap(start_admin) -> None:
    start_admin("api", rate=50)
    lines = vmesh("top", "--duration", "1.5", "--sort", "count").stdout.splitlines()
    assert lines[0].split()[:4] == ["Source", "Destination", "Method", "Path"]
    assert lines[1].split()[:2] == ["api", "store"]


def test_bad_tap_filter_is_one_line(start_admin) -> None:
    start_admin("api")
    result = vmesh("tap", "colour=red")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "vmesh: tap filter: unknown filter key 'colour': use svc, path, method, status, lat")


def test_certs_and_check_fail_on_an_expired_leaf_of_a_real_proxy(expired_store) -> None:
    certs = vmesh("certs")
    assert certs.returncode == 1
    rows = [line.split() for line in certs.stdout.splitlines()]
    assert rows[0][:2] == ["KIND", "OWNER"]
    leaves = {r[1]: r for r in rows if r[0] == "leaf"}
    assert "expired" in leaves["store"] and "ok" in leaves["api"]

    check = vmesh("check")
    assert check.returncode == 1
    [failing] = [line for line in check.stdout.splitlines() if line.startswith("[FAIL]")]
    assert "leaf of store: expired at" in failing and "(hint:" in failing
    findings = [json.loads(x) for x in vmesh("check", "--json").stdout.splitlines()]
    assert {f["reason"] for f in findings if f["status"] == "fail"} == {"certs.leaf_expired"}


def test_check_fails_on_the_expired_leaf_of_a_cert_helper(start_admin, vmesh_root) -> None:
    start_admin("api")
    ca = Mesh(vmesh_root)  # CA state of its own: the simulated proxy has its own certs
    ca.issue("prometheus", now=datetime.now(UTC) - timedelta(hours=26))  # what the helper left
    ca.issue("grafana", lifetime=timedelta(hours=24))
    check = vmesh("check")
    assert check.returncode == 1
    [failing] = [line for line in check.stdout.splitlines() if line.startswith("[FAIL]")]
    assert "leaf of cert-helper prometheus: expired at" in failing
    assert "`vmesh cert-helper prometheus` renews it: is it running?" in failing
    assert "[ok  ] certs     leaf of cert-helper grafana: valid, 23h" in check.stdout


def test_check_passes_for_a_healthy_host(start_admin) -> None:
    start_admin("api")
    check = vmesh("check")
    assert check.returncode == 0, check.stdout
    assert "[ok  ] admin     api" in check.stdout


def test_logs_filters_level_and_search(start_admin) -> None:
    start_admin("api")
    start_admin("web")
    lines = wait_for(lambda: vmesh("logs", "--level", "warning", "--service", "web"
                                   ).stdout.splitlines(), 10, "a warning of web")
    assert all(" WARNING web " in line for line in lines)


def test_check_names_a_foreign_process_holding_a_proxy_port(start_admin, vmesh_root) -> None:
    start_admin("api")
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        config = paths.service_config("api")
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(
            f'service = "api"\napp_port = 9\n[listen]\ninbound = "127.0.0.1:{port}"\n'
            'outbound = "127.0.0.1:0"\nadmin = "127.0.0.1:0"\n'
        )
        check = vmesh("check")
    assert check.returncode == 1
    [line] = [x for x in check.stdout.splitlines() if f"inbound port {port}" in x]
    assert line.startswith("[FAIL] ports") and f"(pid {os.getpid()})" in line
